/**
 * The engine through the real stack: supabase-js → gateway → PostgREST → PostgreSQL/PGlite.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { createSyncOrchestrator } from '../../src/core/orchestrator.js'
import { createSupabaseBackend } from '../../src/backends/supabase/index.js'
import { createMemoryStorage } from '../../src/storage/memory.js'
import { createManualEnvironment } from '../../src/env/manual.js'
import type { Storage } from '../../src/core/storage.js'
import type { SyncEvent } from '../../src/core/types.js'
import pg from 'pg'
import { newUser, onRealPostgres, PGLITE_ONE_SESSION, responseLosingFetch, settle, useStack } from '../helpers/stack.js'

interface Contact extends Record<string, unknown> {
  id: string
  name: string
  phone?: string | null
  tags?: string[]
}

const stack = useStack()
const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined

/** A device: its own storage and client id, the given user, a fetch that faults can be injected into. */
function device(user: string, storage: Storage = createMemoryStorage(), fault?: { fetch: typeof fetch }) {
  const env = createManualEnvironment({ now: Date.now() })
  const client = stack().createClient(user, fault ? { fetch: fault.fetch } : {})
  const events: SyncEvent[] = []
  const sync = createSyncOrchestrator({
    storage,
    backend: createSupabaseBackend({ client }),
    environment: env,
    collections: { contacts: { localOnly: ['localNotes'] } },
    batchSize: 200,
  })
  sync.subscribe((e) => events.push(e))
  return { sync, env, events, storage, contacts: sync.collection<Contact>('contacts') }
}

async function serverRows(user: string): Promise<Map<string, { name: string; phone: string | null; _version: number; _deleted: boolean }>> {
  const rows = await stack().query<{ id: string; name: string; phone: string | null; _version: string; _deleted: boolean }>(
    'select id::text, name, phone, _version, _deleted from public.contacts where user_id = $1',
    [user],
  )
  return new Map(rows.map((r) => [r.id, { name: r.name, phone: r.phone, _version: Number(r._version), _deleted: r._deleted }]))
}

describe('engine through the real stack', () => {
  it('two devices of one user converge: creates, updates and deletes both ways, plus plain SQL', async () => {
    const user = newUser()
    const a = device(user)
    const b = device(user)
    await Promise.all([a.sync.ready, b.sync.ready])
    const x = await a.contacts.insert({ name: 'Ada', tags: ['math'], localNotes: 'only on a' })
    const y = await b.contacts.insert({ name: 'Grace' })
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(await b.sync.forceSyncAll()).toMatchObject({ ok: true })
    await settle(stack())
    await a.sync.forceSyncAll()
    await b.sync.forceSyncAll()
    expect(a.contacts.get(y.id)?.name).toBe('Grace')
    expect(b.contacts.get(x.id)).toMatchObject({ name: 'Ada', tags: ['math'] })
    expect(b.contacts.get(x.id)).not.toHaveProperty('localNotes')

    await b.contacts.update(x.id, { phone: '555' })
    await a.contacts.delete(y.id)
    await b.sync.forceSyncAll()
    await a.sync.forceSyncAll()
    await settle(stack())
    await b.sync.forceSyncAll()
    await a.sync.forceSyncAll()
    expect(a.contacts.get(x.id)).toMatchObject({ phone: '555', localNotes: 'only on a' })
    expect(b.contacts.get(y.id)).toBeUndefined()

    await stack().query('update public.contacts set name = $1 where id = $2', ['Ada L.', x.id])
    await stack().query('delete from public.contacts where id = $1', [x.id])
    await stack().query('insert into public.contacts (id, user_id, name) values (gen_random_uuid(), $1, $2)', [user, 'From SQL'])
    await settle(stack())
    expect((await a.sync.getMetrics()).dataInSync).toBe(false)
    await a.sync.forceSyncAll()
    await b.sync.forceSyncAll()
    await settle(stack())
    await a.sync.forceSyncAll()
    await b.sync.forceSyncAll()
    for (const d of [a, b]) {
      expect(d.contacts.get(x.id)).toBeUndefined()
      expect(d.contacts.list().map((c) => c.name)).toEqual(['From SQL'])
      expect((await d.sync.getMetrics()).dataInSync).toBe(true)
    }
    expect([...a.events, ...b.events].filter((e) => e.type === 'conflict')).toHaveLength(0)
  })

  it('an offline backlog of 10,000 changes is pushed once online, each acknowledged once', async () => {
    const user = newUser()
    const a = device(user)
    await a.sync.ready
    a.env.setOnline(false)
    const ids: string[] = []
    for (let i = 0; i < 8000; i++) ids.push((await a.contacts.insert({ name: `c${i}` })).id)
    // Updates to records already pushed once and to fresh ones: 2,000 more changes.
    for (let i = 0; i < 2000; i++) await a.contacts.update(ids[i]!, { phone: String(i) })
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: false, reason: 'offline' })
    a.env.setOnline(true)
    const pushed: number[] = []
    a.sync.subscribe((e) => e.type === 'pushed' && pushed.push(e.applied))
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    const rows = await serverRows(user)
    expect(rows.size).toBe(8000)
    // Coalesced create+update: each row was created once, with its update folded in (version 1).
    expect([...rows.values()].every((r) => r._version === 1)).toBe(true)
    expect(rows.get(ids[1999]!)?.phone).toBe('1999')
    expect(pushed.reduce((s, n) => s + n, 0)).toBe(8000)
    expect(a.sync.getSyncStatus().queueLength).toBe(0)
  }, 300_000)

  it('a crash between the slices of a push answer or of a pull page loses nothing and applies nothing twice', async () => {
    // Answers are applied 100 outcomes or changes per transaction, with a turn for the host between
    // slices. The environment's yieldToHost is where the host takes that turn: hanging it for good
    // at a chosen turn stops the instance right there, with earlier slices committed and later ones
    // not, and the next instance starts over the same storage.
    const user = newUser()
    const crashAt = (turn: number) => {
      let turns = 0
      let crashed!: () => void
      const crash = new Promise<void>((resolve) => (crashed = resolve))
      const env = createManualEnvironment({ now: Date.now() })
      env.yieldToHost = () => {
        if (++turns !== turn) return Promise.resolve()
        crashed()
        return new Promise<void>(() => {})
      }
      return { env, crash }
    }
    const open = (storage: Storage, env = createManualEnvironment({ now: Date.now() }), owner = user) => {
      const sync = createSyncOrchestrator({
        storage,
        backend: createSupabaseBackend({ client: stack().createClient(owner) }),
        environment: env,
        collections: { contacts: {} },
        batchSize: 250,
      })
      const conflicts: SyncEvent[] = []
      sync.subscribe((e) => e.type === 'conflict' && conflicts.push(e))
      return { sync, conflicts, contacts: sync.collection<Contact>('contacts') }
    }

    // The first batch (200 of the 250: a push run starts with at most 200) is frozen in two slices
    // of 100: the turn between them never comes back, before any request. The next instance sends
    // all 250.
    const freezer = newUser()
    const frozenStorage = createMemoryStorage()
    const freezeCrash = crashAt(1)
    const f = open(frozenStorage, freezeCrash.env, freezer)
    await f.sync.ready
    for (let i = 0; i < 250; i++) await f.contacts.insert({ name: `f${i}` })
    void f.sync.forceSyncAll()
    await freezeCrash.crash
    expect(f.sync.getSyncStatus().queueLength).toBe(250)
    expect((await serverRows(freezer)).size).toBe(0)
    const f2 = open(frozenStorage, undefined, freezer)
    await f2.sync.ready
    expect(await f2.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(f2.sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0, conflicts: 0 })
    const frozenRows = await serverRows(freezer)
    expect(frozenRows.size).toBe(250)
    expect([...frozenRows.values()].every((r) => r._version === 1)).toBe(true)

    // Push: a batch of 200, then one of 50 sent while the first is on the wire; the turn before the
    // first answer's second slice never comes back (turn 6, after those between the first batch's
    // slices, before sending it, before freezing the second, before sending it, and before the
    // answer's first slice). The second batch may have been applied by the server: its answer was
    // never seen.
    const pushStorage = createMemoryStorage()
    const pushCrash = crashAt(6)
    const a = open(pushStorage, pushCrash.env)
    await a.sync.ready
    for (let i = 0; i < 250; i++) await a.contacts.insert({ name: `p${i}` })
    void a.sync.forceSyncAll()
    await pushCrash.crash
    expect(a.sync.getSyncStatus().queueLength).toBe(150)
    const a2 = open(pushStorage)
    await a2.sync.ready
    expect(await a2.sync.forceSyncAll()).toMatchObject({ ok: true })
    const rows = await serverRows(user)
    expect(rows.size).toBe(250)
    // Each row written once: the re-sent 150 were answered from the server's record.
    expect([...rows.values()].every((r) => r._version === 1 && !r._deleted)).toBe(true)
    expect(a2.contacts.list().map((c) => c.name).sort()).toEqual([...rows.values()].map((r) => r.name).sort())
    expect(a2.sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0, conflicts: 0 })
    expect(a2.conflicts).toHaveLength(0)

    // Pull: a fresh device gets the 250 rows in one page; the turn before its second slice hangs.
    await settle(stack())
    const pullStorage = createMemoryStorage()
    const pullCrash = crashAt(2)
    const b = open(pullStorage, pullCrash.env)
    await b.sync.ready
    void b.sync.forceSyncAll()
    await pullCrash.crash
    expect(b.contacts.list()).toHaveLength(100)
    const b2 = open(pullStorage)
    await b2.sync.ready
    expect(b2.contacts.list()).toHaveLength(100)
    expect(await b2.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(b2.contacts.list().map((c) => c.name).sort()).toEqual([...rows.values()].map((r) => r.name).sort())
    expect(b2.sync.getSyncStatus()).toMatchObject({ queueLength: 0, conflicts: 0 })
    expect(b2.conflicts).toHaveLength(0)
    expect((await b2.sync.getMetrics()).dataInSync).toBe(true)
  }, 120_000)

  it('a push the server refuses as too large (413) goes again in smaller parts; a change too large alone is dead-lettered', async () => {
    // A gateway in front of PostgREST that refuses request bodies over 4 KB, as an API gateway's
    // body limit does; every other request reaches the real stack.
    const LIMIT = 4096
    const refused: number[] = []
    const sizes: number[] = []
    const gatewayLimit = {
      fetch: (async (input: RequestInfo | URL, init?: RequestInit) => {
        const url = input instanceof Request ? input.url : String(input)
        const body = typeof init?.body === 'string' ? init.body : ''
        if (url.includes('/rpc/sync_push_runs')) {
          if (body.length > LIMIT) {
            refused.push(body.length)
            return new Response(JSON.stringify({ message: 'Payload Too Large' }), { status: 413, headers: { 'content-type': 'application/json' } })
          }
          sizes.push(body.length)
        }
        return fetch(input, init)
      }) as typeof fetch,
    }
    const user = newUser()
    const a = device(user, createMemoryStorage(), gatewayLimit)
    await a.sync.ready
    for (let i = 0; i < 120; i++) await a.contacts.insert({ name: `contact ${i}`, phone: String(i).padStart(6, '0') })
    const big = await a.contacts.insert({ name: 'x'.repeat(6000) })
    for (let i = 120; i < 150; i++) await a.contacts.insert({ name: `contact ${i}` })

    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    // The first batch (151 items) was refused, then smaller ones went through; none over the limit.
    expect(refused.length).toBeGreaterThan(0)
    expect(refused[0]).toBeGreaterThan(LIMIT)
    expect(Math.max(...sizes)).toBeLessThanOrEqual(LIMIT)
    const rows = await serverRows(user)
    expect(rows.size).toBe(150)
    expect([...rows.values()].every((r) => r._version === 1 && r.name.startsWith('contact '))).toBe(true)
    // The one change too large on its own is dead-lettered with the reason; nothing else waited on it.
    expect(a.sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 1 })
    const [failed] = a.sync.getFailed()
    expect(failed).toMatchObject({ recordId: big.id, action: 'create', error: { kind: 'permanent', code: 'PAYLOAD_TOO_LARGE' } })
    expect(a.events).toContainEqual(expect.objectContaining({ type: 'failed', id: big.id, code: 'PAYLOAD_TOO_LARGE' }))
  }, 60_000)

  it('batches sent while the one before is on the wire apply in the order they were sent, however the requests race', async () => {
    // Each ref points at a contact of the batch before it (a foreign key): applied out of order, it
    // would be rejected. Every other push request is held back 150 ms, so the next one, sent while
    // it is on the wire, reaches the server first; the server defers it and it goes again.
    await stack().query(`
      create table if not exists public.contact_refs (
        id uuid primary key default gen_random_uuid(), user_id uuid default auth.uid(),
        contact_id uuid not null references public.contacts (id), label text);
      alter table public.contact_refs enable row level security;
      drop policy if exists contact_refs_all on public.contact_refs;
      create policy contact_refs_all on public.contact_refs to authenticated using (user_id = auth.uid()) with check (user_id = auth.uid());
      grant select, insert, update, delete on public.contact_refs to authenticated;
      select public.sync_enable_table('public.contact_refs', 'user_id');`)
    let requests = 0
    let deferred = 0
    const racing = {
      fetch: (async (input: RequestInfo | URL, init?: RequestInit) => {
        const url = input instanceof Request ? input.url : String(input)
        if (!url.includes('/rpc/sync_push_runs')) return fetch(input, init)
        if (requests++ % 2 === 0) await new Promise((resolve) => setTimeout(resolve, 150))
        const response = await fetch(input, init)
        if ((await response.clone().text()) === '{"deferred" : true}') deferred++
        return response
      }) as typeof fetch,
    }
    const user = newUser()
    const sync = createSyncOrchestrator({
      storage: createMemoryStorage(),
      backend: createSupabaseBackend({ client: stack().createClient(user, { fetch: racing.fetch }) }),
      environment: createManualEnvironment({ now: Date.now() }),
      collections: { contacts: {}, contact_refs: {} },
      batchSize: 5,
    })
    await sync.ready
    const contacts = sync.collection<Contact>('contacts')
    const refs = sync.collection<{ id: string; contact_id: string; label: string }>('contact_refs')
    for (let group = 0; group < 6; group++) {
      const made = []
      for (let i = 0; i < 5; i++) made.push(await contacts.insert({ name: `c${group}.${i}` }))
      for (const c of made) await refs.insert({ contact_id: c.id, label: `ref to ${c.name}` })
    }
    expect(await sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0 })
    const linked = await stack().query<{ n: string }>(
      'select count(*) as n from public.contact_refs r join public.contacts c on c.id = r.contact_id where r.user_id = $1', [user])
    expect(linked).toEqual([{ n: '30' }])
    expect((await serverRows(user)).size).toBe(30)
    // The race did happen, and was answered by deferring.
    expect(deferred).toBeGreaterThan(0)
    await sync.close()
  }, 60_000)

  it("a device's pull leaves out its own pushes' echoes, but not once it discarded a push whose answer it never saw", async () => {
    const user = newUser()
    const lossy = responseLosingFetch()
    const a = device(user, createMemoryStorage(), lossy)
    const b = device(user)
    await Promise.all([a.sync.ready, b.sync.ready])
    const r = await a.contacts.insert({ name: 'v1' })
    for (let i = 0; i < 20; i++) await a.contacts.insert({ name: `other ${i}` })
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    await settle(stack())
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    // Its 21 rows came back to nobody but the other device.
    expect(a.events.filter((e) => e.type === 'pulled')).toEqual([])
    expect(await b.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(b.events.filter((e) => e.type === 'pulled')).toEqual([{ type: 'pulled', changes: 21 }])

    // The server applies an update whose answer is lost; the device then discards the change.
    await a.contacts.update(r.id, { name: 'v2' })
    lossy.loseNext()
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: false })
    expect(lossy.lost()).toBe(1)
    expect(await a.sync.clearQueue()).toHaveLength(1)
    expect(a.contacts.get(r.id)?.name).toBe('v1')
    // The server holds v2, written by this device: its next pull must bring it back.
    await settle(stack())
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(a.contacts.get(r.id)?.name).toBe('v2')
    expect((await a.sync.getMetrics()).dataInSync).toBe(true)
  })

  it('a damaged sent mark: what it marked still counts as sent, so a later write is not folded into a change the server already applied', async () => {
    const user = newUser()
    // The device's storage as a crash right after freezing the push would have left it.
    const storage = createMemoryStorage()
    let atCrash: Promise<Array<{ key: string; value: unknown }>> | null = null
    const watched: Storage = Object.create(storage, {
      commit: {
        value: async (ops: Parameters<Storage['commit']>[0]) => {
          await storage.commit(ops)
          if (!atCrash && ops.some((op) => op.type === 'set' && op.key.startsWith('s/'))) atCrash = storage.scan('')
        },
      },
    })
    const a = device(user, watched)
    await a.sync.ready
    const r = await a.contacts.insert({ name: 'v1' })
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    atCrash = null
    await a.contacts.update(r.id, { name: 'v2' })
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    await a.sync.close()
    const entries = await atCrash!
    const mark = entries.filter((e) => e.key.startsWith('s/'))
    expect(mark).toHaveLength(1)
    // The server applied v2; the storage left behind has the update frozen, its mark now garbled.
    const disk = createMemoryStorage()
    await disk.commit([...entries.map((e) => ({ type: 'set' as const, key: e.key, value: e.value })), { type: 'set', key: mark[0]!.key, value: { seqs: 'garbled' } }])
    const b = device(user, disk)
    await b.sync.ready
    expect(b.events).toContainEqual(expect.objectContaining({ type: 'error', kind: 'storage' }))
    // Repair quarantines the mark, and first writes what it marked whole, as sent.
    const report = await b.sync.repairSync()
    expect(report.quarantined).toEqual([expect.objectContaining({ key: mark[0]!.key })])
    expect(await disk.scan('s/')).toEqual([])
    await b.contacts.update(r.id, { phone: '555' })
    expect(b.sync.getSyncStatus().queueLength).toBe(2)
    expect(await b.sync.forceSyncAll()).toMatchObject({ ok: true })
    await settle(stack())
    expect(await b.sync.forceSyncAll()).toMatchObject({ ok: true })
    expect((await serverRows(user)).get(r.id)).toMatchObject({ name: 'v2', phone: '555' })
    expect(b.contacts.get(r.id)).toMatchObject({ name: 'v2', phone: '555' })
    await b.sync.close()
  })

  it.skipIf(!onRealPostgres)(`a resync keeps a record whose row the server holds back behind an older open transaction, and finishes once it has seen it${onRealPostgres ? '' : ` — skipped: ${PGLITE_ONE_SESSION}`}`, async () => {
    const a = device(newUser())
    await a.sync.ready
    const r = await a.contacts.insert({ name: 'v1' })
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
    // The next pull resyncs from scratch (nothing is damaged: repair only restarts the stream).
    await a.sync.repairSync()
    expect(await a.storage.get('meta/resync')).toBe(true)
    const older = new pg.Client({ connectionString: stack().databaseUrl })
    await older.connect()
    try {
      // A transaction with an id older than the push below stays open: the push's row waits
      // above the pull's watermark, so the resync cannot see it yet.
      await older.query('begin')
      await older.query('select pg_current_xact_id()')
      await a.contacts.update(r.id, { name: 'v2' })
      expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
      expect(a.contacts.get(r.id)).toMatchObject({ name: 'v2' })
      expect(await a.storage.get('meta/resync')).toBe(true)
      await older.query('commit')
      await settle(stack())
      expect(await a.sync.forceSyncAll()).toMatchObject({ ok: true })
      expect(await a.storage.get('meta/resync')).toBeUndefined()
      expect(a.contacts.get(r.id)).toMatchObject({ name: 'v2' })
      expect(a.contacts.syncState(r.id)).toBe('synced')
    } finally {
      await older.query('rollback').catch(() => undefined)
      await older.end()
      await a.sync.close()
    }
  })

  it('crash safety: a new orchestrator over the same storage after a crash at any point loses nothing and applies nothing twice', async () => {
    type Op = { kind: 'insert' } | { kind: 'update'; pick: number } | { kind: 'delete'; pick: number } | { kind: 'crash'; at: 'idle' | 'lost-push-response' | 'push-request' | 'pull' }
    const op = fc.oneof(
      fc.constant<Op>({ kind: 'insert' }),
      fc.nat(50).map<Op>((pick) => ({ kind: 'update', pick })),
      fc.nat(50).map<Op>((pick) => ({ kind: 'delete', pick })),
      fc.constantFrom<Op>({ kind: 'crash', at: 'idle' }, { kind: 'crash', at: 'lost-push-response' }, { kind: 'crash', at: 'push-request' }, { kind: 'crash', at: 'pull' }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 4, maxLength: 14 }), async (ops) => {
        const user = newUser()
        const storage = createMemoryStorage()
        // The fault sits in the fetch given to createClient; `mode` says what the next sync hits.
        let mode: 'ok' | 'lost-push-response' | 'push-request' | 'pull' = 'ok'
        const fault = {
          fetch: (async (input: RequestInfo | URL, init?: RequestInit) => {
            const url = String(input instanceof Request ? input.url : input)
            if (mode === 'push-request' && url.includes('sync_push')) throw new TypeError('fetch failed')
            if (mode === 'pull' && url.includes('sync_pull')) throw new TypeError('fetch failed')
            const response = await fetch(input, init)
            if (mode === 'lost-push-response' && url.includes('sync_push')) throw new TypeError('fetch failed')
            return response
          }) as typeof fetch,
        }
        let d = device(user, storage, fault)
        await d.sync.ready
        const model = new Map<string, string>()
        const conflicts: SyncEvent[] = []
        const watch = () => d.sync.subscribe((e) => e.type === 'conflict' && conflicts.push(e))
        let unwatch = watch()
        let n = 0
        for (const o of ops) {
          const live = [...model.keys()]
          if (o.kind === 'insert') {
            const c = await d.contacts.insert({ name: `n${n++}` })
            model.set(c.id, c.name)
          } else if (o.kind === 'update' && live.length) {
            const id = live[o.pick % live.length]!
            const name = `n${n++}`
            await d.contacts.update(id, { name })
            model.set(id, name)
          } else if (o.kind === 'delete' && live.length) {
            const id = live[o.pick % live.length]!
            await d.contacts.delete(id)
            model.delete(id)
          } else if (o.kind === 'crash') {
            if (o.at !== 'idle') {
              mode = o.at
              await d.sync.forceSyncAll()
              mode = 'ok'
            }
            // The crash: the old instance is abandoned without closing its storage.
            await d.sync.stopSync()
            unwatch()
            d = device(user, storage, fault)
            await d.sync.ready
            unwatch = watch()
          }
        }
        await settle(stack())
        expect(await d.sync.forceSyncAll()).toMatchObject({ ok: true })
        await settle(stack())
        expect(await d.sync.forceSyncAll()).toMatchObject({ ok: true })
        const server = await serverRows(user)
        const live = new Map([...server].filter(([, r]) => !r._deleted).map(([id, r]) => [id, r.name]))
        expect(live).toEqual(model)
        expect(new Map(d.contacts.list().map((c) => [c.id, c.name]))).toEqual(model)
        // A single writer never meets a conflict unless a change was applied twice or on a stale base.
        expect(conflicts).toHaveLength(0)
        expect(d.sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0 })
        unwatch()
        await d.sync.stopSync()
      }),
      { seed, numRuns: 12 },
    )
  }, 300_000)
})
