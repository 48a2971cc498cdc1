/**
 * Conflict resolution: one pure, deterministic call that decides what becomes of a record when a
 * local change meets a different remote version (a push answered `conflict`, or a pulled change
 * over a pending local change). The documented outcome of every strategy for every case is in
 * `docs/conflicts.md`.
 *
 * Invariants:
 * - {@link resolveConflict} never throws and never mutates its input; the same input gives the same
 *   answer on every device.
 * - Sides that already agree (both gone, or equal rows once local-only fields are set aside) are not
 *   a conflict: every strategy, `ask-user` and custom functions included, answers `keep-remote`.
 * - "Newer" is decided by the HLC stamps of the two changes, ties (equal or missing stamps) by the
 *   content of the sides, never by which side is local, so `newest-wins` and `merge` with `newest` /
 *   `union` rules give the same state on both devices of a conflict.
 * - A row to write never contains local-only fields.
 */
import { compareHlc } from './hlc.js'
import {
  FieldRuleError,
  canonicalJson,
  cloneJson,
  mergeRows,
  stripLocalOnly,
  valuesEqual,
  type FieldRule,
  type MergeConfig,
} from './merge.js'
import type { Row } from './protocol.js'

export type { FieldMergeFunction, FieldRule, MergeConfig } from './merge.js'
export { stripLocalOnly, withLocalOnly } from './merge.js'

/** One side of a conflict. */
export interface ConflictSide {
  /**
   * The row (local side: as the app sees it, local-only fields included; remote side: the server's
   * row). `null` when deleted or absent. A side with `deleted: true` is gone whatever `row` holds
   * (a tombstone may still carry its last fields).
   */
  row: Row | null
  /** HLC stamp of the change that produced this side; `null` when unknown. */
  hlc: string | null
  deleted: boolean
}

/** What a custom resolver is given (copies: changing them changes nothing). */
export interface ConflictContext {
  local: ConflictSide
  remote: ConflictSide
  /** The last version both sides agreed on (local-only fields excluded); `null` for none. */
  base: Row | null
  table: string
  id: string
}

/**
 * A custom strategy. Returns the row the record should hold (local-only fields in it are ignored),
 * `null` to delete the record, or `{ askUser: true }` to park the conflict for a person. Must be
 * synchronous and pure. A throw or any other return value becomes a `failed` resolution.
 */
export type CustomResolver = (ctx: ConflictContext) => Row | null | { askUser: true }

/** How a collection resolves conflicts. */
export type ConflictStrategy =
  | 'local-wins'
  | 'remote-wins'
  | 'newest-wins'
  | 'merge'
  | 'ask-user'
  | { merge: MergeConfig }
  | CustomResolver

/** Input of {@link resolveConflict}. */
export interface ResolveConflictInput {
  strategy: ConflictStrategy
  /** The device's pending change. */
  local: ConflictSide
  /** The server's current version. */
  remote: ConflictSide
  /** The last version the device had confirmed from the server; `null` when there is none. */
  base: Row | null
  table: string
  id: string
  /** Local-only fields of the collection (added to a `{ merge }` config's own `localOnly`). */
  localOnly?: readonly string[]
}

/**
 * The decision. What the device does with it:
 * - `keep-remote`: drop the pending change; store the remote version (a tombstone: delete locally),
 *   keeping local-only fields (`withLocalOnly(remote.row, local.row, localOnly)`).
 * - `write`: store `withLocalOnly(row, local.row, localOnly)` and push `row` on top of the remote
 *   version (`baseVersion` = the remote version; a create / resurrection when the remote is gone).
 * - `delete`: delete locally and push a delete on top of the remote version.
 * - `ask-user`: park the conflict in the inbox, leaving the record as it is.
 * - `failed`: the strategy could not decide (see {@link ConflictResolutionError}); report it and treat
 *   the record like `ask-user` so nothing is lost.
 *
 * `hlc` on `write` / `delete` is the stamp to send: the local change's own stamp when the outcome is
 * exactly the local change and that stamp is newer than the remote's; otherwise `null`, meaning "stamp
 * it now": `clock.receive(remote.hlc)` then `clock.tick()`, so it sorts after both sides.
 */
export type ConflictResolution =
  | { outcome: 'keep-remote' }
  | { outcome: 'write'; row: Row; hlc: string | null }
  | { outcome: 'delete'; hlc: string | null }
  | { outcome: 'ask-user' }
  | { outcome: 'failed'; error: ConflictResolutionError }

/** Why a strategy could not decide. */
export type ConflictResolutionErrorKind =
  /** The strategy is not one of the accepted shapes (see {@link isConflictStrategy}). */
  | 'invalid-strategy'
  /** A custom resolver threw (the error is the `cause`). */
  | 'resolver-threw'
  /** A custom resolver returned something other than a row, `null` or `{ askUser: true }`. */
  | 'invalid-result'
  /** A `merge` field rule function threw (`field` says which; the error is the `cause`). */
  | 'field-rule-threw'

/** A typed failure returned (never thrown) by {@link resolveConflict}. */
export class ConflictResolutionError extends Error {
  readonly kind: ConflictResolutionErrorKind
  readonly table: string
  readonly id: string
  /** For `field-rule-threw`: the field. */
  readonly field: string | undefined
  constructor(
    kind: ConflictResolutionErrorKind,
    message: string,
    details: { table: string; id: string; field?: string; cause?: unknown },
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'ConflictResolutionError'
    this.kind = kind
    this.table = details.table
    this.id = details.id
    this.field = details.field
  }
}

const NAMED_STRATEGIES = new Set(['local-wins', 'remote-wins', 'newest-wins', 'merge', 'ask-user'])
const NAMED_RULES = new Set(['newest', 'local', 'remote', 'union'])

function isFieldRule(value: unknown): value is FieldRule {
  return typeof value === 'function' || (typeof value === 'string' && NAMED_RULES.has(value))
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}

/** Whether `config` is a valid {@link MergeConfig}. */
export function isMergeConfig(config: unknown): config is MergeConfig {
  if (!isPlainObject(config)) return false
  const { fields, default: fallback, localOnly } = config
  if (fields !== undefined && !(isPlainObject(fields) && Object.values(fields).every(isFieldRule))) return false
  if (fallback !== undefined && !isFieldRule(fallback)) return false
  if (localOnly !== undefined && !(Array.isArray(localOnly) && localOnly.every((f) => typeof f === 'string'))) return false
  return true
}

/** Whether `value` is a valid {@link ConflictStrategy} (for checking configuration up front). */
export function isConflictStrategy(value: unknown): value is ConflictStrategy {
  if (typeof value === 'string') return NAMED_STRATEGIES.has(value)
  if (typeof value === 'function') return true
  return isPlainObject(value) && Object.keys(value).length === 1 && isMergeConfig(value.merge)
}

/** A side reduced to what resolution looks at: its live row (local-only fields removed) or gone. */
interface SideView {
  live: Row | null
  hlc: string | null
}

function view(side: ConflictSide, localOnly: readonly string[]): SideView {
  const live = side.deleted || side.row === null ? null : stripLocalOnly(side.row, localOnly)
  return { live, hlc: side.hlc }
}

function sameState(a: SideView, b: SideView): boolean {
  if (a.live === null || b.live === null) return a.live === b.live
  return valuesEqual(a.live, b.live)
}

/**
 * Which side's change is newer: by HLC; when the stamps tie (equal, or both missing/malformed), by
 * content (a live row beats a deletion, then the larger canonical JSON), so the answer depends only
 * on the two sides, not on which one is local.
 */
function newerSide(local: SideView, remote: SideView): 'local' | 'remote' {
  const byClock = compareHlc(local.hlc, remote.hlc)
  if (byClock !== 0) return byClock > 0 ? 'local' : 'remote'
  const key = (s: SideView): string => (s.live === null ? '0' : `1${canonicalJson(s.live) ?? ''}`)
  return key(local) > key(remote) ? 'local' : 'remote'
}

const KEEP_REMOTE: ConflictResolution = Object.freeze({ outcome: 'keep-remote' })
const ASK_USER: ConflictResolution = Object.freeze({ outcome: 'ask-user' })

/**
 * Decide a conflict. Pure and deterministic; never throws (failures come back as `failed`).
 *
 * Gone = deleted or `row: null`. Summary (full table in `docs/conflicts.md`):
 * - `remote-wins`: `keep-remote`.
 * - `local-wins`: the local state: `write` its row, or `delete` when the local side is gone.
 * - `newest-wins`: the state of the side with the newer change (see the invariants above).
 * - `merge` / `{ merge }`: both live → three-way field merge against `base` (`mergeRows`; no base, as
 *   for two creates, means every differing field counts as changed by both); one side gone → the
 *   live side wins (an edit resurrects a deleted record: deleting loses nothing, the edit would).
 * - `ask-user`: `ask-user`.
 * - a function: its answer (row → `write`, `null` → `delete`, `{ askUser: true }` → `ask-user`).
 * A `write` whose row equals the remote row, or a `delete` of a remote already gone, is reported as
 * `keep-remote`: nothing needs sending.
 */
export function resolveConflict(input: ResolveConflictInput): ConflictResolution {
  const { strategy, table, id } = input
  const fail = (kind: ConflictResolutionErrorKind, message: string, extra: { field?: string; cause?: unknown } = {}) =>
    ({ outcome: 'failed', error: new ConflictResolutionError(kind, message, { table, id, ...extra }) }) as const

  if (!isConflictStrategy(strategy)) {
    return fail('invalid-strategy', `unknown conflict strategy for ${table}/${id}: ${describe(strategy)}`)
  }
  const mergeConfig: MergeConfig | null =
    strategy === 'merge' ? {} : typeof strategy === 'object' ? strategy.merge : null
  const localOnly = [...(input.localOnly ?? []), ...(mergeConfig?.localOnly ?? [])]

  const local = view(input.local, localOnly)
  const remote = view(input.remote, localOnly)
  if (sameState(local, remote)) return KEEP_REMOTE
  const newer = newerSide(local, remote)
  const localStamp = compareHlc(input.local.hlc, input.remote.hlc) > 0 ? input.local.hlc : null

  // Turn a target state into the outcome relative to the remote version.
  const settle = (target: Row | null): ConflictResolution => {
    if (target === null) return remote.live === null ? KEEP_REMOTE : { outcome: 'delete', hlc: local.live === null ? localStamp : null }
    const row = stripLocalOnly(target, localOnly)
    if (remote.live !== null && valuesEqual(row, remote.live)) return KEEP_REMOTE
    const isLocal = local.live !== null && valuesEqual(row, local.live)
    return { outcome: 'write', row, hlc: isLocal ? localStamp : null }
  }

  if (typeof strategy === 'function') {
    let answer: unknown
    try {
      answer = strategy({
        local: cloneJson(input.local),
        remote: cloneJson(input.remote),
        base: cloneJson(input.base),
        table,
        id,
      })
    } catch (error) {
      return fail('resolver-threw', `conflict resolver for ${table}/${id} threw: ${errorMessage(error)}`, { cause: error })
    }
    if (answer === null) return settle(null)
    if (isPlainObject(answer) && answer.askUser === true && Object.keys(answer).length === 1) return ASK_USER
    if (isPlainObject(answer)) return settle(answer)
    return fail('invalid-result', `conflict resolver for ${table}/${id} returned ${describe(answer)}; expected a row, null or { askUser: true }`)
  }

  switch (strategy) {
    case 'ask-user':
      return ASK_USER
    case 'remote-wins':
      return KEEP_REMOTE
    case 'local-wins':
      return settle(local.live)
    case 'newest-wins':
      return settle(newer === 'local' ? local.live : remote.live)
  }

  // merge
  if (local.live === null || remote.live === null) return settle(local.live ?? remote.live)
  try {
    const base = input.base === null ? null : stripLocalOnly(input.base, localOnly)
    return settle(mergeRows({ local: local.live, remote: remote.live, base, newer, config: { ...mergeConfig, localOnly } }))
  } catch (error) {
    if (error instanceof FieldRuleError) {
      return fail('field-rule-threw', `${error.message} (${table}/${id})`, { field: error.field, cause: error.cause })
    }
    return fail('field-rule-threw', `merge of ${table}/${id} failed: ${errorMessage(error)}`, { cause: error })
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (value === null) return 'null'
  if (typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function') return 'a promise (resolvers must be synchronous)'
  return Array.isArray(value) ? 'an array' : typeof value
}
