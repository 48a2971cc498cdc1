/**
 * The Postgres backend: the sync protocol straight over a `pg` pool, for Node services, workers and
 * Electron apps that reach the database directly.
 *
 * Each call runs the same server functions PostgREST would run, in one transaction, as PostgREST
 * runs them: as the `authenticated` role (or the user's own role) with the user's JWT claims in
 * `request.jwt.claims`, so `auth.uid()` and row level security behave exactly as through Supabase:
 *
 * ```sql
 * begin;
 * select set_config('role', $role, true), set_config('request.jwt.claims', $claims, true);
 * select public.sync_push_runs($1);   -- {client_id, runs}
 * commit;
 * ```
 * (`set_config('role', …, true)` is `set local role`, taking the role as a parameter.)
 *
 * Abort: when the caller's signal aborts, the call rejects with {@link AbortError} at once and its
 * connection is destroyed rather than returned to the pool. A transaction that had not committed is
 * then rolled back by the server; one whose commit was already sent may have applied, which is the
 * lost-response case exactly-once push is built for (the retried batch changes nothing).
 */
import type { Pool, PoolClient } from 'pg'
import { AbortError, SyncError } from '../../core/errors.js'
import type { Backend, CallOptions, Mutation, MutationOutcome, PullRequest, PullResult, PushOptions, TableChecksum } from '../../core/protocol.js'
import {
  DEFAULT_PULL_LIMIT,
  DEFAULT_RPC_NAMES,
  decodeChecksumAnswer,
  decodeCursor,
  decodePullAnswer,
  decodePushAnswer,
  effectiveLimit,
  encodePushBody,
  positiveInteger,
  type RpcNames,
} from '../shared.js'
import { classifyPostgresError, type PostgresFailureContext } from './classify.js'

export { classifyPostgresError, type PostgresFailureContext } from './classify.js'
export type { RpcNames } from '../shared.js'

/** The user the backend acts as. */
export interface PostgresUser {
  /** The user's id: `auth.uid()` (the `sub` claim). */
  id: string
  /** Database role to act as (default `authenticated`). */
  role?: string
  /** Further JWT claims (e.g. `email`, `app_metadata`); `sub` and `role` are set from the fields above. */
  claims?: Record<string, unknown>
}

/** Options of {@link createPostgresBackend}. */
export interface PostgresBackendOptions {
  /** A `pg` pool connected as a login role that may `set role` to the acting role (e.g. `postgres`). */
  pool: Pool
  /** The acting user, or a function giving it per call (e.g. the current session's user). */
  user: PostgresUser | (() => PostgresUser | Promise<PostgresUser>)
  /** Cap on changes per pull answer, whatever the engine asks for (default 1000). */
  pullLimit?: number
  /** Names of the server functions (defaults: `sync_push_runs`, `sync_pull`, `sync_checksum`). */
  rpc?: Partial<RpcNames>
  /** Schema holding the server functions (default `public`). */
  schema?: string
}

/** {@link PostgresBackendOptions} with defaults applied. */
export interface ResolvedPostgresBackendOptions {
  pool: Pool
  user: () => PostgresUser | Promise<PostgresUser>
  pullLimit: number
  rpc: RpcNames
  schema: string
}

/** Applies the defaults of {@link PostgresBackendOptions}, in one place. */
export function resolvePostgresBackendOptions(options: PostgresBackendOptions): ResolvedPostgresBackendOptions {
  if (!options.pool || typeof options.pool.connect !== 'function') {
    throw new TypeError('createPostgresBackend: `pool` must be a pg Pool')
  }
  const { user } = options
  if (typeof user !== 'function' && (typeof user !== 'object' || user === null || typeof user.id !== 'string')) {
    throw new TypeError('createPostgresBackend: `user` must be { id, role?, claims? } or a function returning one')
  }
  return {
    pool: options.pool,
    user: typeof user === 'function' ? user : () => user,
    pullLimit: positiveInteger('pullLimit', options.pullLimit ?? DEFAULT_PULL_LIMIT),
    rpc: { ...DEFAULT_RPC_NAMES, ...options.rpc },
    schema: options.schema ?? 'public',
  }
}

const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`

/** Creates a {@link Backend} that runs the sync functions over a `pg` pool. */
export function createPostgresBackend(options: PostgresBackendOptions): Backend {
  const resolved = resolvePostgresBackendOptions(options)
  const { pool, pullLimit, rpc } = resolved
  const fn = (name: string): string => `${quoteIdent(resolved.schema)}.${quoteIdent(name)}`
  const pushSql = `select ${fn(rpc.push)}($1::jsonb) as result`
  const pullSql = `select ${fn(rpc.pull)}(p_tables => $1::text[], p_cursor => $2::jsonb, p_limit => $3::int) as result`
  const pullSkipSql = `select ${fn(rpc.pull)}(p_tables => $1::text[], p_cursor => $2::jsonb, p_limit => $3::int, p_skip_node => $4::text) as result`
  const checksumSql = `select ${fn(rpc.checksum)}(p_tables => $1::text[]) as result`
  const setUserSql = `select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`

  async function actingUser(): Promise<{ role: string; claims: string }> {
    let user: PostgresUser
    try {
      user = await resolved.user()
    } catch (error) {
      throw new SyncError('auth', 'could not resolve the acting user', { cause: error })
    }
    // Without a user the call would run with no `auth.uid()`: refuse it as unauthenticated.
    if (typeof user?.id !== 'string' || user.id === '') throw new SyncError('auth', 'no acting user: `user` gave no id')
    const role = user.role ?? 'authenticated'
    return { role, claims: JSON.stringify({ ...user.claims, sub: user.id, role }) }
  }

  /**
   * Runs one function call in its own transaction as the acting user; resolves to its result.
   * Invariant: the pooled connection is handed back exactly once — returned to the pool after a
   * commit or a clean rollback, destroyed after an abort or a failed rollback.
   */
  async function run(sql: string, params: unknown[], signal: AbortSignal | undefined): Promise<unknown> {
    if (signal?.aborted) throw new AbortError()
    const user = await actingUser()
    if (signal?.aborted) throw new AbortError()

    const context: PostgresFailureContext = { anonymous: user.role === 'anon' }
    let client: PoolClient | undefined
    let done = false
    const onConnectionLost = (): void => {
      context.connectionLost = true
    }
    const handBack = (destroy: boolean): void => {
      if (done || client === undefined) return
      done = true
      client.removeListener('error', onConnectionLost)
      client.removeListener('end', onConnectionLost)
      client.release(destroy ? new Error('connection discarded') : undefined)
    }

    let rejectAborted: (error: AbortError) => void = () => {}
    const aborted = new Promise<never>((_, reject) => {
      rejectAborted = reject
    })
    const onAbort = (): void => {
      handBack(true)
      rejectAborted(new AbortError())
    }
    signal?.addEventListener('abort', onAbort, { once: true })

    const work = async (): Promise<unknown> => {
      try {
        client = await pool.connect()
      } catch (error) {
        throw classifyPostgresError(error, { connecting: true })
      }
      // Aborted while waiting for a connection: nothing was sent, hand it straight back.
      if (signal?.aborted) {
        handBack(false)
        throw new AbortError()
      }
      // While checked out, a client has no pool listener: an unhandled 'error' would crash the process.
      client.on('error', onConnectionLost)
      client.on('end', onConnectionLost)
      let began = false
      try {
        await client.query('begin')
        began = true
        await client.query(setUserSql, [user.role, user.claims])
        const result = await client.query(sql, params)
        await client.query('commit')
        handBack(false)
        return (result.rows[0] as { result?: unknown } | undefined)?.result
      } catch (error) {
        if (done) throw new AbortError()
        const failure = classifyPostgresError(error, context)
        if (began && !context.connectionLost) {
          try {
            await client.query('rollback')
            handBack(false)
          } catch {
            handBack(true)
          }
        } else {
          handBack(true)
        }
        throw failure
      }
    }

    try {
      return await Promise.race([work(), aborted])
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  return {
    async push(clientId: string, mutations: readonly Mutation[], callOptions: PushOptions = {}): Promise<MutationOutcome[]> {
      if (mutations.length === 0) return []
      const data = await run(pushSql, [JSON.stringify(encodePushBody(clientId, mutations, callOptions.after))], callOptions.signal)
      return decodePushAnswer(data, mutations, callOptions.after)
    },

    async pull(request: PullRequest, callOptions: CallOptions = {}): Promise<PullResult> {
      const limit = effectiveLimit(request, pullLimit)
      const cursor = decodeCursor(request.cursor)
      if (request.tables.length === 0) return { changes: [], cursor: request.cursor, hasMore: false, reset: false }
      const params = [[...request.tables], cursor === null ? null : JSON.stringify(cursor), limit]
      const data = await run(request.skipNode === undefined ? pullSql : pullSkipSql, request.skipNode === undefined ? params : [...params, request.skipNode], callOptions.signal)
      return decodePullAnswer(data, limit)
    },

    async checksum(tables: readonly string[], callOptions: CallOptions = {}): Promise<TableChecksum[]> {
      if (tables.length === 0) return []
      const data = await run(checksumSql, [[...tables]], callOptions.signal)
      return decodeChecksumAnswer(data, tables)
    },
  }
}
