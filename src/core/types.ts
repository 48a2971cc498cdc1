/**
 * The public API of the orchestrator: options, collections, status, events, metrics.
 * Implementation: `orchestrator.ts`.
 */
import type { Backend, Row } from './protocol.js'
import type { Storage } from './storage.js'
import type { Environment, Unsubscribe } from './env.js'
import type { Logger } from './logger.js'
import type { SyncErrorKind } from './errors.js'
import type { FailedItem } from './queueItem.js'

/** Queue priority; high goes first across records and is the only work allowed on low battery. */
export type Priority = 'high' | 'normal' | 'low'

/** Built-in conflict strategies; `merge` may be configured per field (see `conflict.ts`). */
export type ConflictStrategyName = 'local-wins' | 'remote-wins' | 'newest-wins' | 'merge' | 'ask-user'

/** Configuration of one synced collection. */
export interface CollectionConfig {
  /** Server table (default: the collection name). */
  table?: string
  /** Primary key column (default `id`). */
  primaryKey?: string
  /**
   * `client` (default): ids are UUIDs made on the device, so a create can be retried safely.
   * `server`: the server assigns ids (identity/serial); the device uses a local id until the create
   * lands, then maps it.
   */
  idMode?: 'client' | 'server'
  /** Queue priority for this collection's writes (default `normal`). */
  priority?: Priority
  /** Conflict strategy (default `newest-wins`). A strategy object or function: see `conflict.ts`. */
  conflict?: unknown
  /** Fields kept on the device only: never sent, never overwritten by the server. */
  localOnly?: readonly string[]
}

/** Scheduler intervals and rules. */
export interface ScheduleOptions {
  activeMs: number
  backgroundMs: number
  lowBatteryMs: number
  lowBatteryThreshold: number
  debounceMs: number
}

/** Options of {@link createSyncOrchestrator}. */
export interface SyncOrchestratorOptions {
  storage: Storage
  backend: Backend
  /** Collections by name. */
  collections: Record<string, CollectionConfig>
  /** Stable id of this device's client (persisted in storage when omitted). */
  clientId?: string
  environment?: Environment
  schedule?: Partial<ScheduleOptions>
  /**
   * Mutations per push request at most (default 1000). A push run's first request carries at most
   * 200, each next one twice as many as the one before, up to this; a batch is frozen, and its
   * answer applied, a slice at a time with a turn for the host between.
   */
  batchSize?: number
  /** Changes per pull page (default 500). */
  pullLimit?: number
  logger?: Logger
  /** Whether a session exists (default: always). */
  isAuthenticated?: () => boolean
  /** Called on an auth error; resolve `true` once a fresh session is in place. */
  refreshAuth?: () => Promise<boolean>
  /** Start background sync as soon as storage is loaded (default true). */
  autoStart?: boolean
}

/** Sync state of one record. */
export type RecordSyncState = 'synced' | 'pending' | 'conflict' | 'failed'

/**
 * A live, typed view of one collection. Reads are synchronous from memory once `ready`. The rows
 * it hands out are the engine's own (no copy per read): treat them as read-only and change a row
 * with `update`.
 */
export interface Collection<T extends Row = Row> {
  readonly name: string
  /** Insert a row; resolves once stored locally with its queue item. Returns the stored row. */
  insert(row: Partial<T>): Promise<T>
  /** Update fields of a row. */
  update(id: string, patch: Partial<T>): Promise<T>
  /** Delete a row. */
  delete(id: string): Promise<void>
  /** One row, or `undefined`. */
  get(id: string): T | undefined
  /** All live rows (a stable array between changes), optionally filtered. */
  list(filter?: (row: T) => boolean): readonly T[]
  /** Sync state of one record. */
  syncState(id: string): RecordSyncState | undefined
  /** Called after any change to this collection, local or remote. */
  subscribe(listener: () => void): Unsubscribe
}

/** What the engine is doing. */
export type SyncState = 'idle' | 'syncing' | 'offline' | 'unauthenticated' | 'backoff' | 'stopped'

/** A snapshot of sync status. Cheap to read; stable object between changes. */
export interface SyncStatus {
  state: SyncState
  online: boolean
  queueLength: number
  pending: { creates: number; updates: number; deletes: number }
  failed: number
  conflicts: number
  lastSyncAt: number | null
  nextSyncAt: number | null
  lastError: { kind: SyncErrorKind | 'storage' | 'internal'; message: string } | null
  /** Present while a sync runs. */
  progress: { phase: 'push' | 'pull'; done: number; total: number | null } | null
}

/** Events published to `subscribe`. */
export type SyncEvent =
  | { type: 'status'; status: SyncStatus }
  | { type: 'change'; collection: string; ids: string[]; source: 'local' | 'remote' }
  | { type: 'pushed'; applied: number; conflicts: number; rejected: number }
  | { type: 'pulled'; changes: number }
  | { type: 'conflict'; collection: string; id: string; strategy: string }
  | { type: 'failed'; collection: string; id: string; code: string; message: string }
  | { type: 'error'; kind: string; message: string }

/** Result of `forceSyncAll()`. */
export type ForceSyncResult =
  | { ok: true; pushed: number; pulled: number }
  | { ok: false; reason: 'offline' | 'unauthenticated' | 'stopped' | 'error'; message: string }

/** Figures returned by `getMetrics()`. */
export interface SyncMetrics {
  queueLength: number
  pendingCreates: number
  pendingUpdates: number
  pendingDeletes: number
  failedItems: number
  conflicts: number
  lastSyncAt: number | null
  nextSyncAt: number | null
  /** Successful runs / all runs over the recent window (1 when none). */
  successRate: number
  /** Mean duration of recent runs, ms (null when none). */
  averageSyncMs: number | null
  /** Verified by comparing per-table checksums with the server; null when it could not be checked. */
  dataInSync: boolean | null
}

/** A conflict waiting for a person (strategy `ask-user`). */
export interface PendingConflict {
  id: string
  collection: string
  recordId: string
  local: Row | null
  remote: Row | null
  base: Row | null
  detectedAt: number
}

/** A choice for one conflict. */
export type ConflictChoice =
  | { id: string; choice: 'local' }
  | { id: string; choice: 'remote' }
  | { id: string; choice: 'merged'; value: Row }

/** The orchestrator. Every method is safe to call in any state; none throws a sync error. */
export interface SyncOrchestrator {
  /** Resolves once storage is loaded; collections are readable from then on. */
  readonly ready: Promise<void>
  readonly clientId: string
  collection<T extends Row = Row>(name: string): Collection<T>
  startSync(): void
  /** Stop background sync; in-flight work is aborted and nothing is lost. */
  stopSync(): Promise<void>
  /** Push everything queued at the call, then pull; reports why when it cannot. */
  forceSyncAll(): Promise<ForceSyncResult>
  /** Discard every queued (unsent) change; returns what was discarded. Local records keep their values. */
  clearQueue(): Promise<unknown[]>
  getSyncStatus(): SyncStatus
  getMetrics(): Promise<SyncMetrics>
  getConflicts(): PendingConflict[]
  resolveConflicts(choices: readonly ConflictChoice[]): Promise<void>
  /** Changes the server rejected for good (dead-letter queue), with SQLSTATE and message. */
  getFailed(): FailedItem[]
  /** Move failed changes (all, or these ids) back to the queue, with new sequence numbers. */
  retryFailed(ids?: readonly string[]): Promise<void>
  /** Drop failed changes (all, or these ids). */
  discardFailed(ids?: readonly string[]): Promise<void>
  /** Tell the engine the session changed (sign-in, sign-out, token refreshed elsewhere). */
  notifyAuthChange(): void
  /**
   * Quarantine every damaged persisted entry under `x/` (kept, reported), reset the pull cursor for
   * a full resync, re-queue local records that are not in sync, restart.
   */
  repairSync(): Promise<RepairReport>
  /** Coalesce the queue and compact storage where the adapter can. */
  optimizeSync(): Promise<OptimizeReport>
  subscribe(listener: (event: SyncEvent) => void): Unsubscribe
  /** Stop and release storage. */
  close(): Promise<void>
}

/** What `repairSync()` found and did. */
export interface RepairReport {
  /** Entries that could not be read, moved under `x/` (kept, never deleted). */
  quarantined: Array<{ key: string; problem: string }>
  /** Records re-queued because they were not in sync and had nothing queued. */
  requeued: number
}

/** What `optimizeSync()` did. */
export interface OptimizeReport {
  /** Queued items before and after coalescing. */
  before: number
  after: number
  /** Whether the storage adapter compacted its own layout. */
  compacted: boolean
}
