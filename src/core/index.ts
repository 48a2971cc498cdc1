/**
 * sync-orchestrator: an offline-first sync engine for apps on Supabase.
 * Platform-free core; storage, backends and environments come from their own subpaths.
 */
export { createSyncOrchestrator, DEFAULTS } from './orchestrator.js'
export type * from './types.js'
export type * from './protocol.js'
export type { Storage, StorageOp, StorageEntry } from './storage.js'
export type { Environment, AppState, BatteryState, Unsubscribe, TimerHandle } from './env.js'
export { createSilentLogger, type Logger } from './logger.js'
export { SyncError, StorageError, AbortError, isAbortError, type SyncErrorKind, type SyncErrorOptions, type StorageErrorKind } from './errors.js'
export { resolveConflict, stripLocalOnly, withLocalOnly, type ConflictStrategy, type MergeConfig, type FieldRule, type ConflictSide, type CustomResolver } from './conflict.js'
export { createHlcClock, encodeHlc, decodeHlc, compareHlc, type HlcClock } from './hlc.js'
export { createBackoff, type BackoffOptions } from './retry.js'
export { checksumOf } from './checksum.js'
