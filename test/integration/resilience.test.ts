/**
 * Resilience through the real stack (supabase-js → PostgREST → PostgreSQL or PGlite): outages,
 * expiring sessions and rejected rows. Faults are injected only through the `fetch` given to
 * supabase-js; time is virtual (manual environment) so a 10-minute outage runs in seconds.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createSyncOrchestrator } from '../../src/core/orchestrator.js'
import { DEFAULTS } from '../../src/core/orchestrator.js'
import { createSupabaseBackend, createResponseRecorder } from '../../src/backends/supabase/index.js'
import { createMemoryStorage } from '../../src/storage/memory.js'
import { createManualEnvironment, type ManualEnvironment } from '../../src/env/manual.js'
import { resolveBackoffOptions } from '../../src/core/retry.js'
import type { SyncEvent, SyncOrchestrator } from '../../src/core/types.js'
import type { FailedItem } from '../../src/core/queue.js'
import { newUser, settle, useStack } from '../helpers/stack.js'

interface Contact extends Record<string, unknown> {
  id: string
  name: string | null
  phone?: string | null
  tags?: unknown
}

const stack = useStack()

/** The dead-letter commands the orchestrator returns but `SyncOrchestrator` does not declare. */
type WithFailedQueue = SyncOrchestrator & {
  getFailed(): FailedItem[]
  retryFailed(ids?: readonly string[]): Promise<void>
  discardFailed(ids?: readonly string[]): Promise<void>
}

/** Name of the RPC a request calls (`sync_push_runs`, …), or `null` for anything else. */
function rpcOf(input: RequestInfo | URL): string | null {
  const url = String(input instanceof Request ? input.url : input)
  return /\/rpc\/(\w+)/.exec(url)?.[1] ?? null
}

/** Real waiting: lets requests on the loopback network finish while the virtual clock stands still. */
const realSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Advance virtual time in `stepMs` steps, giving real I/O a turn after each, until `done()` holds
 * and no run is in flight, or `maxMs` of virtual time have passed. Returns whether `done()` held.
 */
async function pump(env: ManualEnvironment, sync: SyncOrchestrator, done: () => boolean, { stepMs = 1000, maxMs = 20 * 60_000 } = {}): Promise<boolean> {
  const until = env.now() + maxMs
  for (;;) {
    // A run in flight is waiting on the network, not on the clock: let it finish first.
    for (let i = 0; i < 500 && sync.getSyncStatus().state === 'syncing'; i++) await realSleep(5)
    if (done()) return true
    if (env.now() >= until) return false
    await env.advance(stepMs)
    await realSleep(1)
  }
}

async function serverRows(user: string): Promise<Map<string, { name: string | null; phone: string | null; version: number; deleted: boolean }>> {
  const rows = await stack().query<{ id: string; name: string | null; phone: string | null; _version: string; _deleted: boolean }>(
    'select id::text, name, phone, _version, _deleted from public.contacts where user_id = $1',
    [user],
  )
  return new Map(rows.map((r) => [r.id, { name: r.name, phone: r.phone, version: Number(r._version), deleted: r._deleted }]))
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe('resilience through the real stack', () => {
  it('a 10-minute outage loses nothing, applies nothing twice, and is probed only as often as the backoff allows', async () => {
    // Jitter pinned to the middle of its range, so the number of probes has an exact bound.
    vi.spyOn(Math, 'random').mockReturnValue(0.5)
    const user = newUser()
    const env = createManualEnvironment({ now: Date.now() })
    let down = false
    const outageCalls: Array<{ at: number; rpc: string }> = []
    const faulty = (async (input: RequestInfo | URL, init?: RequestInit) => {
      const rpc = rpcOf(input)
      if (down) {
        outageCalls.push({ at: env.now(), rpc: rpc ?? 'other' })
        throw new TypeError('fetch failed: network is unreachable')
      }
      return fetch(input, init)
    }) as typeof fetch
    const sync = createSyncOrchestrator({
      storage: createMemoryStorage(),
      backend: createSupabaseBackend({ client: stack().createClient(user, { fetch: faulty }) }),
      environment: env,
      collections: { contacts: {} },
    })
    const events: SyncEvent[] = []
    sync.subscribe((e) => events.push(e))
    await sync.ready
    const contacts = sync.collection<Contact>('contacts')
    const model = new Map<string, { name: string; phone: string | null }>()

    // Before the outage: a few rows already on the server.
    for (let i = 0; i < 5; i++) {
      const c = await contacts.insert({ name: `before ${i}` })
      model.set(c.id, { name: c.name!, phone: null })
    }
    expect(await pump(env, sync, () => sync.getSyncStatus().queueLength === 0)).toBe(true)
    const before = [...model.keys()]

    // The outage: every request fails; writes go on every 5 s of virtual time.
    down = true
    const outageStart = env.now()
    const outageMs = 10 * 60_000
    const stepMs = 5000
    const updatesOf = new Map<string, number>()
    let n = 0
    while (env.now() - outageStart < outageMs) {
      const c = await contacts.insert({ name: `during ${n}` })
      model.set(c.id, { name: c.name!, phone: null })
      if (n % 3 === 0) {
        const id = before[n % before.length]!
        await contacts.update(id, { phone: `p${n}` })
        model.set(id, { ...model.get(id)!, phone: `p${n}` })
        updatesOf.set(id, (updatesOf.get(id) ?? 0) + 1)
      }
      if (n % 7 === 0) {
        await contacts.update(c.id, { phone: `fresh ${n}` })
        model.set(c.id, { name: c.name!, phone: `fresh ${n}` })
      }
      n++
      await env.advance(stepMs)
      await realSleep(1)
    }
    expect(sync.getSyncStatus().state).toBe('backoff')
    const queuedAtEnd = sync.getSyncStatus().queueLength
    expect(queuedAtEnd).toBeGreaterThan(100)

    // Spacing: the k-th retry waits max(debounce, ceiling_k × 0.5), ceiling_k = min(max, base × factor^(k-1)).
    const { baseMs, maxMs, factor } = resolveBackoffOptions()
    const debounce = DEFAULTS.schedule.debounceMs
    const delays: number[] = []
    for (let k = 1, t = 0; ; k++) {
      const delay = Math.max(debounce, Math.floor(Math.min(maxMs, baseMs * factor ** (k - 1)) * 0.5))
      if (t + delay > outageMs) break
      delays.push(delay)
      t += delay
    }
    // One request per failed run (its push), the first one at the first write (after the debounce).
    const bound = delays.length + 1
    expect(outageCalls.length).toBeGreaterThanOrEqual(3)
    expect(outageCalls.length).toBeLessThanOrEqual(bound)
    expect(outageCalls.every((c) => c.rpc === 'sync_push_runs')).toBe(true)
    for (let i = 1; i < outageCalls.length; i++) {
      const gap = outageCalls[i]!.at - outageCalls[i - 1]!.at
      // Never sooner than the backoff asks; a run can end a step late, never early.
      expect(gap).toBeGreaterThanOrEqual(delays[i - 1]!)
      expect(gap).toBeLessThanOrEqual(delays[i - 1]! + stepMs)
    }

    // The outage ends: the next retry (at most one backoff cap away) drains everything.
    down = false
    const applied: number[] = []
    sync.subscribe((e) => e.type === 'pushed' && applied.push(e.applied))
    expect(await pump(env, sync, () => sync.getSyncStatus().queueLength === 0, { stepMs: 5000, maxMs: maxMs + 60_000 })).toBe(true)
    await settle(stack())
    const rows = await serverRows(user)
    expect(rows.size).toBe(model.size)
    for (const [id, want] of model) expect(rows.get(id)).toMatchObject({ name: want.name, phone: want.phone, deleted: false })
    // Exactly once: every queued item was applied once; a row created during the outage was created
    // once (its update folded in: v1); a row from before moved at most once per local update (items
    // frozen by a failed attempt cannot coalesce with later ones, so several updates may remain).
    expect(applied.reduce((a, b) => a + b, 0)).toBe(queuedAtEnd)
    for (const [id, row] of rows) {
      if (!before.includes(id)) expect(row.version).toBe(1)
      else expect(row.version).toBeLessThanOrEqual(1 + (updatesOf.get(id) ?? 0))
    }
    expect(before.some((id) => (rows.get(id)?.version ?? 0) > 1)).toBe(true)
    expect(events.filter((e) => e.type === 'conflict')).toHaveLength(0)
    expect(sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0, lastError: null })
    expect((await sync.getMetrics()).dataInSync).toBe(true)
    await sync.close()
  }, 120_000)

  it('a session that expires mid-sync is refreshed through refreshAuth and the sync completes', async () => {
    const email = `expiring-${newUser()}@example.test`
    const env = createManualEnvironment({ now: Date.now() })
    // The access token the client starts with; once `expire` is set, the server sees it as expired.
    let staleToken: string | null = null
    let userId = ''
    let expire = false
    const statuses: Array<{ rpc: string; status: number }> = []
    const faulty = (async (input: RequestInfo | URL, init?: RequestInit) => {
      const rpc = rpcOf(input)
      const headers = new Headers(init?.headers)
      if (rpc && expire && staleToken !== null && headers.get('Authorization') === `Bearer ${staleToken}`) {
        headers.set('Authorization', `Bearer ${stack().signJwt(userId, { expiresInSeconds: -60 })}`)
      }
      const response = await fetch(input, { ...init, headers })
      if (rpc) statuses.push({ rpc, status: response.status })
      // The first push batch gets through; the session expires right after it.
      if (rpc === 'sync_push_runs' && response.ok) expire = true
      return response
    }) as typeof fetch
    const recorder = createResponseRecorder({ fetch: faulty })
    const session = await stack().createSessionClient(email, { fetch: recorder.fetch })
    userId = session.userId
    staleToken = (await session.client.auth.getSession()).data.session!.access_token
    let refreshes = 0
    const sync = createSyncOrchestrator({
      storage: createMemoryStorage(),
      backend: createSupabaseBackend({ client: session.client, responses: recorder }),
      environment: env,
      collections: { contacts: {} },
      batchSize: 100,
      refreshAuth: async () => {
        refreshes++
        const { error } = await session.client.auth.refreshSession()
        return error === null
      },
    })
    await sync.ready
    const contacts = sync.collection<Contact>('contacts')
    const ids: string[] = []
    for (let i = 0; i < 250; i++) ids.push((await contacts.insert({ name: `s${i}` })).id)
    expect(await pump(env, sync, () => sync.getSyncStatus().queueLength === 0, { maxMs: 60_000 })).toBe(true)

    // The second batch met the expired token (401), the session was refreshed once, the rest landed.
    expect(statuses.filter((s) => s.status === 401).length).toBeGreaterThanOrEqual(1)
    expect(refreshes).toBe(1)
    const newToken = (await session.client.auth.getSession()).data.session!.access_token
    expect(newToken).not.toBe(staleToken)
    const rows = await serverRows(userId)
    expect([...rows.keys()].sort()).toEqual([...ids].sort())
    expect(sync.getSyncStatus()).toMatchObject({ queueLength: 0, lastError: null })
    await sync.close()
  }, 60_000)

  it('with no session to be had, status is unauthenticated, nothing is lost and no requests are made', async () => {
    const user = newUser()
    const env = createManualEnvironment({ now: Date.now() })
    let requests = 0
    const counting = (async (input: RequestInfo | URL, init?: RequestInit) => {
      if (rpcOf(input)) requests++
      return fetch(input, init)
    }) as typeof fetch
    let refreshes = 0
    const sync = createSyncOrchestrator({
      storage: createMemoryStorage(),
      backend: createSupabaseBackend({ client: stack().createClient(user, { fetch: counting, expiresInSeconds: -60 }) }),
      environment: env,
      collections: { contacts: {} },
      refreshAuth: async () => {
        refreshes++
        return false
      },
    })
    const events: SyncEvent[] = []
    sync.subscribe((e) => events.push(e))
    await sync.ready
    const contacts = sync.collection<Contact>('contacts')
    await contacts.insert({ name: 'kept' })
    expect(await pump(env, sync, () => sync.getSyncStatus().state === 'unauthenticated', { maxMs: 60_000 })).toBe(true)
    expect(refreshes).toBe(1)
    expect(sync.getSyncStatus()).toMatchObject({ state: 'unauthenticated', queueLength: 1, lastError: { kind: 'auth' } })
    expect(events.some((e) => e.type === 'error' && e.kind === 'auth')).toBe(true)
    const afterFailure = requests
    // Signed out: more writes and an hour of virtual time cost no requests.
    await contacts.insert({ name: 'also kept' })
    for (let i = 0; i < 60; i++) await env.advance(60_000)
    await realSleep(20)
    expect(requests).toBe(afterFailure)
    expect(sync.getSyncStatus()).toMatchObject({ state: 'unauthenticated', queueLength: 2 })
    expect(await sync.forceSyncAll()).toMatchObject({ ok: false, reason: 'unauthenticated' })
    expect((await serverRows(user)).size).toBe(0)
    await sync.close()
  }, 60_000)

  it('a poison row in a batch of 500 is dead-lettered with its SQLSTATE while the other 499 land; retry and discard work', async () => {
    const user = newUser()
    const env = createManualEnvironment({ now: Date.now() })
    const sync = createSyncOrchestrator({
      storage: createMemoryStorage(),
      backend: createSupabaseBackend({ client: stack().createClient(user) }),
      environment: env,
      collections: { contacts: {} },
    }) as WithFailedQueue
    const events: SyncEvent[] = []
    sync.subscribe((e) => events.push(e))
    await sync.ready
    const contacts = sync.collection<Contact>('contacts')
    const good: string[] = []
    let poison = ''
    for (let i = 0; i < 500; i++) {
      if (i === 321) poison = (await contacts.insert({ name: null })).id
      else good.push((await contacts.insert({ name: `g${i}` })).id)
    }
    expect(await sync.forceSyncAll()).toMatchObject({ ok: true })
    await settle(stack())
    let rows = await serverRows(user)
    expect(rows.size).toBe(499)
    expect([...rows.keys()].sort()).toEqual([...good].sort())
    const failed = sync.getFailed()
    expect(failed).toHaveLength(1)
    expect(failed[0]).toMatchObject({ recordId: poison, action: 'create', error: { kind: 'permanent', code: '23502' } })
    expect(failed[0]!.error.message).toMatch(/name/)
    expect(events).toContainEqual(expect.objectContaining({ type: 'failed', id: poison, code: '23502' }))
    expect(contacts.syncState(poison)).toBe('failed')
    expect(sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 1 })

    // Retry as is: the same refusal, still dead-lettered, nothing else disturbed.
    await sync.retryFailed()
    expect(await sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(sync.getFailed()).toHaveLength(1)
    expect(sync.getFailed()[0]!.error.code).toBe('23502')

    // Retry after fixing the row locally: the fix folds into the retried create and lands.
    await sync.retryFailed([sync.getFailed()[0]!.id])
    await contacts.update(poison, { name: 'fixed' })
    expect(await sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(sync.getFailed()).toHaveLength(0)
    await settle(stack())
    rows = await serverRows(user)
    expect(rows.size).toBe(500)
    expect(rows.get(poison)).toMatchObject({ name: 'fixed', version: 1 })
    expect(contacts.syncState(poison)).toBe('synced')

    // Discard: a second poison row (tags must be an array: 22P02) leaves the failed queue for good.
    const bad = await contacts.insert({ name: 'bad tags', tags: 'not an array' })
    expect(await sync.forceSyncAll()).toMatchObject({ ok: true })
    expect(sync.getFailed().map((f) => f.recordId)).toEqual([bad.id])
    expect(sync.getFailed()[0]!.error.code).toMatch(/^22/)
    await sync.discardFailed()
    expect(sync.getFailed()).toHaveLength(0)
    expect(sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0 })
    expect(await sync.forceSyncAll()).toMatchObject({ ok: true })
    await settle(stack())
    expect((await serverRows(user)).has(bad.id)).toBe(false)
    await sync.close()
  }, 60_000)
})
