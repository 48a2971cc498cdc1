/**
 * What both backends share: the wire form of the sync RPCs (`sync_push_runs`, `sync_pull`,
 * `sync_checksum`), and decoding of their answers.
 *
 * Every answer is validated before the engine sees it. A malformed answer becomes a
 * `SyncError('server')`: nothing is applied from it, and retrying is safe because push is
 * exactly-once per `(clientId, seq)` (a retried batch returns the stored outcomes and changes
 * nothing). It is not `permanent`, so a server-side fault never dead-letters a user's writes.
 */
import { z } from 'zod'
import { mapPacked } from '../core/arrays.js'
import { SyncError } from '../core/errors.js'
import { isValidHlcNodeId } from '../core/hlc.js'
import { omit } from '../core/merge.js'
import type { Change, Cursor, Mutation, MutationOutcome, PullRequest, PullResult, Row, TableChecksum } from '../core/protocol.js'

/** Names of the server functions the backends call. */
export interface RpcNames {
  push: string
  pull: string
  checksum: string
}

/**
 * Default names, as created by the server migration in `sql/`. The push function takes one JSON
 * argument, the body {@link encodePushBody} builds.
 */
export const DEFAULT_RPC_NAMES: Readonly<RpcNames> = Object.freeze({
  push: 'sync_push_runs',
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
  z.object({
    seq: seqSchema,
    status: z.literal('applied'),
    row: rowSchema.nullable(),
    // The row holds only the columns the mutation did not send (and its key); the rest are as sent.
    partial: z.literal(true).optional(),
    version: versionSchema,
    // Absent from a partial outcome: the stamp is the one the mutation sent.
    hlc: hlcSchema.optional(),
  }),
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

// Applied writes of one set-based run, column by column: member k is seqs[k], with version[k] (or
// the one version of all), hlc[k] (or, with no hlc array, the stamp it sent), and a row of each `row`
// column's k-th value and each `same` column's value. Every member is partial.
// A group's arrays hold one value per member, often a thousand: checked in one loop each, which
// costs a fraction of checking each element through a schema.
const arrayOf = <T>(ok: (value: unknown) => boolean, what: string) =>
  z.custom<T[]>((value) => Array.isArray(value) && value.every(ok), { message: `expected an array of ${what}` })
const isSeq = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) >= 0
const columnsSchema = z.custom<Record<string, unknown[]>>(
  (value) => typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every(Array.isArray),
  { message: 'expected an object of arrays' },
)
const appliedGroupSchema = z
  .object({
    seqs: arrayOf<number>(isSeq, 'seqs'),
    status: z.literal('applied'),
    partial: z.literal(true),
    version: z.union([arrayOf<number>(Number.isSafeInteger, 'versions'), versionSchema]),
    hlc: arrayOf<string | null>((value) => value === null || typeof value === 'string', 'stamps').nullable().optional(),
    row: columnsSchema,
    same: rowSchema.nullable().optional(),
  })
  .refine(
    (group) =>
      (typeof group.version === 'number' || group.version.length === group.seqs.length) &&
      (group.hlc == null || group.hlc.length === group.seqs.length) &&
      Object.values(group.row).every((column) => column.length === group.seqs.length),
    { message: 'every column of an applied group must be as long as its seqs' },
  )

const pushAnswerSchema = z.union([z.array(z.unknown()), z.object({ deferred: z.literal(true) })])

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
  pending: z.boolean().optional(),
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

/** One run of the push body: consecutive mutations of one table and action, field by field. */
export interface PushRun {
  table: string
  action: Mutation['action']
  seq: number[]
  id: string[]
  /**
   * Each mutation's data (`null` for none) without its key field (`Mutation.key`: the server takes
   * the key from `id`); omitted for a run of deletes.
   */
  data?: Array<Row | null>
  /** Each mutation's base version; `null` when none has one (a run of creates). */
  base: Array<number | null> | null
  hlc: Array<string | null>
  /**
   * The primary-key field every mutation's data held and the body leaves out, being the
   * mutation's `id` (see {@link encodePushBody}); absent when the data go as they are.
   */
  key?: string
}

/** The JSON argument of the push function: the batch as runs (see `sql/sync_orchestrator.sql`). */
export interface PushBody {
  client_id: string
  /** A seq of the batch sent before this one and not yet answered (see `PushOptions.after`). */
  after?: number
  /**
   * The clock node of every stamp in the batch, when they share one: the server records a
   * transaction that wrote only these mutations' rows, and the device's pulls (`skipNode`) jump
   * over it instead of reading its rows.
   */
  node?: string
  runs: PushRun[]
}

/**
 * The body of a push: the mutations in order, cut into runs of consecutive mutations with the same
 * table, action and (but for deletes) set of data keys, which the server applies set-based. Only
 * the protocol's fields leave the device, each once: a mutation whose data holds its key
 * (`Mutation.key`) as its `id` sends the key as the id alone, in a run that names the key field
 * (the server then leaves it out of the answer's rows too, and the answer's rows are completed from
 * the mutation's own data).
 */
export function encodePushBody(clientId: string, mutations: readonly Mutation[], after?: number): PushBody {
  const runs: PushRun[] = []
  let run: PushRun | undefined
  // The current run's base versions, and whether any is not null.
  let bases: Array<number | null> = []
  let anyBase = false
  // The data of the current run's first mutation: the run's data keys.
  let runData: Row | undefined
  // The stamps' node (after the second ':'), while every stamp has the same one.
  let node: string | undefined
  let oneNode = mutations.length > 0
  for (const { seq, table, action, id, data: given, key, baseVersion, hlc } of mutations) {
    if (oneNode) {
      if (hlc === undefined || hlc.length < 23 || hlc.charCodeAt(15) !== 58 || hlc.charCodeAt(21) !== 58) oneNode = false
      else if (node === undefined) node = hlc.slice(22)
      else if (!hlc.endsWith(node) || hlc.length !== 22 + node.length) oneNode = false
    }
    // (Only a key equal to the id is left out: the server's answer compares the stored key with it.)
    const keyed = given !== undefined && key !== undefined && action !== 'delete' && isId(given[key], id) && Object.hasOwn(given, key)
    const data = keyed ? omit(given, key) : given
    if (run === undefined || run.table !== table || run.action !== action || (action !== 'delete' && (!sameKeys(runData, data) || run.key !== (keyed ? key : undefined)))) {
      if (run !== undefined && anyBase) run.base = bases
      run = { table, action, seq: [], id: [], base: null, hlc: [] }
      if (action !== 'delete') run.data = []
      if (keyed) run.key = key
      runs.push(run)
      runData = data
      bases = []
      anyBase = false
    }
    run.seq.push(seq)
    run.id.push(id)
    run.data?.push(data ?? null)
    bases.push(baseVersion)
    if (baseVersion !== null) anyBase = true
    run.hlc.push(hlc ?? null)
  }
  if (run !== undefined && anyBase) run.base = bases
  const body: PushBody = { client_id: clientId, runs }
  if (after !== undefined) body.after = after
  if (oneNode && node !== undefined && isValidHlcNodeId(node)) body.node = node
  return body
}

/** Whether a key field's value is the mutation's id: that string, or a number written as it. */
function isId(value: unknown, id: string): boolean {
  return typeof value === 'string' ? value === id : typeof value === 'number' && String(value) === id
}

/** Whether two mutations' data have the same keys (no data at all being its own kind). */
function sameKeys(a: Row | undefined, b: Row | undefined): boolean {
  if (!a || !b) return !a && !b
  let count = 0
  for (const key in b) {
    if (!Object.hasOwn(b, key)) continue
    if (!Object.hasOwn(a, key)) return false
    count++
  }
  for (const key in a) if (Object.hasOwn(a, key)) count--
  return count === 0
}

const SYNC_COLUMNS = new Set(['_version', '_xid', '_deleted', '_hlc'])

/**
 * The data a mutation sent, without sync columns (the server ignores them; rows never carry them):
 * the start of a partial row's completion. Rows are built key by key: spreading two objects per
 * row cost 1.6 ms per 1000 rows.
 */
function sentColumns(data: Row | undefined): Row {
  const row: Row = {}
  for (const key in data) if (!SYNC_COLUMNS.has(key)) row[key] = data[key]
  return row
}

type DecodedOutcome = z.infer<typeof outcomeSchema>
type AppliedGroup = z.infer<typeof appliedGroupSchema>

/** What answers a seq: a single outcome, or member `k` of an applied group (`columns` being its row's). */
type Answer = DecodedOutcome | { group: AppliedGroup; columns: Array<[string, unknown[]]>; same: Array<[string, () => unknown]>; k: number }

/**
 * The value of a column given once for many rows, for one more row: a JSON object or array is
 * parsed anew for each, so no two rows share one (an app changing one would change the others).
 */
function sameValue(value: unknown): () => unknown {
  if (typeof value !== 'object' || value === null) return () => value
  const text = JSON.stringify(value)
  return () => JSON.parse(text) as unknown
}

/** The outcome of member `k` of an applied group: its partial row completed with what `mutation` sent. */
function memberOutcome({ group, columns, same, k }: Extract<Answer, { group: AppliedGroup }>, mutation: Mutation): MutationOutcome {
  const row = sentColumns(mutation.data)
  for (let c = 0; c < columns.length; c++) row[columns[c]![0]] = columns[c]![1][k]
  for (let c = 0; c < same.length; c++) row[same[c]![0]] = same[c]![1]()
  const version = typeof group.version === 'number' ? group.version : group.version[k]!
  return { seq: mutation.seq, status: 'applied', row, version, hlc: group.hlc == null ? (mutation.hlc ?? null) : group.hlc[k]! }
}

/**
 * The outcomes of a batch answered by one applied group whose seqs are the mutations' own, in
 * their order and increasing; undefined for any other group (the general path decides).
 */
function inOrderGroup(element: object, mutations: readonly Mutation[]): MutationOutcome[] | undefined {
  const group = decode(appliedGroupSchema, element, 'push (element 0)')
  if (group.seqs.length !== mutations.length) return undefined
  for (let k = 0; k < mutations.length; k++) {
    if (group.seqs[k] !== mutations[k]!.seq || (k > 0 && mutations[k]!.seq <= mutations[k - 1]!.seq)) return undefined
  }
  const columns = Object.entries(group.row)
  const same = mapPacked(Object.entries(group.same ?? {}), ([column, value]): [string, () => unknown] => [column, sameValue(value)])
  return mapPacked(mutations, (mutation, k) => memberOutcome({ group, columns, same, k }, mutation))
}

/**
 * Decodes a push answer: an outcome per distinct seq of the batch, given one by one or as applied
 * groups (in any order), into exactly one outcome per mutation, in the mutations' order. A
 * mutation whose seq repeats an earlier one's gets that outcome. A partial row is completed with
 * the data the mutation sent.
 * @throws SyncError `server` when the answer is malformed or does not match the batch.
 */
export function decodePushAnswer(data: unknown, mutations: readonly Mutation[], after?: number): MutationOutcome[] {
  const elements = decode(pushAnswerSchema, data, 'push')
  if (!Array.isArray(elements)) {
    // Only a batch that named a predecessor can be deferred.
    if (after === undefined) throw malformed('push', 'deferred a batch that named no predecessor')
    return mutations.map((mutation) => ({ seq: mutation.seq, status: 'deferred' }))
  }
  // The usual answer to a fresh batch: one group of every mutation, in the batch's order.
  if (elements.length === 1 && typeof elements[0] === 'object' && elements[0] !== null && 'seqs' in elements[0]) {
    const whole = inOrderGroup(elements[0], mutations)
    if (whole) return whole
  }
  const bySeq = new Map<number, Answer>()
  const answer = (seq: number, value: Answer): void => {
    if (bySeq.has(seq)) throw malformed('push', `seq ${seq} is answered twice`)
    bySeq.set(seq, value)
  }
  for (let i = 0; i < elements.length; i++) {
    const element = elements[i]
    if (typeof element === 'object' && element !== null && 'seqs' in element) {
      const group = decode(appliedGroupSchema, element, `push (element ${i})`)
      const columns = Object.entries(group.row)
      const same = mapPacked(Object.entries(group.same ?? {}), ([column, value]): [string, () => unknown] => [column, sameValue(value)])
      for (let k = 0; k < group.seqs.length; k++) answer(group.seqs[k]!, { group, columns, same, k })
    } else {
      const outcome = decode(outcomeSchema, element, `push (element ${i})`)
      answer(outcome.seq, outcome)
    }
  }
  const outcomes: MutationOutcome[] = []
  // A repeated seq shares its first occurrence's outcome, completed from that mutation's data.
  const done = new Map<number, MutationOutcome>()
  for (const mutation of mutations) {
    const known = done.get(mutation.seq)
    if (known !== undefined) {
      outcomes.push(known)
      continue
    }
    const found = bySeq.get(mutation.seq)
    if (found === undefined) throw malformed('push', `no outcome for seq ${mutation.seq}`)
    let outcome: MutationOutcome
    if ('group' in found) {
      outcome = memberOutcome(found, mutation)
    } else if (found.status === 'applied' && found.partial !== undefined) {
      if (found.row === null) throw malformed('push', `outcome of seq ${mutation.seq} is partial without a row`)
      const { partial: _partial, hlc, ...rest } = found
      outcome = { ...rest, row: Object.assign(sentColumns(mutation.data), found.row), hlc: hlc === undefined ? (mutation.hlc ?? null) : hlc }
    } else if (found.status === 'applied' && found.hlc === undefined) {
      outcome = { ...found, hlc: null }
    } else {
      outcome = found as MutationOutcome
    }
    done.set(mutation.seq, outcome)
    outcomes.push(outcome)
  }
  if (done.size !== bySeq.size) throw malformed('push', 'an outcome answers a seq that is not in the batch')
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
    pending: answer.pending === true,
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
