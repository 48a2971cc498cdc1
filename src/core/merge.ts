/**
 * Field-level three-way merge of two versions of a row against their common base, and the helpers
 * for local-only fields (kept on the device, never sent).
 *
 * Values are compared structurally ({@link valuesEqual}): key order never matters, and a field that
 * is missing equals a field set to `undefined`. Everything here is pure and deterministic.
 */
import type { Row } from './protocol.js'

/**
 * A custom rule for one field both sides changed. Receives copies of the three values (`undefined`
 * where the row lacks the field; `base` is `undefined` for every field when there is no base) and
 * returns the merged value (`undefined` drops the field). It must be pure; for devices to agree
 * without a further round trip it should also be symmetric in `local` and `remote`.
 */
export type FieldMergeFunction = (local: unknown, remote: unknown, base: unknown) => unknown

/**
 * How to merge a field that both sides changed:
 * - `newest`: the value of the side whose change has the newer HLC (see `conflict.ts`);
 * - `local` / `remote`: always that side's value;
 * - `union`: for two arrays, their set union (see {@link unionArrays}); otherwise as `newest`;
 * - a {@link FieldMergeFunction}.
 */
export type FieldRule = 'newest' | 'local' | 'remote' | 'union' | FieldMergeFunction

/** Configuration of the `merge` strategy. */
export interface MergeConfig {
  /** Rules per field name. */
  fields?: Record<string, FieldRule>
  /** Rule for fields not listed in `fields` (default `newest`). */
  default?: FieldRule
  /** Fields that never leave the device: excluded from the merged row, kept locally as they are. */
  localOnly?: readonly string[]
}

/** A field rule function threw; carries the field and the original error. */
export class FieldRuleError extends Error {
  readonly field: string
  constructor(field: string, cause: unknown) {
    super(`merge rule for field "${field}" threw: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
    this.name = 'FieldRuleError'
    this.field = field
  }
}

/** Input of {@link mergeRows}. */
export interface MergeRowsInput {
  local: Row
  remote: Row
  /** The last version both sides agreed on; `null` when there is none (concurrent creates). */
  base: Row | null
  /** Which side's change is newer; decides `newest` fields and the order of `union` arrays. */
  newer: 'local' | 'remote'
  config: MergeConfig
}

/**
 * Three-way merge of `local` and `remote` against `base`, field by field:
 * - both sides hold equal values → that value;
 * - only one side differs from `base` → that side's value;
 * - both differ from `base` (and from each other) → the field's rule.
 * With `base` `null` every field is compared against "absent": a field only one side has is taken
 * from it, a field both have with different values follows its rule.
 *
 * Local-only fields (`config.localOnly`) are left out of the result. Fields whose merged value is
 * `undefined` are left out. Key order: `remote`'s keys, then keys only `local` has.
 * Throws {@link FieldRuleError} when a rule function throws.
 */
export function mergeRows(input: MergeRowsInput): Row {
  const { local, remote, newer, config } = input
  const base = input.base ?? {}
  const skip = new Set(config.localOnly ?? [])
  const keys = new Set<string>()
  for (const row of [remote, local]) for (const k of Object.keys(row)) if (!skip.has(k)) keys.add(k)

  const merged: Row = {}
  for (const field of keys) {
    const lv = local[field]
    const rv = remote[field]
    const bv = base[field]
    let value: unknown
    if (valuesEqual(lv, rv)) value = lv
    else if (valuesEqual(lv, bv)) value = rv
    else if (valuesEqual(rv, bv)) value = lv
    else value = applyRule(field, config.fields?.[field] ?? config.default ?? 'newest', lv, rv, bv, newer)
    if (value !== undefined) merged[field] = value
  }
  return merged
}

function applyRule(
  field: string,
  rule: FieldRule,
  lv: unknown,
  rv: unknown,
  bv: unknown,
  newer: 'local' | 'remote',
): unknown {
  if (typeof rule === 'function') {
    try {
      return rule(cloneJson(lv), cloneJson(rv), cloneJson(bv))
    } catch (error) {
      throw new FieldRuleError(field, error)
    }
  }
  switch (rule) {
    case 'local':
      return lv
    case 'remote':
      return rv
    case 'union':
      if (Array.isArray(lv) && Array.isArray(rv)) {
        return newer === 'local' ? unionArrays(lv, rv) : unionArrays(rv, lv)
      }
      return newer === 'local' ? lv : rv
    default:
      return newer === 'local' ? lv : rv
  }
}

/**
 * Set union of two arrays in a deterministic order: the elements of `first` in its order, then the
 * elements of `second` not already present, in its order. Duplicates (by {@link valuesEqual}) appear
 * once. `mergeRows` passes the newer side first, so every device computes the same array whichever
 * side is local to it.
 */
export function unionArrays(first: readonly unknown[], second: readonly unknown[]): unknown[] {
  const seen = new Set<string>()
  const out: unknown[] = []
  for (const list of [first, second]) {
    for (const item of list) {
      const key = canonicalJson(item) ?? 'null'
      if (seen.has(key)) continue
      seen.add(key)
      out.push(item)
    }
  }
  return out
}

/** A copy of `row` without `field` (an own `__proto__` field stays a field). */
export function omit(row: Row, field: string): Row {
  const { [field]: _drop, ...rest } = row
  return rest
}

/** A copy of `row` without the local-only `fields`. */
export function stripLocalOnly(row: Row, fields: readonly string[]): Row {
  const out: Row = { ...row }
  for (const f of fields) delete out[f]
  return out
}

/**
 * `row` (e.g. the server's or a merged version) with the device's local-only `fields` taken from
 * `localRow`: what the device stores after a resolution. A local-only field `localRow` lacks is
 * absent from the result, whatever `row` holds for it.
 */
export function withLocalOnly(row: Row, localRow: Row | null, fields: readonly string[]): Row {
  const out = stripLocalOnly(row, fields)
  if (localRow) for (const f of fields) if (Object.hasOwn(localRow, f)) out[f] = localRow[f]
  return out
}

/**
 * Deterministic JSON text of a value: object keys sorted, no whitespace. Follows `JSON.stringify`
 * for non-JSON values (fields holding `undefined` or functions are dropped, non-finite numbers become
 * `null`, `toJSON` is honoured), except that a bigint renders as `<digits>n` so it never equals a
 * number or a string. Returns `undefined` for `undefined`, functions and symbols.
 */
export function canonicalJson(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null'
    case 'boolean':
      return value ? 'true' : 'false'
    case 'bigint':
      return `${value.toString()}n`
    case 'object': {
      if (value === null) return 'null'
      const toJSON = (value as { toJSON?: unknown }).toJSON
      if (typeof toJSON === 'function') return canonicalJson(toJSON.call(value))
      if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v) ?? 'null').join(',')}]`
      const parts: string[] = []
      for (const k of Object.keys(value).sort()) {
        const v = canonicalJson((value as Record<string, unknown>)[k])
        if (v !== undefined) parts.push(`${JSON.stringify(k)}:${v}`)
      }
      return `{${parts.join(',')}}`
    }
    default:
      return undefined
  }
}

/** Structural equality of JSON-compatible values (key order ignored; see {@link canonicalJson}). */
export function valuesEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  return canonicalJson(a) === canonicalJson(b)
}

/** Deep copy of plain objects and arrays, so user callbacks cannot change the caller's rows. */
export function cloneJson<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => cloneJson(v)) as T
  if (value !== null && typeof value === 'object') {
    const proto = Object.getPrototypeOf(value) as unknown
    if (proto !== Object.prototype && proto !== null) return value
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = cloneJson(v)
    return out as T
  }
  return value
}
