/**
 * What both backends share: the wire form of the sync RPCs (`sync_push`, `sync_pull`,
 * `sync_checksum`), and decoding of their answers.
 *
 * Every answer is validated before the engine sees it. A malformed answer becomes a
 * `SyncError('server')`: nothing is applied from it, and retrying is safe because push is
 * exactly-once per `(clientId, seq)` (a retried batch returns the stored outcomes and changes
 * nothing). It is not `permanent`, so a server-side fault never dead-letters a user's writes.
 */
import { z } from 'zod'
import { SyncError } from '../core/errors.js'
import type { Change, Cursor, Mutation, MutationOutcome, PullRequest, PullResult, TableChecksum } from '../core/protocol.js'

/** Names of the server functions the backends call. */
export interface RpcNames {
  push: string
  pull: string
  checksum: string
}

/** Default names, as created by the server migration in `sql/`. */
export const DEFAULT_RPC_NAMES: Readonly<RpcNames> = Object.freeze({
  push: 'sync_push',
  pull: 'sync_pull',
  checksum: 'sync_checksum',
})

/** Default cap on changes per pull answer: hosted Supabase's `db-max-rows`. */
export const DEFAULT_PULL_LIMIT = 1000

// A row is any JSON object. Checking only "plain object, not array" (not every key) keeps decoding a
// 100k-row pull cheap; the values are stored as the server sent them.
const rowSchema = z.custom<Record<string, unknown>>(
  (value) => typeof value === 'object' && value !== null && !Array.isArray(value),
  { message: 'expected a JSON object' },
)

const seqSchema = z.number().int().nonnegative()
const versionSchema = z.number().int()
const hlcSchema = z.string().nullable()

const outcomeSchema = z.discriminatedUnion('status', [
  z.object({ seq: seqSchema, status: z.literal('applied'), row: rowSchema.nullable(), version: versionSchema, hlc: hlcSchema.default(null) }),
  z.object({
    seq: seqSchema,
    status: z.literal('conflict'),
    row: rowSchema.nullable(),
    version: versionSchema.nullable(),
    deleted: z.boolean(),
    hlc: hlcSchema.default(null),
  }),
  z.object({ seq: seqSchema, status: z.literal('rejected'), code: z.string().min(1), message: z.string() }),
])

const pushAnswerSchema = z.array(outcomeSchema)

const changeSchema = z.object({
  table: z.string().min(1),
  id: z.string().min(1),
  row: rowSchema,
  version: versionSchema,
  deleted: z.boolean(),
  hlc: hlcSchema.default(null),
})

const pullAnswerSchema = z.object({
  changes: z.array(changeSchema),
  // The server's cursor (a JSON object, or a string) is kept as the JSON text of that value and
  // sent back as the very same value, whatever its form.
  cursor: z.union([z.string(), rowSchema]).nullable(),
  hasMore: z.boolean(),
  reset: z.boolean(),
})

const checksumAnswerSchema = z.array(
  z.object({
    table: z.string().min(1),
    count: z.number().int().nonnegative(),
    // A sum modulo 2^64 does not fit a JSON number without losing digits: only a decimal string
    // carries it exactly.
    checksum: z.string().regex(/^\d+$/, 'expected a decimal string'),
  }),
)

function malformed(what: string, detail: string, cause?: unknown): SyncError {
  return new SyncError('server', `malformed ${what} answer from the server: ${detail}`, { code: 'MALFORMED_RESPONSE', cause })
}

function decode<T>(schema: z.ZodType<T>, data: unknown, what: string): T {
  const parsed = schema.safeParse(data)
  if (!parsed.success) throw malformed(what, z.prettifyError(parsed.error).replace(/\n+/g, '; '), parsed.error)
  return parsed.data
}

/** The JSON the push function takes: one object per mutation, keys as in {@link Mutation}. */
export function encodeMutations(mutations: readonly Mutation[]): Mutation[] {
  // Copy only the protocol's fields so nothing else a caller hangs on a mutation leaves the device.
  return mutations.map(({ seq, table, action, id, data, baseVersion, hlc }) => ({ seq, table, action, id, data, baseVersion, hlc }))
}

/**
 * Decodes a push answer: exactly one well-formed outcome per mutation, in the mutations' order.
 * @throws SyncError `server` when the answer is malformed or does not match the batch.
 */
export function decodePushAnswer(data: unknown, mutations: readonly Mutation[]): MutationOutcome[] {
  const outcomes = decode(pushAnswerSchema, data, 'push') as MutationOutcome[]
  if (outcomes.length !== mutations.length) {
    throw malformed('push', `expected ${mutations.length} outcomes, got ${outcomes.length}`)
  }
  for (let i = 0; i < outcomes.length; i++) {
    if (outcomes[i]!.seq !== mutations[i]!.seq) {
      throw malformed('push', `outcome ${i} has seq ${outcomes[i]!.seq}, expected ${mutations[i]!.seq}`)
    }
  }
  return outcomes
}

/**
 * Parses the opaque cursor back into the JSON value the pull function gave.
 * @throws SyncError `permanent` when a stored cursor is not what a pull returned (it never will be).
 */
export function decodeCursor(cursor: Cursor): string | Record<string, unknown> | null {
  if (cursor === null) return null
  let value: unknown
  try {
    value = JSON.parse(cursor)
  } catch (error) {
    throw new SyncError('permanent', 'pull cursor is not valid JSON; pull from the beginning (cursor null)', { code: 'INVALID_CURSOR', cause: error })
  }
  if (typeof value !== 'string' && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    throw new SyncError('permanent', 'pull cursor is neither a JSON object nor a string; pull from the beginning (cursor null)', { code: 'INVALID_CURSOR' })
  }
  return value as string | Record<string, unknown>
}

/**
 * Decodes a pull answer, turning the server's cursor into the opaque string of the port.
 * @throws SyncError `server` when the answer is malformed, or returns more changes than asked for.
 */
export function decodePullAnswer(data: unknown, limit: number): PullResult {
  const answer = decode(pullAnswerSchema, data, 'pull')
  if (answer.changes.length > limit) {
    throw malformed('pull', `asked for at most ${limit} changes, got ${answer.changes.length}`)
  }
  return {
    changes: answer.changes as Change[],
    cursor: answer.cursor === null ? null : JSON.stringify(answer.cursor),
    hasMore: answer.hasMore,
    reset: answer.reset,
  }
}

/**
 * Decodes a checksum answer; every table asked for must be answered.
 * @throws SyncError `server` when the answer is malformed or incomplete.
 */
export function decodeChecksumAnswer(data: unknown, tables: readonly string[]): TableChecksum[] {
  const answer = decode(checksumAnswerSchema, data, 'checksum')
  const answered = new Set(answer.map((entry) => entry.table))
  const missing = tables.filter((table) => !answered.has(table))
  if (missing.length > 0) throw malformed('checksum', `no entry for table(s) ${missing.join(', ')}`)
  return answer
}

/** The page size to ask the server for: the caller's limit, capped by the backend's. */
export function effectiveLimit(request: PullRequest, cap: number): number {
  if (!Number.isInteger(request.limit) || request.limit < 1) {
    throw new SyncError('permanent', `pull limit must be a positive integer, got ${request.limit}`, { code: 'INVALID_REQUEST' })
  }
  return Math.min(request.limit, cap)
}

/** Validates a positive integer option at construction time. */
export function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`)
  return value
}
