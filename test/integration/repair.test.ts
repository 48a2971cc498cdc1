/**
 * Repair through the real stack: damaged local storage (a Node file log with bad values, malformed
 * entries, an unknown queue action and a torn tail) is reported at start, quarantined by
 * `repairSync()` and brought back in sync; and `dataInSync` tracks changes made behind the device's back.
 */
import { mkdtemp, rm, stat, truncate, appendFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createSyncOrchestrator } from '../../src/core/orchestrator.js'
import { createSupabaseBackend } from '../../src/backends/supabase/index.js'
import { createFileStorage } from '../../src/storage/file.js'
import { logRecord } from '../support/fileLog.js'
import type { StorageCorruption } from '../../src/storage/corruption.js'
import { createMemoryStorage } from '../../src/storage/memory.js'
import { createManualEnvironment } from '../../src/env/manual.js'
import { seqKey } from '../../src/core/queueItem.js'
import type { Logger } from '../../src/core/logger.js'
import type { Storage } from '../../src/core/storage.js'
import type { SyncEvent } from '../../src/core/types.js'
import { newUser, settle, useStack } from '../helpers/stack.js'

interface Contact extends Record<string, unknown> {
  id: string
  name: string
  phone?: string | null
}

const stack = useStack()
const dirs: string[] = []
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})


/** A logger that keeps what it is told. */
function recordingLogger(): Logger & { lines: Array<{ level: string; message: string; fields?: unknown }> } {
  const lines: Array<{ level: string; message: string; fields?: unknown }> = []
  const at = (level: string) => (message: string, fields?: unknown) => void lines.push({ level, message, fields })
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as Logger & { lines: typeof lines }
}

function device(user: string, storage: Storage, logger?: Logger) {
  const env = createManualEnvironment({ now: Date.now() })
  const sync = createSyncOrchestrator({
    storage,
    backend: createSupabaseBackend({ client: stack().createClient(user) }),
    environment: env,
    collections: { contacts: {} },
    ...(logger ? { logger } : {}),
  })
  const events: SyncEvent[] = []
  sync.subscribe((e) => events.push(e))
  return { sync, env, events, contacts: sync.collection<Contact>('contacts') }
}

async function serverRows(user: string): Promise<Map<string, { name: string; phone: string | null }>> {
  const rows = await stack().query<{ id: string; name: string; phone: string | null }>(
    'select id::text, name, phone from public.contacts where user_id = $1 and not _deleted',
    [user],
  )
  return new Map(rows.map((r) => [r.id, { name: r.name, phone: r.phone }]))
}

const snapshot = (list: readonly Contact[]) => new Map(list.map((c) => [c.id, { name: c.name, phone: c.phone ?? null }]))

describe('repair through the real stack', () => {
  it('damaged file storage is reported at start; repairSync quarantines it under x/ and the device returns to sync with every valid change', async () => {
    const user = newUser()
    const dir = await mkdtemp(join(tmpdir(), 'sync-repair-'))
    dirs.push(dir)
    const path = join(dir, 'device.log')

    // A device with synced rows, then offline changes still queued when it shuts down.
    const first = device(user, createFileStorage({ path, fsync: 'never', compaction: false }))
    await first.sync.ready
    const synced: Contact[] = []
    for (let i = 0; i < 6; i++) synced.push(await first.contacts.insert({ name: `synced ${i}` }))
    expect(await first.sync.forceSyncAll()).toMatchObject({ ok: true })
    first.env.setOnline(false)
    const offline = [await first.contacts.insert({ name: 'offline 1' }), await first.contacts.insert({ name: 'offline 2' })]
    await first.contacts.update(synced[1]!.id, { phone: '555-0101' })
    await first.contacts.delete(synced[5]!.id)
    const expected = snapshot(first.contacts.list())
    await first.sync.close()

    // The damage, each kind in its own commit, then a commit torn by a crash (the log truncated).
    const badJson = `r/contacts/${synced[0]!.id}`
    const badEnvelope = `r/contacts/${synced[2]!.id}`
    const badItem = seqKey('q/', 900_001)
    const unknownAction = seqKey('q/', 900_002)
    const item = (seq: number) => ({
      id: `item-${seq}`, seq, action: 'create', entityType: 'contacts', recordId: `00000000-0000-4000-8000-00000000000${seq % 10}`,
      localId: 'x', remoteId: null, data: { name: 'ghost' }, baseVersion: null, hlc: '0', timestamp: 0, attempts: 0,
      lastAttempt: null, error: null, priority: 'normal', sent: false,
    })
    await appendFile(path, Buffer.concat([
      logRecord([[badJson, '{"data": {"name": "trunc']]),
      logRecord([[badEnvelope, JSON.stringify({ data: { ...synced[2] }, base: null, version: 'seven', deleted: 'no', hlc: 1, state: 'synced' })]]),
      logRecord([[badItem, JSON.stringify({ ...item(900_001), attempts: 'many', data: 'not an object' })]]),
      logRecord([[unknownAction, JSON.stringify({ ...item(900_002), action: 'upsert' })]]),
    ]))
    const torn = logRecord([[`r/contacts/${offline[0]!.id}`, JSON.stringify({ never: 'whole' })]])
    await appendFile(path, torn)
    await truncate(path, (await stat(path)).size - Math.floor(torn.length / 2))

    // Start over the damaged file: it starts, and says what it found.
    const corruption: StorageCorruption[] = []
    const storage = createFileStorage({ path, fsync: 'never', compaction: false, onCorrupt: (c) => corruption.push(c) })
    const logger = recordingLogger()
    const second = device(user, storage, logger)
    await second.sync.ready
    expect(corruption).toContainEqual(expect.objectContaining({ kind: 'log', reason: 'torn-record' }))
    expect(corruption).toContainEqual(expect.objectContaining({ kind: 'entry', key: badJson }))
    const storageErrors = second.events.filter((e) => e.type === 'error' && e.kind === 'storage')
    expect(storageErrors.length).toBeGreaterThanOrEqual(1)
    expect(storageErrors.map((e) => (e as { message: string }).message).join(' ')).toMatch(/\b4 damaged entries\b/)
    expect(logger.lines.some((l) => l.level === 'warn' && /damaged/.test(l.message))).toBe(true)
    expect(logger.lines.some((l) => l.level === 'warn' && JSON.stringify(l.fields ?? null).includes('torn-record'))).toBe(true)
    // Valid offline changes are all still there, queued.
    for (const c of offline) expect(second.contacts.get(c.id)).toMatchObject({ name: c.name })
    expect(second.sync.getSyncStatus().queueLength).toBeGreaterThanOrEqual(4)

    const report = await second.sync.repairSync()
    expect(report.quarantined.map((q) => q.key).sort()).toEqual([badJson, badEnvelope, badItem, unknownAction].sort())
    // Kept, never dropped: each damaged entry is under x/ with what was found, and gone from its key.
    const kept = new Map((await storage.scan('x/')).map((e) => [e.key, e.value as { key: string; value: unknown; problem: string }]))
    expect([...kept.keys()].sort()).toEqual([badJson, badEnvelope, badItem, unknownAction].map((k) => `x/${k}`).sort())
    expect(JSON.stringify(kept.get(`x/${badJson}`)!.value)).toContain('trunc')
    expect(kept.get(`x/${badEnvelope}`)!.value).toMatchObject({ version: 'seven' })
    expect(kept.get(`x/${unknownAction}`)!.value).toMatchObject({ action: 'upsert' })
    for (const key of [badJson, badEnvelope, badItem, unknownAction]) expect(await storage.get(key)).toBeUndefined()
    expect((await storage.corruption()).filter((c) => c.kind === 'entry')).toHaveLength(0)

    expect(await second.sync.forceSyncAll()).toMatchObject({ ok: true })
    await settle(stack())
    expect(await second.sync.forceSyncAll()).toMatchObject({ ok: true })
    // The rows whose local copies were damaged come back from the server; offline changes landed.
    expect(snapshot(second.contacts.list())).toEqual(expected)
    expect(await serverRows(user)).toEqual(expected)
    expect(second.sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0 })
    expect((await second.sync.getMetrics()).dataInSync).toBe(true)
    await second.sync.close()

    // And the repair itself is durable: a third start finds nothing damaged.
    const third = device(user, createFileStorage({ path, fsync: 'never', compaction: false }))
    await third.sync.ready
    expect(third.events.filter((e) => e.type === 'error')).toHaveLength(0)
    expect(snapshot(third.contacts.list())).toEqual(expected)
    expect((await third.sync.getMetrics()).dataInSync).toBe(true)
    await third.sync.close()
  }, 60_000)

  it('dataInSync turns false when the server is changed behind the device, and true after a sync', async () => {
    const user = newUser()
    const d = device(user, createMemoryStorage())
    await d.sync.ready
    const a = await d.contacts.insert({ name: 'Ada' })
    await d.contacts.insert({ name: 'Grace' })
    expect((await d.sync.getMetrics()).dataInSync).toBe(false)
    expect(await d.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect((await d.sync.getMetrics()).dataInSync).toBe(true)

    for (const [sql, params] of [
      ['update public.contacts set name = $1 where id = $2', ['Ada L.', a.id]],
      ['insert into public.contacts (id, user_id, name) values (gen_random_uuid(), $1, $2)', [user, 'From SQL']],
      ['delete from public.contacts where id = $1', [a.id]],
    ] as const) {
      await stack().query(sql, [...params])
      await settle(stack())
      expect((await d.sync.getMetrics()).dataInSync).toBe(false)
      expect(await d.sync.forceSyncAll()).toMatchObject({ ok: true })
      expect((await d.sync.getMetrics()).dataInSync).toBe(true)
      expect(snapshot(d.contacts.list())).toEqual(await serverRows(user))
    }
    await d.sync.close()
  }, 60_000)
})
