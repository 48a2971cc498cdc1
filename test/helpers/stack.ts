/**
 * Shared helpers for tests against a local stack: a per-file stack, typed RPC calls, fault
 * injection for supabase-js, and small data builders.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll } from 'vitest'
import type { SupabaseClient } from '@supabase/supabase-js'
import { startLocalStack } from '../../src/testing/index.js'
import type { LocalStack, LocalStackOptions } from '../../src/testing/index.js'
import type { Change, Cursor, Mutation, MutationOutcome, PullResult, TableChecksum } from '../../src/core/protocol.js'
import { decodePushAnswer, encodePushBody } from '../../src/backends/shared.js'

/** Whether the tests run on a real PostgreSQL server (`DATABASE_URL` set) rather than PGlite. */
export const onRealPostgres = Boolean(process.env.DATABASE_URL)

/** Why multi-session tests are skipped on PGlite. */
export const PGLITE_ONE_SESSION =
  'PGlite is a single session: transactions cannot overlap, so out-of-order commits need real PostgreSQL (set DATABASE_URL)'

/**
 * Starts one stack for the calling test file (in `beforeAll`) and stops it afterwards. Returns a
 * getter, since the stack exists only once `beforeAll` ran.
 */
export function useStack(options: LocalStackOptions = {}): () => LocalStack {
  let stack: LocalStack | undefined
  beforeAll(async () => {
    stack = await startLocalStack(options)
  })
  afterAll(async () => {
    await stack?.stop()
  })
  return () => {
    if (!stack) throw new Error('stack not started (use it inside a test or hook)')
    return stack
  }
}

/** A fresh user id (RLS owner). */
export const newUser = (): string => randomUUID()

/** A per-client sequence counter, as a device keeps one. */
export function sequence(start = 1): () => number {
  let next = start
  return () => next++
}

/** Calls `sync_push`; throws on a transport or SQL error. */
export async function push(client: SupabaseClient, clientId: string, mutations: Mutation[]): Promise<MutationOutcome[]> {
  const { data, error } = await client.rpc('sync_push', { p_client_id: clientId, p_mutations: mutations })
  if (error) throw Object.assign(new Error(`sync_push: ${error.message}`), { code: error.code })
  return data as MutationOutcome[]
}

/**
 * Calls `sync_push_runs` with the body the backends send (the batch as runs) and decodes the answer
 * as they do (partial rows completed); throws on a transport or SQL error.
 */
export async function pushRuns(client: SupabaseClient, clientId: string, mutations: Mutation[]): Promise<MutationOutcome[]> {
  const { data, error } = await client.rpc('sync_push_runs', { ...encodePushBody(clientId, mutations) })
  if (error) throw Object.assign(new Error(`sync_push_runs: ${error.message}`), { code: error.code })
  return decodePushAnswer(data, mutations)
}

/** Calls `sync_pull`; throws on a transport or SQL error. */
export async function pull(
  client: SupabaseClient,
  tables: string[],
  cursor: Cursor,
  limit = 100,
): Promise<PullResult> {
  const { data, error } = await client.rpc('sync_pull', { p_tables: tables, p_cursor: cursor, p_limit: limit })
  if (error) throw Object.assign(new Error(`sync_pull: ${error.message}`), { code: error.code })
  return data as PullResult
}

/**
 * Waits until every transaction that started before now has ended. The pull watermark (the
 * snapshot's xmin) is server-wide, so a transaction held open by another test file on the same
 * server delays, but never loses, rows this test just committed.
 */
export async function settle(stack: LocalStack, timeoutMs = 15_000): Promise<void> {
  const [{ xid }] = (await stack.query<{ xid: string }>('select pg_current_xact_id()::text as xid')) as [{ xid: string }]
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const [{ done }] = (await stack.query<{ done: boolean }>(
      'select pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8 as done',
      [xid],
    )) as [{ done: boolean }]
    if (done) return
    if (Date.now() > deadline) throw new Error(`transactions older than ${xid} still open after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * Pulls pages until `hasMore` is false; returns every change and the final cursor. With `stack`,
 * first waits for older transactions to end (see {@link settle}).
 */
export async function pullAll(
  client: SupabaseClient,
  tables: string[],
  cursor: Cursor,
  limit = 100,
  stack?: LocalStack,
): Promise<{ changes: Change[]; cursor: Cursor; pages: number; pending: boolean }> {
  if (stack) await settle(stack)
  const changes: Change[] = []
  let pages = 0
  for (;;) {
    const page = await pull(client, tables, cursor, limit)
    pages++
    if (page.reset) throw new Error('unexpected reset')
    changes.push(...page.changes)
    cursor = page.cursor
    if (!page.hasMore) return { changes, cursor, pages, pending: page.pending === true }
  }
}

/** Calls `sync_checksum`; throws on error. */
export async function checksum(client: SupabaseClient, tables: string[]): Promise<TableChecksum[]> {
  const { data, error } = await client.rpc('sync_checksum', { p_tables: tables })
  if (error) throw Object.assign(new Error(`sync_checksum: ${error.message}`), { code: error.code })
  return data as TableChecksum[]
}

/**
 * A `fetch` whose next `count` requests reach the server but whose responses are lost: the
 * request commits, then the caller sees a network error — the case exactly-once push exists for.
 */
export function responseLosingFetch(): { fetch: typeof fetch; loseNext: (count?: number) => void; lost: () => number } {
  let toLose = 0
  let lost = 0
  const lossy: typeof fetch = async (input, init) => {
    const response = await fetch(input, init)
    if (toLose > 0) {
      toLose--
      lost++
      await response.arrayBuffer()
      throw new TypeError('fetch failed: connection reset after the request was sent')
    }
    return response
  }
  return { fetch: lossy, loseNext: (count = 1) => (toLose += count), lost: () => lost }
}

/** A contact `create` mutation with a fresh id. */
export function createContact(seq: number, data: Record<string, unknown> = {}, id: string = randomUUID()): Mutation {
  return { seq, table: 'contacts', action: 'create', id, data: { name: `contact ${seq}`, ...data }, baseVersion: null }
}

/** Narrows an outcome to a status, failing with the whole outcome in the message otherwise. */
export function expectStatus<S extends MutationOutcome['status']>(
  outcome: MutationOutcome | undefined,
  status: S,
): Extract<MutationOutcome, { status: S }> {
  if (!outcome || outcome.status !== status) {
    throw new Error(`expected ${status}, got ${JSON.stringify(outcome)}`)
  }
  return outcome as Extract<MutationOutcome, { status: S }>
}
