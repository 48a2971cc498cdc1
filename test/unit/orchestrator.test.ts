/**
 * Engine logic over the in-memory protocol model. The same paths run against the real stack in
 * test/integration/engine.*.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { createSyncOrchestrator } from '../../src/core/orchestrator.js'
import { createMemoryStorage } from '../../src/storage/memory.js'
import { createManualEnvironment } from '../../src/env/manual.js'
import { createMemoryBackend, type MemoryBackend } from '../support/memoryBackend.js'
import { SyncError } from '../../src/core/errors.js'
import type { Storage } from '../../src/core/storage.js'
import type { SyncOrchestratorOptions } from '../../src/core/types.js'

function device(backend: MemoryBackend, extra: Partial<SyncOrchestratorOptions> = {}, storage: Storage = createMemoryStorage()) {
  const env = createManualEnvironment({ now: 1_700_000_000_000 })
  const sync = createSyncOrchestrator({
    storage,
    backend,
    environment: env,
    collections: { contacts: { localOnly: ['localNotes'] }, notes: { idMode: 'server' } },
    ...extra,
  })
  return { sync, env, storage, contacts: sync.collection<{ id: string; name: string; phone?: string; localNotes?: string }>('contacts') }
}

describe('orchestrator over the protocol model', () => {
  it('stores a write locally at once and pushes it; the other device pulls it', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const a = device(backend)
    const b = device(backend)
    await Promise.all([a.sync.ready, b.sync.ready])
    const row = await a.contacts.insert({ name: 'Ada', localNotes: 'secret' })
    expect(a.contacts.get(row.id)?.name).toBe('Ada')
    expect(a.sync.getSyncStatus().queueLength).toBe(1)
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(backend.tables.get('contacts')!.get(row.id)!.row).not.toHaveProperty('localNotes')
    expect(a.contacts.syncState(row.id)).toBe('synced')
    expect(a.contacts.get(row.id)?.localNotes).toBe('secret')
    await b.sync.forceSyncAll()
    expect(b.contacts.get(row.id)).toMatchObject({ name: 'Ada' })
    expect(b.contacts.get(row.id)).not.toHaveProperty('localNotes')
    await a.contacts.update(row.id, { phone: '123' })
    await a.sync.forceSyncAll()
    await b.sync.forceSyncAll()
    expect(b.contacts.get(row.id)?.phone).toBe('123')
    await b.contacts.delete(row.id)
    await b.sync.forceSyncAll()
    await a.sync.forceSyncAll()
    expect(a.contacts.get(row.id)).toBeUndefined()
    expect(backend.tables.get('contacts')!.get(row.id)!.deleted).toBe(true)
    expect((await a.sync.getMetrics()).dataInSync).toBe(true)
  })

  it('gives the host a turn between freezing a batch, sending it, and freezing the next', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const storage = createMemoryStorage()
    // Turns are counted where the engine yields to the host; each commit and each push request is
    // stamped with the turn it happened in.
    let turn = 0
    const commitTurns = new Set<number>()
    const pushTurns: number[] = []
    const watched: Storage = { ...storage, commit: (ops) => (commitTurns.add(turn), storage.commit(ops)) }
    const counted: MemoryBackend = { ...backend, push: (...args) => (pushTurns.push(turn), backend.push(...args)) }
    const a = device(counted, {}, watched)
    a.env.yieldToHost = () => ((turn += 1), Promise.resolve())
    await a.sync.ready
    a.env.setOnline(false)
    for (let i = 0; i < 250; i++) await a.contacts.insert({ name: `c${i}` })
    commitTurns.clear()
    a.env.setOnline(true)
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(backend.tables.get('contacts')!.size).toBe(250)
    // Two requests (the first batch is 200), each built in a turn with no slice frozen or applied.
    expect(pushTurns).toHaveLength(2)
    expect(commitTurns.size).toBeGreaterThan(4)
    for (const t of pushTurns) expect(commitTurns.has(t)).toBe(false)
  })

  it('coalesces updates and cancels create+delete before push', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const a = device(backend)
    await a.sync.ready
    const x = await a.contacts.insert({ name: 'x' })
    await a.contacts.update(x.id, { name: 'x2' })
    await a.contacts.update(x.id, { phone: '9' })
    const y = await a.contacts.insert({ name: 'y' })
    await a.contacts.delete(y.id)
    expect(a.sync.getSyncStatus().queueLength).toBe(1)
    expect(a.contacts.get(y.id)).toBeUndefined()
    await a.sync.forceSyncAll()
    expect(backend.calls.push).toBe(1)
    expect(backend.tables.get('contacts')!.get(x.id)!.row).toMatchObject({ name: 'x2', phone: '9' })
    expect(backend.tables.get('contacts')!.has(y.id)).toBe(false)
  })

  it('a lost push response is retried and applied once', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const a = device(backend)
    await a.sync.ready
    const x = await a.contacts.insert({ name: 'x' })
    backend.loseNextResponse()
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: false, reason: 'offline' })
    // The item is frozen now: a later edit must queue behind it, not fold into it.
    await a.contacts.update(x.id, { name: 'x2' })
    expect(a.sync.getSyncStatus().queueLength).toBe(2)
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    const server = backend.tables.get('contacts')!.get(x.id)!
    expect(server.version).toBe(2)
    expect(server.row.name).toBe('x2')
  })

  it('a rejected row goes to the failed queue while the rest of the batch lands', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const a = device(backend)
    const events: string[] = []
    a.sync.subscribe((e) => events.push(e.type))
    await a.sync.ready
    const good = await a.contacts.insert({ name: 'good' })
    const bad = await a.contacts.insert({ name: 'bad', __reject: true } as never)
    const result = await a.sync.forceSyncAll()
    expect(result.ok).toBe(true)
    expect(a.contacts.syncState(good.id)).toBe('synced')
    expect(a.contacts.syncState(bad.id)).toBe('failed')
    expect(a.contacts.get(bad.id)?.name).toBe('bad')
    const metrics = await a.sync.getMetrics()
    expect(metrics.failedItems).toBe(1)
    expect(metrics.queueLength).toBe(0)
    expect(events).toContain('failed')
  })

  it('server-assigned ids: the local id maps to the remote id and later updates follow it', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    let next = 100
    const push = backend.push.bind(backend)
    backend.push = async (clientId, mutations, opts) =>
      push(clientId, mutations.map((m) => (m.table === 'notes' && m.action === 'create' ? { ...m, id: String(next), data: { ...m.data, id: next++ } } : m)), opts)
    const a = device(backend)
    await a.sync.ready
    const notes = a.sync.collection<{ id: string | number; body: string }>('notes')
    const n = await notes.insert({ body: 'one' })
    expect(String(n.id)).toMatch(/^local:/)
    const localId = String(n.id)
    await a.sync.forceSyncAll()
    expect(notes.get(localId)?.id).toBe(100)
    await notes.update(localId, { body: 'two' })
    await a.sync.forceSyncAll()
    expect(backend.tables.get('notes')!.get('100')!.row.body).toBe('two')
    expect(notes.list()).toHaveLength(1)
  })

  it('resumes from the same storage exactly where it stopped', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const storage = createMemoryStorage()
    const a = device(backend, {}, storage)
    await a.sync.ready
    const x = await a.contacts.insert({ name: 'x' })
    await a.sync.stopSync()
    // A second orchestrator over the same storage (the first never closed it: a crash).
    const a2 = device(backend, {}, storage)
    await a2.sync.ready
    expect(a2.sync.clientId).toBe(a.sync.clientId)
    expect(a2.contacts.get(x.id)?.name).toBe('x')
    expect(a2.sync.getSyncStatus().queueLength).toBe(1)
    await a2.sync.forceSyncAll()
    expect(backend.tables.get('contacts')!.get(x.id)!.version).toBe(1)
  })

  it('offline: forceSyncAll reports why and nothing is lost; transient errors keep items', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const a = device(backend)
    await a.sync.ready
    await a.contacts.insert({ name: 'x' })
    a.env.setOnline(false)
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: false, reason: 'offline' })
    a.env.setOnline(true)
    backend.failNext(1, new SyncError('server', '503', { status: 503 }))
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: false, reason: 'error' })
    expect(a.sync.getSyncStatus().queueLength).toBe(1)
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(a.sync.getSyncStatus().queueLength).toBe(0)
  })

  it('clearQueue discards queued changes and rolls records back to the server state', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const a = device(backend)
    await a.sync.ready
    const x = await a.contacts.insert({ name: 'x' })
    await a.sync.forceSyncAll()
    await a.contacts.update(x.id, { name: 'changed' })
    const y = await a.contacts.insert({ name: 'y' })
    const discarded = await a.sync.clearQueue()
    expect(discarded).toHaveLength(2)
    expect(a.contacts.get(x.id)?.name).toBe('x')
    expect(a.contacts.get(y.id)).toBeUndefined()
    expect((await a.sync.getMetrics()).dataInSync).toBe(true)
  })

  it('dataInSync turns false when the server changes behind the device, true after a sync', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const a = device(backend)
    await a.sync.ready
    const x = await a.contacts.insert({ name: 'x' })
    await a.sync.forceSyncAll()
    expect((await a.sync.getMetrics()).dataInSync).toBe(true)
    backend.serverWrite('contacts', x.id, { name: 'from sql' })
    expect((await a.sync.getMetrics()).dataInSync).toBe(false)
    await a.sync.forceSyncAll()
    expect(a.contacts.get(x.id)?.name).toBe('from sql')
    expect((await a.sync.getMetrics()).dataInSync).toBe(true)
  })

  it('ask-user keeps the local value, persists the conflict, and a resolution syncs', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const storage = createMemoryStorage()
    const opts = { collections: { contacts: { conflict: 'ask-user' }, notes: {} } }
    const a = device(backend, opts, storage)
    const b = device(backend, opts)
    await Promise.all([a.sync.ready, b.sync.ready])
    const x = await a.contacts.insert({ name: 'x' })
    await a.sync.forceSyncAll()
    await b.sync.forceSyncAll()
    await b.contacts.update(x.id, { name: 'from b' })
    await b.sync.forceSyncAll()
    await a.contacts.update(x.id, { name: 'from a' })
    await a.sync.forceSyncAll()
    expect(a.contacts.get(x.id)?.name).toBe('from a')
    expect(a.contacts.syncState(x.id)).toBe('conflict')
    const a2 = device(backend, opts, storage)
    await a2.sync.ready
    const [conflict] = a2.sync.getConflicts()
    expect(conflict).toMatchObject({ recordId: x.id, local: { name: 'from a' }, remote: { name: 'from b' } })
    await a2.sync.resolveConflicts([{ id: conflict!.id, choice: 'merged', value: { name: 'merged' } }])
    await a2.sync.forceSyncAll()
    await b.sync.forceSyncAll()
    expect(b.contacts.get(x.id)?.name).toBe('merged')
    expect(a2.sync.getConflicts()).toHaveLength(0)
  })
})

describe('store format', () => {
  it('a new store records its format; a store of a newer format is refused with nothing changed', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const a = device(backend)
    await a.sync.ready
    await a.contacts.insert({ name: 'Ada' })
    expect(await a.storage.get('meta/format')).toBe(2)
    const entries = await a.storage.scan('')
    await a.sync.close()

    const newer = createMemoryStorage()
    await newer.commit([...entries.map((e) => ({ type: 'set' as const, key: e.key, value: e.value })), { type: 'set', key: 'meta/format', value: 3 }])
    const before = await newer.scan('')
    const b = device(backend, {}, newer)
    await expect(b.sync.ready).rejects.toMatchObject({ name: 'StorageError', kind: 'incompatible' })
    await expect(b.contacts.insert({ name: 'Grace' })).rejects.toMatchObject({ kind: 'incompatible' })
    await expect(b.sync.forceSyncAll()).rejects.toMatchObject({ kind: 'incompatible' })
    expect(await newer.scan('')).toEqual(before)
  })

  it('an unreadable format is reported as damage; repair quarantines it and the current format is written', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const storage = createMemoryStorage()
    await storage.commit([{ type: 'set', key: 'meta/format', value: 'one' }])
    const a = device(backend, {}, storage)
    const errors: string[] = []
    a.sync.subscribe((e) => e.type === 'error' && errors.push(e.kind))
    await a.sync.ready
    expect(errors).toContain('storage')
    const report = await a.sync.repairSync()
    expect(report.quarantined).toEqual([{ key: 'meta/format', problem: 'unreadable store format' }])
    expect(await storage.get('meta/format')).toBe(2)
  })
})

describe('stored records', () => {
  it('a synced record stores its row once; one with local-only fields keeps its base apart; both reload as they were', async () => {
    const backend = createMemoryBackend({ tables: ['contacts', 'notes'] })
    const storage = createMemoryStorage()
    const a = device(backend, {}, storage)
    await a.sync.ready
    const plain = await a.contacts.insert({ name: 'Ada' })
    const local = await a.contacts.insert({ name: 'Grace', localNotes: 'mine' })
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    const stored = (id: string) => storage.get(`r/contacts/${id}`) as Promise<{ data: Record<string, unknown>; base: unknown }>
    expect((await stored(plain.id)).base).toBe('data')
    expect((await stored(local.id)).base).toEqual({ ...(await stored(local.id)).data, localNotes: undefined })
    expect((await stored(local.id)).base).not.toHaveProperty('localNotes')
    const before = { plain: a.contacts.get(plain.id), local: a.contacts.get(local.id) }
    const entries = await storage.scan('')
    await a.sync.close()

    // Reloaded: the same rows, still synced, and a later edit merges on the base as before.
    const copy = createMemoryStorage()
    await copy.commit(entries.map((e) => ({ type: 'set' as const, key: e.key, value: e.value })))
    const b = device(backend, {}, copy)
    await b.sync.ready
    expect(b.contacts.get(plain.id)).toEqual(before.plain)
    expect(b.contacts.get(local.id)).toEqual(before.local)
    expect(b.contacts.syncState(plain.id)).toBe('synced')
    await b.contacts.update(plain.id, { phone: '1' })
    expect(await b.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(backend.tables.get('contacts')!.get(plain.id)!.row).toMatchObject({ name: 'Ada', phone: '1' })
    expect((await copy.get(`r/contacts/${plain.id}`) as { base: unknown }).base).toBe('data')
  })
})
