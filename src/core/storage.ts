/**
 * The storage port: a small ordered key-value store with atomic multi-key commits.
 *
 * Every adapter (memory, Web Storage, AsyncStorage, IndexedDB, Node file) implements it and passes
 * the shared contract suite in `src/testing/storageContract.ts`.
 *
 * Invariants:
 * - `commit(ops)` is atomic: after a crash at any point, either every op in it is visible or none.
 *   This is what lets a local write and its queue item be stored together.
 * - Values are JSON-compatible; adapters serialize as they need.
 * - `scan(prefix)` returns entries whose key starts with `prefix`, sorted by key (code-unit order).
 * - A failed commit (e.g. quota exceeded) throws a `StorageError` and leaves the store unchanged.
 */

/** One write in an atomic commit. */
export type StorageOp =
  | { type: 'set'; key: string; value: unknown }
  | { type: 'delete'; key: string }

/** An entry returned by `scan`. */
export interface StorageEntry {
  key: string
  value: unknown
}

/** The storage port. */
export interface Storage {
  /** Read one key; `undefined` when absent. */
  get(key: string): Promise<unknown>
  /** Read several keys; the result has one slot per key, `undefined` when absent. */
  getMany(keys: readonly string[]): Promise<unknown[]>
  /** All entries whose key starts with `prefix`, sorted by key. */
  scan(prefix: string): Promise<StorageEntry[]>
  /** Apply all ops atomically. */
  commit(ops: readonly StorageOp[]): Promise<void>
  /** Release resources; further calls reject with `StorageError('closed')`. */
  close(): Promise<void>
}
