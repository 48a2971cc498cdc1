import type { CorruptionListener } from './corruption.js'
import { createJournaledKv } from './journaledKv.js'
import type { JournaledKv, KvBackend, KvWrite } from './journaledKv.js'

/**
 * The shape of React Native's AsyncStorage (and compatible stores) the adapter uses. The package is
 * never imported: pass the module in.
 */
export interface AsyncStorageLike {
  getItem(key: string): Promise<string | null>
  setItem(key: string, value: string): Promise<void>
  removeItem(key: string): Promise<void>
  multiGet(keys: readonly string[]): Promise<readonly (readonly [string, string | null])[]>
  multiSet(pairs: readonly (readonly [string, string])[]): Promise<void>
  multiRemove(keys: readonly string[]): Promise<void>
  /** Optional; only used to rebuild a damaged key log. */
  getAllKeys?(): Promise<readonly string[]>
}

/** Options for {@link createAsyncStorage}. */
export interface AsyncStorageOptions {
  asyncStorage: AsyncStorageLike
  /** Keeps this store's keys apart from every other namespace and from the app's own keys. */
  namespace: string
  /** Called with each damaged entry or record found (see {@link StorageCorruption}). */
  onCorrupt?: CorruptionListener
  /**
   * Fold the key log into a snapshot once it has this many segments, or keys / 16 if more
   * (default 256). Lower means faster opens, higher means fewer snapshot rewrites.
   */
  keyLogCompactAfter?: number
}

/** A storage over AsyncStorage. */
export type AsyncStorageAdapter = JournaledKv

/**
 * A storage adapter over an AsyncStorage-compatible store.
 *
 * - Atomic commits through a rollback journal (see `journaledKv.ts`): neither `multiSet` nor a crash
 *   mid-commit can leave part of a commit visible.
 * - The namespace's keys are tracked in its own key log rather than found with `getAllKeys`, so an
 *   open reads only this namespace and works where `getAllKeys` is missing; `getAllKeys`, when
 *   given, rebuilds a damaged key log. Each commit that adds or removes keys writes one extra
 *   small record, in the same `multiSet`.
 * - The namespace is loaded into memory on first use: `get` and `scan` never touch the backend; a
 *   commit costs O(its ops) plus, amortized, O(1) for key log compaction.
 * - Values that are not valid JSON are reported through `onCorrupt` and `corruption()`; reading one
 *   throws `StorageError('corrupt')`, `scan` skips it, and writing the key repairs it.
 * - One instance per namespace at a time.
 */
export function createAsyncStorage(options: AsyncStorageOptions): AsyncStorageAdapter {
  const store = options.asyncStorage
  const backend: KvBackend = {
    async read(keys) {
      if (keys.length === 0) return []
      const pairs = await store.multiGet(keys)
      const found = new Map<string, string | null>()
      for (const [key, value] of pairs) found.set(key, value ?? null)
      return keys.map((key) => found.get(key) ?? null)
    },
    async write(writes) {
      // Consecutive sets go in one multiSet and removals in one multiRemove, keeping write order.
      for (let i = 0; i < writes.length; ) {
        const removing = (writes[i] as KvWrite)[1] === null
        let j = i
        while (j < writes.length && ((writes[j] as KvWrite)[1] === null) === removing) j++
        const run = writes.slice(i, j)
        if (removing) await store.multiRemove(run.map(([key]) => key))
        else await store.multiSet(run.map(([key, value]) => [key, value as string] as const))
        i = j
      }
    },
  }
  if (store.getAllKeys) {
    const getAllKeys = store.getAllKeys.bind(store)
    backend.listKeys = () => getAllKeys()
  }
  return createJournaledKv({
    backend,
    namespace: options.namespace,
    membership: 'key-log',
    label: 'async storage',
    onCorrupt: options.onCorrupt,
    keyLogCompactAfter: options.keyLogCompactAfter ?? 256,
  })
}
