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
 * mutate stored state by accident. Nothing survives the process: use it for tests and ephemeral apps.
 *
 * Keys are kept in a sorted index, so `scan(prefix)` costs O(log n + matches), not O(n).
 * Cloning is `structuredClone`, which accepts more than JSON (a `Date` stays a `Date`); the
 * persistent adapters store JSON, so keep values JSON to behave the same everywhere.
 */
export function createMemoryStorage(options: MemoryStorageOptions = {}): MemoryStorageAdapter {
  const map = new Map<string, unknown>()
  for (const [key, value] of Object.entries(options.initial ?? {})) map.set(key, structuredClone(value))
  const order = SortedKeys.from(map.keys())
  let closed = false
  const check = (): void => {
    if (closed) throw new StorageError('closed', 'memory storage is closed')
  }
  const read = (key: string): unknown => {
    const value = map.get(key)
    return value === undefined ? undefined : structuredClone(value)
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
      for (const key of order.withPrefix(prefix)) out.push({ key, value: structuredClone(map.get(key)) })
      return out
    },
    async commit(ops: readonly StorageOp[]) {
      check()
      // Clone first so a value that cannot be cloned fails the whole commit before anything changes.
      const prepared = ops.map((op) => (op.type === 'set' ? { ...op, value: structuredClone(op.value) } : op))
      for (const op of prepared) {
        if (op.type === 'set') {
          if (!map.has(op.key)) order.insert(op.key)
          map.set(op.key, op.value)
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
