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

/** One write in an atomic commit (a delete's `value`, when present, is `undefined`). */
export type StorageOp =
  | { type: 'set'; key: string; value: unknown }
  | { type: 'delete'; key: string; value?: undefined }

/**
 * A set op. The engine builds every op with `setOp` or `deleteOp`, so all its ops have one object
 * shape (type, key, value): an adapter's commit loop then stays monomorphic, and is not sent back
 * to be compiled again when the first delete reaches it in the middle of a sync.
 */
export function setOp(key: string, value: unknown): StorageOp {
  return { type: 'set', key, value }
}

/** A delete op, of the same shape as {@link setOp}'s. */
export function deleteOp(key: string): StorageOp {
  return { type: 'delete', key, value: undefined }
}

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
