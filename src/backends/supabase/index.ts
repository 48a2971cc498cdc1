/**
 * The Supabase backend: the sync protocol over supabase-js RPC calls to the functions the server
 * migration installs (`sync_push_runs`, `sync_pull`, `sync_checksum`), run by PostgREST as the caller so
 * row level security applies.
 *
 * supabase-js answers `{ data, error, status }` instead of throwing; every failure is turned into a
 * `SyncError` by {@link classifySupabaseError} (status and code only), every answer is
 * validated before it is returned (see `../shared.ts`), and a call cancelled through its signal
 * rejects with {@link AbortError}.
 */
import type { SupabaseClient } from '@supabase/supabase-js'
import { AbortError, isAbortError } from '../../core/errors.js'
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
import { classifySupabaseError } from './classify.js'
import type { ResponseRecorder } from './fetch.js'

export { classifySupabaseError, parseRetryAfter, type SupabaseFailure } from './classify.js'
export { createResponseRecorder, type RecordedResponse, type ResponseRecorder, type ResponseRecorderOptions } from './fetch.js'
export type { RpcNames } from '../shared.js'

/** Options of {@link createSupabaseBackend}. */
export interface SupabaseBackendOptions {
  /** A supabase-js client, signed in as the user whose data syncs. */
  client: SupabaseClient<any, any, any>
  /** Cap on changes per pull answer, whatever the engine asks for (default 1000). */
  pullLimit?: number
  /** Names of the server functions (defaults: `sync_push_runs`, `sync_pull`, `sync_checksum`). */
  rpc?: Partial<RpcNames>
  /**
   * The recorder whose `fetch` was given to `createClient`; lets a 429 carry the server's
   * `Retry-After` as `retryAfterMs` (see `fetch.ts` for why this is needed).
   */
  responses?: ResponseRecorder
  /** Clock for an HTTP-date `Retry-After` without a `Date` header (default `Date.now`). */
  now?: () => number
}

/** {@link SupabaseBackendOptions} with defaults applied. */
export interface ResolvedSupabaseBackendOptions {
  client: SupabaseClient<any, any, any>
  pullLimit: number
  rpc: RpcNames
  responses: ResponseRecorder | undefined
  now: () => number
}

/** Applies the defaults of {@link SupabaseBackendOptions}, in one place. */
export function resolveSupabaseBackendOptions(options: SupabaseBackendOptions): ResolvedSupabaseBackendOptions {
  if (!options.client || typeof (options.client as { rpc?: unknown }).rpc !== 'function') {
    throw new TypeError('createSupabaseBackend: `client` must be a supabase-js client')
  }
  return {
    client: options.client,
    pullLimit: positiveInteger('pullLimit', options.pullLimit ?? DEFAULT_PULL_LIMIT),
    rpc: { ...DEFAULT_RPC_NAMES, ...options.rpc },
    responses: options.responses,
    now: options.now ?? Date.now,
  }
}

// The slice of supabase-js this backend uses, typed loosely: a generated `Database` type does not
// know the sync functions, and their answers are validated at run time anyway.
interface RpcAnswer {
  data: unknown
  error: { code?: string | null; message?: string | null } | null
  status: number
}
interface RpcCaller {
  rpc(fn: string, args: Record<string, unknown>): { abortSignal(signal: AbortSignal): PromiseLike<RpcAnswer> }
}

/** Creates a {@link Backend} that talks to Supabase through supabase-js. */
export function createSupabaseBackend(options: SupabaseBackendOptions): Backend {
  const { client, pullLimit, rpc, responses, now } = resolveSupabaseBackendOptions(options)
  const caller = client as unknown as RpcCaller

  /**
   * One RPC. Each call gets a signal of its own: it cancels the request when the caller's signal
   * aborts, and it is the key under which the recorder files this request's response headers.
   */
  async function call(fn: string, args: Record<string, unknown>, signal: AbortSignal | undefined): Promise<unknown> {
    if (signal?.aborted) throw new AbortError()
    const controller = new AbortController()
    const onAbort = (): void => controller.abort()
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      let answer: RpcAnswer
      try {
        answer = await caller.rpc(fn, args).abortSignal(controller.signal)
      } catch (error) {
        if (controller.signal.aborted || isAbortError(error)) throw new AbortError()
        // supabase-js reports fetch failures as status 0; a throw can only come from a custom fetch.
        throw classifySupabaseError({ status: 0, message: error instanceof Error ? error.message : String(error), cause: error })
      }
      // supabase-js turns an aborted fetch into status 0; it must not look like being offline.
      if (controller.signal.aborted) throw new AbortError()
      const recorded = responses?.take(controller.signal)
      if (answer.error === null && answer.status >= 200 && answer.status < 300) return answer.data
      throw classifySupabaseError({
        status: answer.status,
        code: answer.error?.code,
        message: answer.error?.message ?? `${fn} failed`,
        retryAfter: recorded?.retryAfter,
        date: recorded?.date,
        now: now(),
        cause: answer.error,
      })
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  return {
    async push(clientId: string, mutations: readonly Mutation[], callOptions: PushOptions = {}): Promise<MutationOutcome[]> {
      if (mutations.length === 0) return []
      const data = await call(rpc.push, { ...encodePushBody(clientId, mutations, callOptions.after) }, callOptions.signal)
      return decodePushAnswer(data, mutations, callOptions.after)
    },

    async pull(request: PullRequest, callOptions: CallOptions = {}): Promise<PullResult> {
      const limit = effectiveLimit(request, pullLimit)
      const cursor = decodeCursor(request.cursor)
      if (request.tables.length === 0) return { changes: [], cursor: request.cursor, hasMore: false, reset: false }
      const args = { p_tables: [...request.tables], p_cursor: cursor, p_limit: limit }
      const data = await call(rpc.pull, request.skipNode === undefined ? args : { ...args, p_skip_node: request.skipNode }, callOptions.signal)
      return decodePullAnswer(data, limit)
    },

    async checksum(tables: readonly string[], callOptions: CallOptions = {}): Promise<TableChecksum[]> {
      if (tables.length === 0) return []
      const data = await call(rpc.checksum, { p_tables: [...tables] }, callOptions.signal)
      return decodeChecksumAnswer(data, tables)
    },
  }
}
