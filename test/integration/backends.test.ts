/**
 * Both backends against the real stack (PostgREST 12 + the sync migration, on PGlite or on the
 * PostgreSQL of DATABASE_URL): one behaviour suite run against each, then the failures each one
 * must classify through the real components.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import ws from 'ws'
import { createClient } from '@supabase/supabase-js'
import { AbortError, SyncError } from '../../src/core/errors.js'
import { checksumOf } from '../../src/core/checksum.js'
import type { Backend, Change, Cursor, Mutation, MutationOutcome } from '../../src/core/protocol.js'
import { createResponseRecorder, createSupabaseBackend } from '../../src/backends/supabase/index.js'
import { createPostgresBackend } from '../../src/backends/postgres/index.js'
import { startLocalStack, type LocalStack } from '../../src/testing/index.js'

let stack: LocalStack
let pool: pg.Pool

beforeAll(async () => {
  stack = await startLocalStack()
  pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 })
  pool.on('error', () => undefined)
})

afterAll(async () => {
  await pool?.end()
  await stack?.stop()
})

/** A fetch that answers the next request with an injected fault, then behaves again. */
function faultyFetch() {
  type Fault = (input: Parameters<typeof fetch>[0], init?: RequestInit) => Promise<Response>
  const faults: Fault[] = []
  const wrapped = (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    const fault = faults.shift()
    return fault ? fault(input, init) : fetch(input, init)
  }) as typeof fetch
  return { fetch: wrapped, inject: (fault: Fault) => faults.push(fault) }
}

const postgrestError = (status: number, code: string, headers: Record<string, string> = {}): Response =>
  new Response(JSON.stringify({ code, message: `injected ${status}`, details: null, hint: null }), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  })

async function failure(promise: Promise<unknown>): Promise<SyncError> {
  try {
    await promise
  } catch (error) {
    if (error instanceof SyncError) return error
    throw error
  }
  throw new Error('expected a SyncError')
}

/**
 * Pulls until the stream ends, repeating until `done` holds: a pull only returns rows whose writing
 * transaction precedes every running one, so on a shared server another database's open
 * transaction may hold fresh rows back for a moment.
 */
async function pullAll(backend: Backend, tables: string[], cursor: Cursor, limit: number, done: (changes: Change[]) => boolean) {
  const changes: Change[] = []
  const pageSizes: number[] = []
  const deadline = Date.now() + 15_000
  for (;;) {
    const page = await backend.pull({ tables, cursor, limit })
    expect(page.reset).toBe(false)
    changes.push(...page.changes)
    pageSizes.push(page.changes.length)
    cursor = page.cursor
    if (page.hasMore) continue
    if (done(changes) || Date.now() > deadline) return { changes, cursor, pageSizes }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

type MakeBackend = (userId: string) => Backend

const backends: Array<[string, MakeBackend]> = [
  ['supabase', (userId) => createSupabaseBackend({ client: stack.createClient(userId) })],
  ['postgres', (userId) => createPostgresBackend({ pool, user: { id: userId } })],
]

describe.each(backends)('%s backend', (_name, makeBackend) => {
  it('creates, updates and deletes a row, and pull and checksum agree', async () => {
    const userId = randomUUID()
    const backend = makeBackend(userId)
    const clientId = randomUUID()
    const id = randomUUID()
    const start = await pullAll(backend, ['contacts'], null, 100, () => true)
    expect(start.changes).toEqual([])

    const [created] = await backend.push(clientId, [
      { seq: 1, table: 'contacts', action: 'create', id, data: { name: 'Ada', tags: ['x'] }, baseVersion: null, hlc: '001700000000000:00000:device-a' },
    ])
    expect(created).toMatchObject({ seq: 1, status: 'applied', version: 1, row: { id, name: 'Ada', tags: ['x'], user_id: userId } })
    expect(created!.status === 'applied' && Object.keys(created!.row ?? {}).some((k) => k.startsWith('_'))).toBe(false)

    const afterCreate = await pullAll(backend, ['contacts'], start.cursor, 100, (c) => c.length >= 1)
    expect(afterCreate.changes).toEqual([
      expect.objectContaining({ table: 'contacts', id, version: 1, deleted: false, row: expect.objectContaining({ name: 'Ada' }) }),
    ])
    expect(await backend.checksum(['contacts'])).toEqual([{ table: 'contacts', ...checksumOf([{ id, version: 1 }]) }])

    const [updated, deleted] = await backend.push(clientId, [
      { seq: 2, table: 'contacts', action: 'update', id, data: { name: 'Ada L.' }, baseVersion: 1 },
      { seq: 3, table: 'contacts', action: 'delete', id, baseVersion: 2 },
    ])
    expect(updated).toMatchObject({ status: 'applied', version: 2, row: { name: 'Ada L.', tags: ['x'] } })
    expect(deleted).toMatchObject({ status: 'applied', version: 3 })

    const afterDelete = await pullAll(backend, ['contacts'], afterCreate.cursor, 100, (c) => c.length >= 1)
    expect(afterDelete.changes).toEqual([expect.objectContaining({ id, version: 3, deleted: true, row: expect.objectContaining({ name: 'Ada L.' }) })])
    expect(await backend.checksum(['contacts'])).toEqual([{ table: 'contacts', count: 0, checksum: '0' }])

    // Exactly once: the same batch again returns the stored outcomes and changes nothing.
    const again = await backend.push(clientId, [
      { seq: 2, table: 'contacts', action: 'update', id, data: { name: 'Ada L.' }, baseVersion: 1 },
      { seq: 3, table: 'contacts', action: 'delete', id, baseVersion: 2 },
    ])
    expect(again).toEqual([updated, deleted])
    const [stored] = await stack.query<{ _version: string }>('select _version from public.contacts where id = $1', [id])
    expect(Number(stored!._version)).toBe(3)
  })

  it('pages through more rows than PostgREST db-max-rows, none missed, none twice', async () => {
    const userId = randomUUID()
    const backend = makeBackend(userId)
    const total = 2_345
    // Written outside the engine, as a server job would.
    await stack.query(
      `insert into public.contacts (id, user_id, name) select gen_random_uuid(), $1, 'bulk ' || g from generate_series(1, $2::int) g`,
      [userId, total],
    )
    const { changes, pageSizes } = await pullAll(backend, ['contacts'], null, 5_000, (c) => c.length >= total)
    expect(changes).toHaveLength(total)
    expect(new Set(changes.map((c) => c.id)).size).toBe(total)
    // The backend caps a page at its pullLimit (1000) whatever the engine asks for.
    expect(Math.max(...pageSizes)).toBe(1000)
    const [live] = await backend.checksum(['contacts'])
    expect(live).toEqual({ table: 'contacts', ...checksumOf(changes.map((c) => ({ id: c.id, version: c.version }))) })
  })

  it('maps conflicts and rejections into outcomes without losing the rest of the batch', async () => {
    const userId = randomUUID()
    const backend = makeBackend(userId)
    const clientId = randomUUID()
    const id = randomUUID()
    const foreignId = randomUUID()
    await stack.query(`insert into public.contacts (id, user_id, name) values ($1, $2, 'not yours')`, [foreignId, randomUUID()])

    const mutations: Mutation[] = [
      { seq: 1, table: 'contacts', action: 'create', id, data: { name: 'v1' }, baseVersion: null },
      { seq: 2, table: 'contacts', action: 'update', id, data: { name: 'stale' }, baseVersion: 7 },
      { seq: 3, table: 'contacts', action: 'create', id: randomUUID(), data: { phone: '1' }, baseVersion: null },
      { seq: 4, table: 'notes', action: 'create', id: 'local-1', data: { body: 'x'.repeat(2000) }, baseVersion: null },
      { seq: 5, table: 'contacts', action: 'update', id: foreignId, data: { name: 'mine now' }, baseVersion: null },
      { seq: 6, table: 'notes', action: 'create', id: 'local-2', data: { body: 'kept' }, baseVersion: null },
    ]
    const outcomes = await backend.push(clientId, mutations)
    const bySeq = new Map<number, MutationOutcome>(outcomes.map((o) => [o.seq, o]))
    expect(outcomes.map((o) => o.seq)).toEqual([1, 2, 3, 4, 5, 6])
    expect(bySeq.get(1)).toMatchObject({ status: 'applied', version: 1 })
    expect(bySeq.get(2)).toMatchObject({ status: 'conflict', version: 1, deleted: false, row: { id, name: 'v1' } })
    expect(bySeq.get(3)).toMatchObject({ status: 'rejected', code: '23502' })
    expect(bySeq.get(4)).toMatchObject({ status: 'rejected', code: '23514' })
    expect(bySeq.get(5)).toMatchObject({ status: 'rejected' })
    expect(bySeq.get(6)).toMatchObject({ status: 'applied', version: 1, row: { body: 'kept' } })
    const [foreign] = await stack.query<{ name: string }>('select name from public.contacts where id = $1', [foreignId])
    expect(foreign!.name).toBe('not yours')
  })

  it('refuses a corrupt cursor as permanent, through the real server', async () => {
    const backend = makeBackend(randomUUID())
    const error = await failure(backend.pull({ tables: ['contacts'], cursor: JSON.stringify({ x: 'not-a-number', t: 'contacts', i: 'a' }), limit: 10 }))
    expect(error.kind).toBe('permanent')
    expect(error.code).toBe('22023')
  })

  it('refuses an unknown table as permanent', async () => {
    const error = await failure(makeBackend(randomUUID()).checksum(['no_such_table']))
    expect(error.kind).toBe('permanent')
  })

  it('rejects with AbortError when aborted, and keeps working afterwards', async () => {
    const userId = randomUUID()
    const backend = makeBackend(userId)
    const controller = new AbortController()
    const pending = backend.pull({ tables: ['contacts'], cursor: null, limit: 1000 }, { signal: controller.signal })
    controller.abort()
    await expect(pending).rejects.toBeInstanceOf(AbortError)
    const [outcome] = await backend.push(randomUUID(), [{ seq: 1, table: 'contacts', action: 'create', id: randomUUID(), data: { name: 'after abort' }, baseVersion: null }])
    expect(outcome!.status).toBe('applied')
  })

  it('a push aborted while the server is busy, then retried, applies once', async () => {
    const userId = randomUUID()
    const backend = makeBackend(userId)
    const clientId = randomUUID()
    const id = randomUUID()
    await backend.push(clientId, [{ seq: 1, table: 'contacts', action: 'create', id, data: { name: 'v1' }, baseVersion: null }])
    const update: Mutation[] = [{ seq: 2, table: 'contacts', action: 'update', id, data: { name: 'v2' }, baseVersion: 1 }]

    // Another session holds the row (on PGlite, the whole database) so the push cannot finish.
    const locker = new pg.Client({ connectionString: stack.databaseUrl })
    await locker.connect()
    try {
      await locker.query('begin')
      await locker.query('select 1 from public.contacts where id = $1 for update', [id])
      const controller = new AbortController()
      const pending = backend.push(clientId, update, { signal: controller.signal })
      await new Promise((resolve) => setTimeout(resolve, 200))
      controller.abort()
      await expect(pending).rejects.toBeInstanceOf(AbortError)
      await locker.query('commit')
    } finally {
      await locker.end()
    }

    // Whether or not the aborted attempt reached the table, the retry lands exactly once.
    const [retried] = await backend.push(clientId, update)
    expect(retried).toMatchObject({ seq: 2, status: 'applied', version: 2, row: { name: 'v2' } })
    const [stored] = await stack.query<{ _version: string }>('select _version from public.contacts where id = $1', [id])
    expect(Number(stored!._version)).toBe(2)
  })
})

describe('supabase backend through faults injected into supabase-js fetch', () => {
  it('a push whose response was lost, retried, changes nothing', async () => {
    const userId = randomUUID()
    const faults = faultyFetch()
    const backend = createSupabaseBackend({ client: stack.createClient(userId, { fetch: faults.fetch }) })
    const clientId = randomUUID()
    const id = randomUUID()
    const batch: Mutation[] = [
      { seq: 1, table: 'contacts', action: 'create', id, data: { name: 'once' }, baseVersion: null },
      { seq: 2, table: 'contacts', action: 'update', id, data: { name: 'twice?' }, baseVersion: 1 },
    ]
    // The server applies the batch; the device never hears back.
    faults.inject(async (input, init) => {
      const response = await fetch(input, init)
      await response.text()
      throw new TypeError('fetch failed: connection reset')
    })
    const lost = await failure(backend.push(clientId, batch))
    expect(lost.kind).toBe('network')

    const retried = await backend.push(clientId, batch)
    expect(retried).toMatchObject([
      { seq: 1, status: 'applied', version: 1 },
      { seq: 2, status: 'applied', version: 2, row: { name: 'twice?' } },
    ])
    const rows = await stack.query<{ _version: string; name: string }>('select _version, name from public.contacts where id = $1', [id])
    expect(rows).toHaveLength(1)
    expect([Number(rows[0]!._version), rows[0]!.name]).toEqual([2, 'twice?'])
  })

  it('offline: a fetch that rejects, and a refused connection, are network errors', async () => {
    const faults = faultyFetch()
    const backend = createSupabaseBackend({ client: stack.createClient(randomUUID(), { fetch: faults.fetch }) })
    faults.inject(() => Promise.reject(new TypeError('fetch failed')))
    expect((await failure(backend.pull({ tables: ['contacts'], cursor: null, limit: 10 }))).kind).toBe('network')

    const nowhere = createClient('http://127.0.0.1:9', stack.anonKey, {
      auth: { persistSession: false, autoRefreshToken: false },
      realtime: { transport: ws as any },
    })
    expect((await failure(createSupabaseBackend({ client: nowhere }).checksum(['contacts']))).kind).toBe('network')
  })

  it('503 from PostgREST is a server error', async () => {
    const faults = faultyFetch()
    const backend = createSupabaseBackend({ client: stack.createClient(randomUUID(), { fetch: faults.fetch }) })
    faults.inject(async () => postgrestError(503, 'PGRST001'))
    const error = await failure(backend.push(randomUUID(), [{ seq: 1, table: 'contacts', action: 'create', id: randomUUID(), data: { name: 'x' }, baseVersion: null }]))
    expect([error.kind, error.status, error.code]).toEqual(['server', 503, 'PGRST001'])
  })

  it('429 with Retry-After is a rate limit carrying the delay, in both formats', async () => {
    const faults = faultyFetch()
    const responses = createResponseRecorder({ fetch: faults.fetch })
    const backend = createSupabaseBackend({ client: stack.createClient(randomUUID(), { fetch: responses.fetch }), responses })
    faults.inject(async () => postgrestError(429, '', { 'Retry-After': '17' }))
    const seconds = await failure(backend.pull({ tables: ['contacts'], cursor: null, limit: 10 }))
    expect([seconds.kind, seconds.status, seconds.retryAfterMs]).toEqual(['rate-limit', 429, 17_000])

    const serverNow = Date.now()
    faults.inject(async () =>
      postgrestError(429, '', { 'Retry-After': new Date(serverNow + 42_000).toUTCString(), Date: new Date(serverNow).toUTCString() }),
    )
    const date = await failure(backend.checksum(['contacts']))
    expect(date.kind).toBe('rate-limit')
    // HTTP-dates have whole seconds.
    expect(Math.abs(date.retryAfterMs! - 42_000)).toBeLessThanOrEqual(1000)

    // Afterwards the same backend works: nothing was left recorded for the next call.
    expect(await backend.checksum(['contacts'])).toEqual([{ table: 'contacts', count: 0, checksum: '0' }])
  })

  it('an expired JWT and a tampered JWT are auth errors from the real PostgREST', async () => {
    const userId = randomUUID()
    const expired = createSupabaseBackend({ client: stack.createClient(userId, { expiresInSeconds: -60 }) })
    const expiredError = await failure(expired.pull({ tables: ['contacts'], cursor: null, limit: 10 }))
    expect([expiredError.kind, expiredError.status]).toEqual(['auth', 401])
    expect(expiredError.code).toMatch(/^PGRST30/)

    const token = stack.signJwt(userId)
    const [header, payload] = token.split('.')
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), sub: randomUUID() })).toString('base64url')
    const tampered = createClient(stack.url, stack.anonKey, {
      global: { headers: { Authorization: `Bearer ${header}.${forged}.${token.split('.')[2]}` } },
      auth: { persistSession: false, autoRefreshToken: false },
      realtime: { transport: ws as any },
    })
    const tamperedError = await failure(createSupabaseBackend({ client: tampered }).checksum(['contacts']))
    expect([tamperedError.kind, tamperedError.status]).toEqual(['auth', 401])
  })

  it('a caller with no session (anon) is an auth error', async () => {
    const anon = createClient(stack.url, stack.anonKey, { auth: { persistSession: false, autoRefreshToken: false }, realtime: { transport: ws as any } })
    const error = await failure(createSupabaseBackend({ client: anon }).checksum(['contacts']))
    expect(error.kind).toBe('auth')
  })
})

describe('postgres backend failures', () => {
  it('an unreachable database is a network error', async () => {
    const nowhere = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:9/postgres', connectionTimeoutMillis: 2000 })
    try {
      const error = await failure(createPostgresBackend({ pool: nowhere, user: { id: randomUUID() } }).checksum(['contacts']))
      expect(error.kind).toBe('network')
    } finally {
      await nowhere.end()
    }
  })

  it('acting as anon is an auth error, as through PostgREST', async () => {
    const error = await failure(createPostgresBackend({ pool, user: { id: randomUUID(), role: 'anon' } }).checksum(['contacts']))
    expect([error.kind, error.code]).toEqual(['auth', '42501'])
  })
})
