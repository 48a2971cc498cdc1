import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import ws from 'ws'
import { createClient } from '@supabase/supabase-js'
import { AbortError, SyncError } from '../../src/core/errors.js'
import type { Mutation } from '../../src/core/protocol.js'
import {
  classifySupabaseError,
  createResponseRecorder,
  createSupabaseBackend,
  parseRetryAfter,
  type SupabaseFailure,
} from '../../src/backends/supabase/index.js'
import { classifyPostgresError, createPostgresBackend, type PostgresFailureContext } from '../../src/backends/postgres/index.js'

const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)
const fcParams = { seed, numRuns: 200 }

const NOW = Date.UTC(2025, 0, 1, 12, 0, 0)

describe('classifySupabaseError', () => {
  const cases: Array<[string, SupabaseFailure, SyncError['kind'], number | undefined]> = [
    ['fetch rejected (offline): status 0', { status: 0, code: '', message: 'TypeError: fetch failed' }, 'network', undefined],
    ['503 database unreachable', { status: 503, code: 'PGRST001' }, 'server', undefined],
    ['504 pool timeout', { status: 504, code: 'PGRST003' }, 'server', undefined],
    ['500 internal', { status: 500, code: 'XX000' }, 'server', undefined],
    ['502 from the gateway, no code', { status: 502 }, 'server', undefined],
    ['408 request timeout', { status: 408 }, 'server', undefined],
    ['401 expired JWT', { status: 401, code: 'PGRST301', message: 'JWT expired' }, 'auth', undefined],
    ['401 without a code (gateway: bad API key)', { status: 401 }, 'auth', undefined],
    ['PGRST303 claims validation', { status: 401, code: 'PGRST303' }, 'auth', undefined],
    ['SQLSTATE class 28 at 403', { status: 403, code: '28P01' }, 'auth', undefined],
    ['429 with delta-seconds', { status: 429, retryAfter: '7' }, 'rate-limit', 7000],
    ['429 with an HTTP-date, measured against Date', {
      status: 429,
      retryAfter: new Date(NOW + 30_000).toUTCString(),
      date: new Date(NOW).toUTCString(),
      now: NOW + 3_600_000, // a device clock an hour fast must not shorten the wait
    }, 'rate-limit', 30_000],
    ['429 with an HTTP-date, no Date header', { status: 429, retryAfter: new Date(NOW + 5_000).toUTCString(), now: NOW }, 'rate-limit', 5000],
    ['429 with a date in the past', { status: 429, retryAfter: new Date(NOW - 5_000).toUTCString(), now: NOW }, 'rate-limit', 0],
    ['429 without Retry-After', { status: 429 }, 'rate-limit', undefined],
    ['429 with an unreadable Retry-After', { status: 429, retryAfter: 'soon' }, 'rate-limit', undefined],
    ['409 conflict', { status: 409, code: '23503' }, 'conflict', undefined],
    ['23505 unique violation', { status: 409, code: '23505' }, 'conflict', undefined],
    ['23505 on another status', { status: 400, code: '23505' }, 'conflict', undefined],
    ['403 insufficient privilege', { status: 403, code: '42501' }, 'permanent', undefined],
    ['404 function not found', { status: 404, code: 'PGRST202' }, 'permanent', undefined],
    ['400 invalid input', { status: 400, code: '22P02' }, 'permanent', undefined],
    ['413 payload too large', { status: 413 }, 'too-large', undefined],
    ['200 whose body was not JSON', { status: 200, message: '<html>' }, 'server', undefined],
  ]

  it.each(cases)('%s', (_name, failure, kind, retryAfterMs) => {
    const error = classifySupabaseError(failure)
    expect(error).toBeInstanceOf(SyncError)
    expect(error.kind).toBe(kind)
    expect(error.retryAfterMs).toBe(retryAfterMs)
    if (failure.status !== 0) expect(error.status).toBe(failure.status)
    if (failure.code) expect(error.code).toBe(failure.code)
  })

  it('never looks at the message text', () => {
    fc.assert(
      fc.property(fc.constantFrom(0, 401, 409, 429, 400, 503), fc.string(), fc.string(), (status, a, b) => {
        expect(classifySupabaseError({ status, message: a }).kind).toBe(classifySupabaseError({ status, message: b }).kind)
      }),
      fcParams,
    )
  })
})

describe('parseRetryAfter', () => {
  it('reads delta-seconds', () => {
    fc.assert(
      fc.property(fc.nat({ max: 86_400 }), (seconds) => {
        expect(parseRetryAfter(String(seconds))).toBe(seconds * 1000)
        expect(parseRetryAfter(` ${seconds} `)).toBe(seconds * 1000)
      }),
      fcParams,
    )
  })

  it('reads an HTTP-date relative to the server clock, never negative', () => {
    fc.assert(
      fc.property(fc.integer({ min: -86_400, max: 86_400 }), fc.integer({ min: -86_400, max: 86_400 }), (offset, skew) => {
        const at = new Date(NOW + offset * 1000).toUTCString()
        const expected = Math.max(0, offset * 1000)
        expect(parseRetryAfter(at, { date: new Date(NOW).toUTCString(), now: NOW + skew * 1000 })).toBe(expected)
        expect(parseRetryAfter(at, { now: NOW })).toBe(expected)
      }),
      fcParams,
    )
  })

  it('gives undefined for nothing or garbage', () => {
    for (const value of [null, undefined, '', '  ', '-5', 'later', '1e3']) expect(parseRetryAfter(value)).toBeUndefined()
  })
})

describe('classifyPostgresError', () => {
  const err = (code: string | undefined, message = 'failure'): Error => Object.assign(new Error(message), code === undefined ? {} : { code })
  const cases: Array<[string, unknown, PostgresFailureContext, SyncError['kind']]> = [
    ['ECONNREFUSED (server down)', err('ECONNREFUSED'), { connecting: true }, 'network'],
    ['ECONNRESET', err('ECONNRESET'), {}, 'network'],
    ['ETIMEDOUT', err('ETIMEDOUT'), {}, 'network'],
    ['ENOTFOUND', err('ENOTFOUND'), { connecting: true }, 'network'],
    ['no code while connecting (pool timeout)', err(undefined), { connecting: true }, 'network'],
    ['no code after the connection was lost', err(undefined), { connectionLost: true }, 'network'],
    ['57P01 admin shutdown', err('57P01'), {}, 'server'],
    ['57P03 cannot connect now', err('57P03'), { connecting: true }, 'server'],
    ['57014 statement timeout', err('57014'), {}, 'server'],
    ['53300 too many connections', err('53300'), { connecting: true }, 'server'],
    ['08006 connection failure', err('08006'), {}, 'server'],
    ['08P01 protocol violation', err('08P01'), {}, 'server'],
    ['40001 serialization failure', err('40001'), {}, 'server'],
    ['40P01 deadlock', err('40P01'), {}, 'server'],
    ['XX000 internal error', err('XX000'), {}, 'server'],
    ['28P01 password authentication failed', err('28P01'), { connecting: true }, 'auth'],
    ['28000 invalid authorization', err('28000'), {}, 'auth'],
    ['42501 insufficient privilege', err('42501'), {}, 'permanent'],
    ['42501 acting as anon (as PostgREST: 401)', err('42501'), { anonymous: true }, 'auth'],
    ['23505 unique violation', err('23505'), {}, 'conflict'],
    ['54000 program limit exceeded (a batch over a size limit)', err('54000'), {}, 'too-large'],
    ['42883 function does not exist', err('42883'), {}, 'permanent'],
    ['22P02 invalid text representation', err('22P02'), {}, 'permanent'],
    ['a bug on a live connection (TypeError)', new TypeError('x is undefined'), {}, 'permanent'],
    ['a thrown non-error', 'boom', {}, 'permanent'],
  ]

  it.each(cases)('%s', (_name, error, context, kind) => {
    const classified = classifyPostgresError(error, context)
    expect(classified).toBeInstanceOf(SyncError)
    expect(classified.kind).toBe(kind)
    expect(classified.cause).toBe(error)
  })
})

// --- The Supabase backend over a real supabase-js client whose fetch answers from a script. ---

type Answer = Response | Error | ((init: RequestInit | undefined) => Promise<Response>)

function scriptedClient(answers: Answer[], options: { recorder?: boolean } = {}) {
  const requests: Array<{ url: string; body: unknown }> = []
  const scripted = async (input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> => {
    requests.push({ url: String(input), body: init?.body ? JSON.parse(String(init.body)) : undefined })
    const next = answers.shift()
    if (next === undefined) throw new Error('no scripted answer left')
    if (next instanceof Error) throw next
    if (typeof next === 'function') return next(init)
    return next
  }
  const responses = options.recorder ? createResponseRecorder({ fetch: scripted as typeof fetch }) : undefined
  const client = createClient('http://127.0.0.1:1', 'anon-key', {
    global: { fetch: responses?.fetch ?? (scripted as typeof fetch) },
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: ws as any },
  })
  return { client, requests, responses }
}

const json = (body: unknown, status = 200, headers: Record<string, string> = {}): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } })

const mutation = (seq: number): Mutation => ({ seq, table: 'contacts', action: 'update', id: `id-${seq}`, data: { name: `n${seq}` }, baseVersion: 1 })
const applied = (seq: number) => ({ seq, status: 'applied', row: { id: `id-${seq}` }, version: 2, hlc: null })

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected a rejection')
}

describe('Supabase backend', () => {
  it('sends the documented RPC arguments and returns validated outcomes', async () => {
    const { client, requests } = scriptedClient([json([applied(1), { seq: 2, status: 'rejected', code: '23514', message: 'check' }])])
    const backend = createSupabaseBackend({ client })
    const outcomes = await backend.push('c0ffee00-0000-4000-8000-000000000000', [mutation(1), mutation(2)])
    expect(outcomes.map((o) => o.status)).toEqual(['applied', 'rejected'])
    expect(requests[0]!.url).toMatch(/\/rest\/v1\/rpc\/sync_push_runs$/)
    expect(requests[0]!.body).toEqual({
      client_id: 'c0ffee00-0000-4000-8000-000000000000',
      runs: [{ table: 'contacts', action: 'update', seq: [1, 2], id: ['id-1', 'id-2'], data: [{ name: 'n1' }, { name: 'n2' }], base: [1, 1], hlc: [null, null] }],
    })
  })

  it('round-trips the cursor as an opaque JSON string and caps the limit', async () => {
    const serverCursor = { xid: '1234', table: 'contacts', id: 'b' }
    const { client, requests } = scriptedClient([
      json({ changes: [{ table: 'contacts', id: 'a', row: { id: 'a' }, version: 1, deleted: false, hlc: null }], cursor: serverCursor, hasMore: true, reset: false }),
      json({ changes: [], cursor: serverCursor, hasMore: false, reset: false }),
    ])
    const backend = createSupabaseBackend({ client, pullLimit: 50 })
    const first = await backend.pull({ tables: ['contacts'], cursor: null, limit: 500 })
    expect(first.hasMore).toBe(true)
    expect(typeof first.cursor).toBe('string')
    await backend.pull({ tables: ['contacts'], cursor: first.cursor, limit: 10 })
    expect(requests[0]!.body).toEqual({ p_tables: ['contacts'], p_cursor: null, p_limit: 50 })
    expect(requests[1]!.body).toEqual({ p_tables: ['contacts'], p_cursor: serverCursor, p_limit: 10 })
  })

  it('sends a cursor the server gave as a string back as that same string', async () => {
    const serverCursor = '{"x":"812","t":"contacts","i":"b"}'
    const { client, requests } = scriptedClient([
      json({ changes: [], cursor: serverCursor, hasMore: false, reset: false }),
      json({ changes: [], cursor: serverCursor, hasMore: false, reset: false }),
    ])
    const backend = createSupabaseBackend({ client })
    const first = await backend.pull({ tables: ['contacts'], cursor: null, limit: 5 })
    await backend.pull({ tables: ['contacts'], cursor: first.cursor, limit: 5 })
    expect(requests[1]!.body).toEqual({ p_tables: ['contacts'], p_cursor: serverCursor, p_limit: 5 })
  })

  it('does no network work when there is nothing to do', async () => {
    const { client, requests } = scriptedClient([])
    const backend = createSupabaseBackend({ client })
    expect(await backend.push('c', [])).toEqual([])
    expect(await backend.checksum([])).toEqual([])
    expect((await backend.pull({ tables: [], cursor: null, limit: 10 })).changes).toEqual([])
    expect(requests).toHaveLength(0)
  })

  const failures: Array<[string, Answer, SyncError['kind']]> = [
    ['offline: the fetch rejects', new TypeError('fetch failed'), 'network'],
    ['503 database unreachable', json({ code: 'PGRST001', message: 'db down', details: null, hint: null }, 503), 'server'],
    ['401 expired JWT', json({ code: 'PGRST301', message: 'JWT expired', details: null, hint: null }, 401), 'auth'],
    ['409 unique violation', json({ code: '23505', message: 'duplicate key', details: null, hint: null }, 409), 'conflict'],
    ['404 unknown function', json({ code: 'PGRST202', message: 'not found', details: null, hint: null }, 404), 'permanent'],
    ['a proxy page instead of JSON (502)', new Response('<html>bad gateway</html>', { status: 502 }), 'server'],
  ]
  it.each(failures)('classifies %s', async (_name, answer, kind) => {
    const { client } = scriptedClient([answer])
    const error = await failure(createSupabaseBackend({ client }).push('c', [mutation(1)]))
    expect(error).toBeInstanceOf(SyncError)
    expect((error as SyncError).kind).toBe(kind)
  })

  it('carries Retry-After of a 429 through the response recorder, in both formats', async () => {
    const date = new Date(NOW).toUTCString()
    const { client, responses } = scriptedClient(
      [
        json({ message: 'slow down' }, 429, { 'retry-after': '3' }),
        json({ message: 'slow down' }, 429, { 'retry-after': new Date(NOW + 12_000).toUTCString(), date }),
      ],
      { recorder: true },
    )
    const backend = createSupabaseBackend({ client, responses })
    const first = (await failure(backend.push('c', [mutation(1)]))) as SyncError
    const second = (await failure(backend.pull({ tables: ['contacts'], cursor: null, limit: 10 }))) as SyncError
    expect([first.kind, first.retryAfterMs]).toEqual(['rate-limit', 3000])
    expect([second.kind, second.retryAfterMs]).toEqual(['rate-limit', 12_000])
  })

  it('gives concurrent calls each their own Retry-After', async () => {
    // Answers arrive in the opposite order of the requests.
    let releaseFirst: () => void = () => {}
    const firstHeld = new Promise<void>((resolve) => {
      releaseFirst = resolve
    })
    const { client, responses } = scriptedClient(
      [
        async () => {
          await firstHeld
          return json({ message: 'slow down' }, 429, { 'retry-after': '1' })
        },
        async () => {
          setTimeout(releaseFirst, 5)
          return json({ message: 'slow down' }, 429, { 'retry-after': '9' })
        },
      ],
      { recorder: true },
    )
    const backend = createSupabaseBackend({ client, responses })
    const [first, second] = (await Promise.all([
      failure(backend.push('c', [mutation(1)])),
      failure(backend.push('c', [mutation(2)])),
    ])) as SyncError[]
    expect([first!.retryAfterMs, second!.retryAfterMs]).toEqual([1000, 9000])
  })

  it('still classifies a 429 without a recorder, without a delay', async () => {
    const { client } = scriptedClient([json({ message: 'slow down' }, 429, { 'retry-after': '3' })])
    const error = (await failure(createSupabaseBackend({ client }).push('c', [mutation(1)]))) as SyncError
    expect([error.kind, error.retryAfterMs]).toEqual(['rate-limit', undefined])
  })

  it('rejects with AbortError, not a network error, when the caller aborts', async () => {
    const hang = (init: RequestInit | undefined): Promise<Response> =>
      new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))))
    const { client } = scriptedClient([hang])
    const controller = new AbortController()
    const pending = failure(createSupabaseBackend({ client }).push('c', [mutation(1)], { signal: controller.signal }))
    await new Promise((resolve) => setTimeout(resolve, 5))
    controller.abort()
    expect(await pending).toBeInstanceOf(AbortError)
    const already = AbortSignal.abort()
    expect(await failure(createSupabaseBackend({ client }).pull({ tables: ['t'], cursor: null, limit: 1 }, { signal: already }))).toBeInstanceOf(AbortError)
  })

  const malformed: Array<[string, 'push' | 'pull' | 'checksum', unknown]> = [
    ['push: not an array', 'push', { ok: true }],
    ['push: fewer outcomes than mutations', 'push', [applied(1)]],
    ['push: a seq answered twice', 'push', [applied(1), applied(2), applied(2)]],
    ['push: an outcome for a seq not in the batch', 'push', [applied(1), applied(2), applied(3)]],
    ['push: an applied group with a short column', 'push', [{ seqs: [1, 2], status: 'applied', partial: true, version: [1, 1], hlc: [null, null], row: { id: ['a'] } }]],
    ['push: an applied group that is not partial', 'push', [{ seqs: [1, 2], status: 'applied', version: [1, 1], hlc: [null, null], row: { id: ['a', 'b'] } }]],
    ['push: unknown status', 'push', [applied(1), { seq: 2, status: 'maybe' }]],
    ['push: applied without a version', 'push', [applied(1), { seq: 2, status: 'applied', row: null, hlc: null }]],
    ['push: null body', 'push', null],
    ['pull: missing hasMore', 'pull', { changes: [], cursor: null, reset: false }],
    ['pull: a change whose row is an array', 'pull', { changes: [{ table: 't', id: 'a', row: [1], version: 1, deleted: false, hlc: null }], cursor: null, hasMore: false, reset: false }],
    ['pull: more changes than asked for', 'pull', {
      changes: [1, 2, 3].map((n) => ({ table: 't', id: `r${n}`, row: {}, version: 1, deleted: false, hlc: null })),
      cursor: {}, hasMore: true, reset: false,
    }],
    ['pull: cursor is an array', 'pull', { changes: [], cursor: ['abc'], hasMore: false, reset: false }],
    ['pull: cursor is a number', 'pull', { changes: [], cursor: 7, hasMore: false, reset: false }],
    ['checksum: a JSON number (loses digits)', 'checksum', [{ table: 't', count: 1, checksum: 2 ** 64 - 1 }]],
    ['checksum: a table missing', 'checksum', []],
  ]
  it.each(malformed)('turns a malformed answer into SyncError(server): %s', async (_name, call, body) => {
    const { client } = scriptedClient([json(body)])
    const backend = createSupabaseBackend({ client })
    const promise =
      call === 'push' ? backend.push('c', [mutation(1), mutation(2)])
      : call === 'pull' ? backend.pull({ tables: ['t'], cursor: null, limit: 2 })
      : backend.checksum(['t'])
    const error = (await failure(promise)) as SyncError
    expect(error).toBeInstanceOf(SyncError)
    expect(error.kind).toBe('server')
    expect(error.message).toMatch(/malformed/)
  })

  it('turns a 200 that is not JSON into SyncError(server)', async () => {
    const { client } = scriptedClient([new Response('<html>captive portal</html>', { status: 200 })])
    const error = (await failure(createSupabaseBackend({ client }).checksum(['t']))) as SyncError
    expect([error.kind, error.status]).toEqual(['server', 200])
  })

  it('refuses a stored cursor that is not JSON as permanent, without a request', async () => {
    const { client, requests } = scriptedClient([])
    const error = (await failure(createSupabaseBackend({ client }).pull({ tables: ['t'], cursor: '{oops', limit: 5 }))) as SyncError
    expect(error.kind).toBe('permanent')
    expect(requests).toHaveLength(0)
  })
})

// --- The Postgres backend over a scripted pool. ---

interface ScriptedQuery {
  sql: string
  params: unknown[] | undefined
}

function scriptedPool(answer: (query: ScriptedQuery) => Promise<{ rows: unknown[] }>) {
  const queries: ScriptedQuery[] = []
  const releases: Array<unknown> = []
  const client = {
    query: (sql: string, params?: unknown[]) => {
      const query = { sql, params }
      queries.push(query)
      return answer(query)
    },
    release: (error?: unknown) => {
      releases.push(error)
    },
    on: () => client,
    removeListener: () => client,
  }
  const pool = { connect: async () => client }
  return { pool: pool as any, queries, releases }
}

describe('Postgres backend', () => {
  const user = { id: '11111111-1111-4111-8111-111111111111' }

  it('runs the function in a transaction as the acting user, as PostgREST does', async () => {
    const { pool, queries, releases } = scriptedPool(async ({ sql }) =>
      sql.includes('sync_push') ? { rows: [{ result: [applied(1)] }] } : { rows: [] },
    )
    const backend = createPostgresBackend({ pool, user: { ...user, claims: { email: 'a@b.c', sub: 'ignored' } } })
    expect(await backend.push('c0ffee00-0000-4000-8000-000000000000', [mutation(1)])).toHaveLength(1)
    expect(queries.map((q) => q.sql.split(' ')[0])).toEqual(['begin', 'select', 'select', 'commit'])
    const [role, claims] = queries[1]!.params as [string, string]
    expect(role).toBe('authenticated')
    expect(JSON.parse(claims)).toEqual({ email: 'a@b.c', sub: user.id, role: 'authenticated' })
    expect(queries[2]!.sql).toMatch(/"public"\."sync_push_runs"\(\$1::jsonb\)/)
    expect(JSON.parse(String(queries[2]!.params![0]))).toEqual({
      client_id: 'c0ffee00-0000-4000-8000-000000000000',
      runs: [{ table: 'contacts', action: 'update', seq: [1], id: ['id-1'], data: [{ name: 'n1' }], base: [1], hlc: [null] }],
    })
    expect(releases).toEqual([undefined])
  })

  it('rolls back, returns the connection and classifies a database error', async () => {
    const { pool, queries, releases } = scriptedPool(async ({ sql }) => {
      if (sql.includes('sync_pull')) throw Object.assign(new Error('could not serialize access'), { code: '40001' })
      return { rows: [] }
    })
    const error = (await failure(createPostgresBackend({ pool, user }).pull({ tables: ['t'], cursor: null, limit: 5 }))) as SyncError
    expect(error.kind).toBe('server')
    expect(error.code).toBe('40001')
    expect(queries.at(-1)!.sql).toBe('rollback')
    expect(releases).toEqual([undefined])
  })

  it('turns a malformed answer into SyncError(server) and commits nothing it did not mean to', async () => {
    const { pool } = scriptedPool(async ({ sql }) => (sql.includes('sync_checksum') ? { rows: [{ result: { wrong: true } }] } : { rows: [] }))
    const error = (await failure(createPostgresBackend({ pool, user }).checksum(['t']))) as SyncError
    expect(error.kind).toBe('server')
  })

  it('on abort rejects with AbortError at once and destroys the connection', async () => {
    const { pool, releases } = scriptedPool(({ sql }) => (sql.includes('sync_push') ? new Promise(() => {}) : Promise.resolve({ rows: [] })))
    const controller = new AbortController()
    const pending = failure(createPostgresBackend({ pool, user }).push('c', [mutation(1)], { signal: controller.signal }))
    await new Promise((resolve) => setTimeout(resolve, 5))
    controller.abort()
    expect(await pending).toBeInstanceOf(AbortError)
    expect(releases).toHaveLength(1)
    expect(releases[0]).toBeInstanceOf(Error)
  })

  it('refuses to act without a user id', async () => {
    const { pool, queries } = scriptedPool(async () => ({ rows: [] }))
    const error = (await failure(createPostgresBackend({ pool, user: () => ({ id: '' }) }).checksum(['t']))) as SyncError
    expect(error.kind).toBe('auth')
    expect(queries).toHaveLength(0)
  })
})
