import { mapPacked } from '../core/arrays.js'
import { StorageError } from '../core/errors.js'
import type { StorageEntry, StorageOp } from '../core/storage.js'
import type { InspectableStorage } from './corruption.js'
import { SortedKeys } from './sortedKeys.js'

/** Options for {@link createMemoryStorage}. */
export interface MemoryStorageOptions {
  /** Start with these entries (values are cloned). */
  initial?: Record<string, unknown>
}

/** A storage held in memory. */
export type MemoryStorageAdapter = InspectableStorage

/**
 * An in-memory storage adapter. Values are deep-cloned on the way in and out, so callers can never
 * mutate stored state by accident; a deeply frozen value, which nobody can mutate, is stored as it
 * is. Nothing survives the process: use it for tests and ephemeral apps.
 *
 * Keys are kept in a sorted index, so `scan(prefix)` costs O(log n + matches), not O(n).
 * Plain objects, arrays and primitives are copied directly; anything else goes through
 * `structuredClone`, which accepts more than JSON (a `Date` stays a `Date`). The persistent adapters
 * store JSON, so keep values JSON to behave the same everywhere.
 */
/**
 * A deep copy. JSON-shaped values (the engine's) are copied by hand: `structuredClone` serializes
 * and costs ~7 µs for a small record, several times more. Other values (a `Date`, a `Map`, a
 * cycle) go through `structuredClone`, which also throws for what cannot be cloned.
 */
function clone<T>(value: T): T {
  const copy = copyPlain(value, 0)
  return (copy === NOT_PLAIN ? structuredClone(value) : copy) as T
}

/**
 * The value to store: a deeply frozen plain value (the queue freezes its items) cannot change, so it
 * is kept as it is; anything else is copied. Reads still hand back copies.
 */
function toStore<T>(value: T): T {
  if (typeof value === 'object' && value !== null && deepFrozen(value, 0)) return value
  return clone(value)
}

/** Whether `value` is a plain object or array, frozen, and so is every object inside it. */
function deepFrozen(value: object, depth: number): boolean {
  if (depth > MAX_DEPTH || !Object.isFrozen(value)) return false
  if (!Array.isArray(value)) {
    const proto = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) return false
  }
  for (const key in value) {
    const v = (value as Record<string, unknown>)[key]
    if (typeof v === 'function' || typeof v === 'symbol') return false
    if (typeof v === 'object' && v !== null && !deepFrozen(v, depth + 1)) return false
  }
  return true
}

const NOT_PLAIN: unique symbol = Symbol('not plain')
// Deeper than this is treated as not plain: structuredClone handles cycles and deep nesting.
const MAX_DEPTH = 64

function copyPlain(value: unknown, depth: number): unknown {
  if (typeof value !== 'object' || value === null) {
    // Functions and symbols cannot be cloned: let structuredClone say so.
    return typeof value === 'function' || typeof value === 'symbol' ? NOT_PLAIN : value
  }
  if (depth > MAX_DEPTH) return NOT_PLAIN
  if (Array.isArray(value)) {
    const out: unknown[] = new Array(value.length)
    for (let i = 0; i < value.length; i++) {
      const v = copyPlain(value[i], depth + 1)
      if (v === NOT_PLAIN) return NOT_PLAIN
      out[i] = v
    }
    return out
  }
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return NOT_PLAIN
  const out: Record<string, unknown> = {}
  for (const key in value) {
    const v = copyPlain((value as Record<string, unknown>)[key], depth + 1)
    if (v === NOT_PLAIN) return NOT_PLAIN
    // An own "__proto__" key (JSON.parse makes one) stays a key, not the copy's prototype.
    if (key === '__proto__') Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true })
    else out[key] = v
  }
  return out
}

export function createMemoryStorage(options: MemoryStorageOptions = {}): MemoryStorageAdapter {
  const map = new Map<string, unknown>()
  for (const [key, value] of Object.entries(options.initial ?? {})) map.set(key, clone(value))
  const order = SortedKeys.from(map.keys())
  let closed = false
  const check = (): void => {
    if (closed) throw new StorageError('closed', 'memory storage is closed')
  }
  const read = (key: string): unknown => {
    const value = map.get(key)
    return value === undefined ? undefined : clone(value)
  }
  return {
    async get(key) {
      check()
      return read(key)
    },
    async getMany(keys) {
      check()
      return keys.map(read)
    },
    async scan(prefix) {
      check()
      const out: StorageEntry[] = []
      for (const key of order.withPrefix(prefix)) out.push({ key, value: clone(map.get(key)) })
      return out
    },
    async commit(ops: readonly StorageOp[]) {
      check()
      // Clone first so a value that cannot be cloned fails the whole commit before anything changes.
      const values = mapPacked(ops, (op) => (op.type === 'set' ? toStore(op.value) : undefined))
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i]!
        if (op.type === 'set') {
          if (!map.has(op.key)) order.insert(op.key)
          map.set(op.key, values[i])
        } else if (map.delete(op.key)) {
          order.remove(op.key)
        }
      }
    },
    async corruption() {
      check()
      return []
    },
    async close() {
      closed = true
    },
  }
}
