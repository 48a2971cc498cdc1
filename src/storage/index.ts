/**
 * The storage adapters that run anywhere: memory, Web Storage, AsyncStorage-compatible stores and
 * IndexedDB (`sync-orchestrator/storage/index`, or one adapter at a time through
 * `sync-orchestrator/storage/<name>`).
 *
 * The Node file adapter is deliberately not re-exported here: it imports `node:fs`, and this module
 * must stay importable by browser and React Native bundles. Import it from
 * `sync-orchestrator/storage/file`.
 */
export { createMemoryStorage } from './memory.js'
export type { MemoryStorageAdapter, MemoryStorageOptions } from './memory.js'
export { createWebStorage } from './webStorage.js'
export type { WebStorageAdapter, WebStorageLike, WebStorageOptions } from './webStorage.js'
export { createAsyncStorage } from './asyncStorage.js'
export type { AsyncStorageAdapter, AsyncStorageLike, AsyncStorageOptions } from './asyncStorage.js'
export { createIndexedDbStorage } from './indexedDb.js'
export type { IndexedDbStorageAdapter, IndexedDbStorageOptions } from './indexedDb.js'
export type { CorruptionListener, InspectableStorage, LogDamageReason, StorageCorruption } from './corruption.js'
