import { StorageError } from '../core/errors.js'
import type { CorruptionListener } from './corruption.js'
import { createJournaledKv } from './journaledKv.js'
import type { JournaledKv, KvBackend } from './journaledKv.js'

/** The part of the DOM `Storage` interface (localStorage, sessionStorage) the adapter uses. */
export interface WebStorageLike {
  readonly length: number
  key(index: number): string | null
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem(key: string): void
}

/** Options for {@link createWebStorage}. */
export interface WebStorageOptions {
  /** Keeps this store's keys apart from every other namespace and from the app's own keys. */
  namespace: string
  /** Default `globalThis.localStorage`. */
  storage?: WebStorageLike
  /** Called with each damaged entry or record found (see {@link StorageCorruption}). */
  onCorrupt?: CorruptionListener
}

/** A storage over Web Storage. */
export type WebStorageAdapter = JournaledKv

/**
 * A storage adapter over the DOM Web Storage API.
 *
 * - Atomic commits through a rollback journal (see `journaledKv.ts`): after a crash, or a full
 *   quota mid-commit, either all of a commit is visible or none of it.
 * - A full quota (`QuotaExceededError`, legacy codes 22 / 1014) rejects the commit with
 *   `StorageError('quota-exceeded')`; nothing already stored is lost and the store stays usable.
 *   A commit that grows the store needs room for its journal (the old values of the keys it
 *   writes) on top of its data; one that only deletes or shrinks values needs room for little more
 *   than its keys, and a single-key commit needs none, so a full store can always free space.
 * - The namespace is loaded into memory once (on first use), so `get` and `scan` never touch
 *   Web Storage; a commit costs O(its ops). Values must be JSON.
 * - Values that are not valid JSON (tampered storage) are reported through `onCorrupt` and
 *   `corruption()`; reading one throws `StorageError('corrupt')`, `scan` skips it, and committing a
 *   `set` or `delete` of the key repairs it.
 * - One instance per namespace at a time: changes made by another tab are not picked up.
 */
export function createWebStorage(options: WebStorageOptions): WebStorageAdapter {
  const storage = options.storage ?? defaultStorage()
  const backend: KvBackend = {
    async read(keys) {
      return keys.map((key) => storage.getItem(key))
    },
    async write(writes) {
      for (const [key, value] of writes) {
        if (value === null) storage.removeItem(key)
        else storage.setItem(key, value)
      }
    },
    async listKeys() {
      const keys: string[] = []
      for (let i = 0; i < storage.length; i++) {
        const key = storage.key(i)
        if (key !== null) keys.push(key)
      }
      return keys
    },
  }
  return createJournaledKv({
    backend,
    namespace: options.namespace,
    membership: 'enumerate',
    label: 'web storage',
    onCorrupt: options.onCorrupt,
    keyLogCompactAfter: 0,
  })
}

function defaultStorage(): WebStorageLike {
  let storage: WebStorageLike | undefined
  try {
    storage = (globalThis as { localStorage?: WebStorageLike }).localStorage
  } catch (cause) {
    // Browsers throw a SecurityError here when site data is blocked.
    throw new StorageError('io', 'localStorage is not accessible', { cause })
  }
  if (!storage) throw new TypeError('web storage: no globalThis.localStorage here; pass options.storage')
  return storage
}
