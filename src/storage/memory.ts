import { StorageError } from '../core/errors.js'
import type { Storage, StorageEntry, StorageOp } from '../core/storage.js'

/** Options for {@link createMemoryStorage}. */
export interface MemoryStorageOptions {
  /** Start with these entries (values are cloned). */
  initial?: Record<string, unknown>
}

/**
 * An in-memory storage adapter. Values are deep-cloned on the way in and out, so callers can never
 * mutate stored state by accident. Nothing survives the process: use it for tests and ephemeral apps.
 */
export function createMemoryStorage(options: MemoryStorageOptions = {}): Storage {
  const map = new Map<string, unknown>()
  for (const [key, value] of Object.entries(options.initial ?? {})) map.set(key, structuredClone(value))
  let closed = false
  const check = (): void => {
    if (closed) throw new StorageError('closed', 'memory storage is closed')
  }
  return {
    async get(key) {
      check()
      const value = map.get(key)
      return value === undefined ? undefined : structuredClone(value)
    },
    async getMany(keys) {
      check()
      return keys.map((key) => {
        const value = map.get(key)
        return value === undefined ? undefined : structuredClone(value)
      })
    },
    async scan(prefix) {
      check()
      const out: StorageEntry[] = []
      for (const [key, value] of map) if (key.startsWith(prefix)) out.push({ key, value: structuredClone(value) })
      return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    },
    async commit(ops: readonly StorageOp[]) {
      check()
      // Clone first so a value that cannot be cloned fails the whole commit before anything changes.
      const prepared = ops.map((op) => (op.type === 'set' ? { ...op, value: structuredClone(op.value) } : op))
      for (const op of prepared) {
        if (op.type === 'set') map.set(op.key, op.value)
        else map.delete(op.key)
      }
    },
    async close() {
      closed = true
    },
  }
}
