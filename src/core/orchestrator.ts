/**
 * The orchestrator: collections over a local store, a durable queue, and the push and pull loops
 * that carry changes to and from the backend.
 *
 * ```
 * app ─ write ─> transaction { record + queue item } ─> storage.commit   (returns: the UI never waits)
 *                                    │
 *         scheduler ─ runSync ─> push: nextBatch → markSent(commit) → backend.push → apply outcomes
 *                                pull: backend.pull(cursor) → apply page + cursor (one commit) → …
 * ```
 *
 * Invariants:
 * - Every state change runs inside the mutex, as one transaction (see `transaction.ts`): a local
 *   write and its queue item are stored together or not at all. No network wait happens inside.
 * - Never two sync runs at once (the scheduler guarantees it; `runSync` also guards).
 * - The push loop (`push.ts`) freezes an item before its request leaves, and sends at most one item
 *   per record per batch; its invariants are stated there.
 * - The pull cursor is stored in the same commit as the page it follows.
 * - Background failures become status, events and the logger; nothing here throws into app code
 *   except a local write whose local storage failed (the app must know its write did not happen).
 */
import type { Backend, Change, Row } from './protocol.js'
import { deleteOp, setOp, type Storage, type StorageOp } from './storage.js'
import type { Environment, Unsubscribe } from './env.js'
import { createSilentLogger, type Logger } from './logger.js'
import { AbortError, SyncError, StorageError, isAbortError } from './errors.js'
import type {
  Collection,
  CollectionConfig,
  ConflictChoice,
  ForceSyncResult,
  PendingConflict,
  Priority,
  SyncEvent,
  SyncMetrics,
  OptimizeReport,
  RepairReport,
  SyncOrchestrator,
  SyncOrchestratorOptions,
  SyncStatus,
  ScheduleOptions,
} from './types.js'
import { createMutex } from './mutex.js'
import { runTransaction, type Transaction } from './transaction.js'
import { RecordTable, loadRecordEntry, type DamagedEntry, type RecordEnvelope } from './records.js'
import { randomUuid } from './ids.js'
import { checksumOf } from './checksum.js'
import { createQueue, type Queue, type QueueItem } from './queue.js'
import { resolveConflict, stripLocalOnly, withLocalOnly, type ConflictStrategy } from './conflict.js'
import { omit } from './merge.js'
import { createHlcClock, type HlcClock } from './hlc.js'
import { createScheduler, type Scheduler, type SyncRunResult } from './scheduler.js'
import { createDefaultEnvironment } from './defaultEnvironment.js'
import { conflictSchema } from './conflictInbox.js'
import { createPushLoop, type PushLoop, type RemoteState } from './push.js'
import { APPLY_SLICE } from './slicing.js'

/** Options after defaults. */
interface Resolved {
  storage: Storage
  backend: Backend
  environment: Environment
  logger: Logger
  batchSize: number
  pullLimit: number
  schedule: ScheduleOptions
  isAuthenticated: () => boolean
  refreshAuth: (() => Promise<boolean>) | undefined
  autoStart: boolean
  collections: Map<string, ResolvedCollection>
}

/** A collection's configuration after defaults. */
export interface ResolvedCollection {
  name: string
  table: string
  primaryKey: string
  idMode: 'client' | 'server'
  priority: Priority
  conflict: ConflictStrategy
  localOnly: readonly string[]
}

/** Defaults, in one place. */
export const DEFAULTS = {
  batchSize: 1000,
  pullLimit: 500,
  schedule: { activeMs: 30_000, backgroundMs: 300_000, lowBatteryMs: 900_000, lowBatteryThreshold: 0.15, debounceMs: 250 },
  collection: { primaryKey: 'id', idMode: 'client', priority: 'normal', conflict: 'newest-wins' },
} as const

function resolveOptions(options: SyncOrchestratorOptions): Resolved {
  const collections = new Map<string, ResolvedCollection>()
  for (const [name, config] of Object.entries(options.collections)) {
    if (name.includes('/')) throw new TypeError(`collection name "${name}" must not contain "/"`)
    const c: CollectionConfig = config ?? {}
    collections.set(name, {
      name,
      table: c.table ?? name,
      primaryKey: c.primaryKey ?? DEFAULTS.collection.primaryKey,
      idMode: c.idMode ?? DEFAULTS.collection.idMode,
      priority: c.priority ?? DEFAULTS.collection.priority,
      conflict: (c.conflict as ConflictStrategy | undefined) ?? DEFAULTS.collection.conflict,
      // A `{ merge }` strategy's own local-only fields are local-only for the whole collection:
      // they must never be sent, not just be ignored when merging.
      localOnly: [...new Set([...(c.localOnly ?? []), ...mergeLocalOnly(c.conflict)])],
    })
  }
  return {
    storage: options.storage,
    backend: options.backend,
    environment: options.environment ?? createDefaultEnvironment(),
    logger: options.logger ?? createSilentLogger(),
    batchSize: Math.max(1, options.batchSize ?? DEFAULTS.batchSize),
    pullLimit: Math.max(1, options.pullLimit ?? DEFAULTS.pullLimit),
    schedule: { ...DEFAULTS.schedule, ...options.schedule },
    isAuthenticated: options.isAuthenticated ?? (() => true),
    refreshAuth: options.refreshAuth,
    autoStart: options.autoStart ?? true,
    collections,
  }
}

const META_CLIENT_ID = 'meta/clientId'
const META_FORMAT = 'meta/format'
/**
 * The layout of the store this version writes (records, queue items and their sent marks,
 * conflicts, meta). Raised whenever an earlier version would misread what this one writes; a store
 * of a higher format is refused, untouched, and one of a lower format is marked with this one when
 * opened (this version reads every earlier layout). 1: sent marks; 2: a record's base stored as
 * `'data'` when it equals its data.
 */
const STORE_FORMAT = 2
const META_CURSOR = 'meta/cursor'
const META_RESYNC = 'meta/resync'
const CONFLICT_PREFIX = 'c/'
const QUARANTINE_PREFIX = 'x/'
const RUN_WINDOW = 50

/** A stored conflict waiting for a person. */
interface StoredConflict extends PendingConflict {
  remoteVersion: number | null
  remoteDeleted: boolean
  remoteHlc: string | null
}

/** Create an orchestrator. Storage is loaded in the background; await `ready` before reading. */
export function createSyncOrchestrator(options: SyncOrchestratorOptions): SyncOrchestrator {
  const o = resolveOptions(options)
  const { storage, backend, logger, environment: env } = o
  const mutex = createMutex()
  const tables = new Map<string, RecordTable>()
  const byTable = new Map<string, ResolvedCollection>()
  for (const c of o.collections.values()) {
    tables.set(c.name, new RecordTable(c.name))
    byTable.set(c.table, c)
  }
  const serverTables = [...byTable.keys()]
  const queue: Queue = createQueue({ storage })
  const conflicts = new Map<string, StoredConflict>()
  const listeners = new Set<(event: SyncEvent) => void>()
  const collectionListeners = new Map<string, Set<() => void>>()
  const runs: Array<{ ok: boolean; ms: number }> = []
  let clientId = options.clientId ?? ''
  let clock!: HlcClock
  let cursor: string | null = null
  let resync: { seen: Set<string> } | null = null
  let damaged: DamagedEntry[] = []
  let closed = false
  let lastSyncAt: number | null = null
  let lastError: SyncStatus['lastError'] = null
  let progress: SyncStatus['progress'] = null
  let running: Promise<SyncRunResult> | null = null
  let status: SyncStatus

  // ── events ──────────────────────────────────────────────────────────────
  function emit(event: SyncEvent): void {
    for (const listener of listeners) {
      try {
        listener(event)
      } catch (error) {
        logger.error('event listener threw', { error: String(error) })
      }
    }
  }

  function notifyCollection(collection: string, ids: string[], source: 'local' | 'remote'): void {
    for (const listener of collectionListeners.get(collection) ?? []) {
      try {
        listener()
      } catch (error) {
        logger.error('collection listener threw', { error: String(error) })
      }
    }
    emit({ type: 'change', collection, ids, source })
  }

  function computeStatus(): SyncStatus {
    const counts = queue.counts()
    const s = scheduler.getState()
    const state: SyncStatus['state'] = closed ? 'stopped' : s.status
    return {
      state,
      online: env.isOnline() && s.status !== 'offline',
      queueLength: queue.size,
      pending: { creates: counts.creates, updates: counts.updates, deletes: counts.deletes },
      failed: counts.failed,
      conflicts: conflicts.size,
      lastSyncAt,
      nextSyncAt: s.nextSyncAt,
      lastError,
      progress,
    }
  }

  /** Whether two statuses say the same, field by field (every local write asks). */
  function sameStatus(a: SyncStatus, b: SyncStatus): boolean {
    return a.state === b.state && a.online === b.online && a.queueLength === b.queueLength &&
      a.pending.creates === b.pending.creates && a.pending.updates === b.pending.updates && a.pending.deletes === b.pending.deletes &&
      a.failed === b.failed && a.conflicts === b.conflicts && a.lastSyncAt === b.lastSyncAt && a.nextSyncAt === b.nextSyncAt &&
      (a.lastError === b.lastError || (a.lastError !== null && b.lastError !== null && a.lastError.kind === b.lastError.kind && a.lastError.message === b.lastError.message)) &&
      (a.progress === b.progress || (a.progress !== null && b.progress !== null && a.progress.phase === b.progress.phase &&
        a.progress.done === b.progress.done && a.progress.total === b.progress.total))
  }

  /** Recompute status; publish only when something changed, so snapshots stay stable. */
  function refreshStatus(): void {
    const next = computeStatus()
    if (status && sameStatus(next, status)) return
    status = next
    emit({ type: 'status', status })
  }

  // ── loading ─────────────────────────────────────────────────────────────
  async function loadState(): Promise<void> {
    const format = await storage.get(META_FORMAT)
    // Absent in a store older than the marker; anything but a positive integer is damage.
    const formatOk = format === undefined || (typeof format === 'number' && Number.isInteger(format) && format >= 1)
    if (formatOk && (format ?? 0) > STORE_FORMAT) {
      throw new StorageError(
        'incompatible',
        `local storage has format ${format}, written by a newer version; this version reads up to format ${STORE_FORMAT}, and left it untouched`,
      )
    }
    for (const table of tables.values()) {
      table.records.clear()
      table.aliases.clear()
      table.invalidate()
    }
    conflicts.clear()
    damaged = []
    for (const prefix of ['r/', 'a/']) {
      for (const { key, value } of await storage.scan(prefix)) {
        const problem = loadRecordEntry(tables, key, value)
        if (problem) damaged.push(problem)
      }
    }
    for (const { key, value } of await storage.scan(CONFLICT_PREFIX)) {
      const parsed = conflictSchema.safeParse(value)
      if (parsed.success) conflicts.set(parsed.data.id, parsed.data as StoredConflict)
      else damaged.push({ key, value, problem: 'invalid conflict entry' })
    }
    if (!formatOk) {
      damaged.push({ key: META_FORMAT, value: format, problem: 'unreadable store format' })
    }
    const invalidItems = await queue.load()
    for (const item of invalidItems) damaged.push(item)
    // scan() skips values an adapter cannot decode; an adapter that can list its damage tells us,
    // so those entries are reported and quarantined too instead of vanishing from view.
    const inspect = (storage as Storage & { corruption?: () => Promise<Array<{ kind: string; key?: string; found?: string; reason?: string }>> }).corruption
    if (typeof inspect === 'function') {
      for (const found of await inspect.call(storage)) {
        if (found.kind === 'entry' && typeof found.key === 'string') damaged.push({ key: found.key, value: found.found ?? null, problem: found.reason ?? 'unreadable value' })
        else logger.warn('local storage reported damage it has already dealt with', { damage: found })
      }
    }
    const [storedClientId, storedCursor, storedResync] = await storage.getMany([META_CLIENT_ID, META_CURSOR, META_RESYNC])
    if (!clientId) clientId = typeof storedClientId === 'string' ? storedClientId : ''
    const firstOps: StorageOp[] = []
    if (!clientId) {
      clientId = randomUuid()
      firstOps.push(setOp(META_CLIENT_ID, clientId))
    }
    if (formatOk && (format ?? 0) < STORE_FORMAT) firstOps.push(setOp(META_FORMAT, STORE_FORMAT))
    if (firstOps.length > 0) await storage.commit(firstOps)
    cursor = typeof storedCursor === 'string' ? storedCursor : null
    resync = storedResync === true ? { seen: new Set() } : null
    if (storedResync === true) cursor = null
    if (damaged.length > 0) {
      logger.warn('damaged entries found in storage; run repairSync()', { count: damaged.length })
      emit({ type: 'error', kind: 'storage', message: `${damaged.length} damaged entries in storage` })
    }
  }

  async function reload(error: unknown): Promise<void> {
    logger.error('storage commit failed; reloading state from storage', { error: String(error) })
    try {
      await loadState()
    } catch (reloadError) {
      logger.error('reload after failed commit failed', { error: String(reloadError) })
    }
    for (const name of tables.keys()) notifyCollection(name, [], 'local')
  }

  function transact<T>(body: (tx: Transaction) => T | Promise<T>): Promise<T> {
    // Status first, so no listener ever sees data the status does not reflect yet.
    return mutex.run(() =>
      runTransaction(
        storage,
        (tx) => {
          tx.afterCommit(refreshStatus)
          return body(tx)
        },
        reload,
      ),
    )
  }

  // ── local writes ────────────────────────────────────────────────────────
  function configOf(name: string): ResolvedCollection {
    const c = o.collections.get(name)
    if (!c) throw new TypeError(`unknown collection "${name}"`)
    return c
  }

  function tableOf(name: string): RecordTable {
    return tables.get(name)!
  }

  function enqueue(tx: Transaction, c: ResolvedCollection, recordId: string, action: QueueItem['action'], data: Row | null, hlc: string): void {
    const rec = tableOf(c.name).get(recordId)
    tx.add(
      queue.enqueue({
        action,
        entityType: c.table,
        recordId,
        localId: recordId,
        data: data === null ? null : stripLocalOnly(data, c.localOnly),
        baseVersion: rec?.version ?? null,
        hlc,
        priority: c.priority,
      }),
    )
  }

  function afterLocalWrite(tx: Transaction, c: ResolvedCollection, id: string): void {
    tx.afterCommit(() => {
      notifyCollection(c.name, [id], 'local')
      refreshStatus()
      scheduler.notifyWrite()
    })
  }

  async function insert(name: string, input: Row): Promise<Row> {
    await ready
    const c = configOf(name)
    return transact((tx) => {
      const table = tableOf(name)
      const given = input[c.primaryKey]
      const id = given === undefined || given === null ? (c.idMode === 'server' ? `local:${randomUuid()}` : randomUuid()) : String(given)
      const existing = table.get(id)
      if (existing && !existing.deleted) throw new TypeError(`${name}: a record with id "${id}" already exists`)
      const data: Row = { ...input, [c.primaryKey]: given ?? id }
      const hlc = clock.tick()
      // For a server-assigned id, the local id never goes to the server.
      const sent = c.idMode === 'server' && (given === undefined || given === null) ? omit(data, c.primaryKey) : data
      enqueue(tx, c, id, 'create', sent, hlc)
      tx.add(table.put(id, { data, base: existing?.base ?? null, version: existing?.version ?? null, deleted: false, hlc, state: 'pending' }))
      afterLocalWrite(tx, c, id)
      return data
    })
  }

  async function update(name: string, id: string, patch: Row): Promise<Row> {
    await ready
    const c = configOf(name)
    return transact((tx) => {
      const table = tableOf(name)
      const key = table.resolve(id)
      const rec = table.get(key)
      if (!rec || rec.deleted) throw new TypeError(`${name}: no record with id "${id}"`)
      const changes = omit(patch, c.primaryKey)
      const data: Row = { ...rec.data, ...changes }
      const hlc = clock.tick()
      const shared = stripLocalOnly(changes, c.localOnly)
      // A change to local-only fields alone never leaves the device.
      if (Object.keys(shared).length > 0) enqueue(tx, c, key, 'update', changes, hlc)
      const state = rec.state === 'synced' && Object.keys(shared).length === 0 ? 'synced' : rec.state === 'conflict' ? 'conflict' : 'pending'
      tx.add(table.put(key, { ...rec, data, hlc, state }))
      afterLocalWrite(tx, c, key)
      return data
    })
  }

  async function remove(name: string, id: string): Promise<void> {
    await ready
    const c = configOf(name)
    await transact((tx) => {
      const table = tableOf(name)
      const key = table.resolve(id)
      const rec = table.get(key)
      if (!rec || rec.deleted) return
      const hlc = clock.tick()
      const before = queue.pendingCount(c.table, key)
      enqueue(tx, c, key, 'delete', null, hlc)
      const after = queue.pendingCount(c.table, key)
      if (rec.version === null && after === 0 && before > 0) {
        // create + delete before push: nothing reaches the server; forget the record.
        tx.add(table.remove(key))
      } else {
        tx.add(table.put(key, { ...rec, deleted: true, hlc, state: 'pending' }))
      }
      afterLocalWrite(tx, c, key)
    })
  }

  function makeCollection<T extends Row>(name: string): Collection<T> {
    configOf(name)
    return {
      name,
      insert: (row) => insert(name, row as Row) as Promise<T>,
      update: (id, patch) => update(name, id, patch as Row) as Promise<T>,
      delete: (id) => remove(name, id),
      get: (id) => {
        const rec = tableOf(name).get(id)
        return rec && !rec.deleted ? (rec.data as T) : undefined
      },
      list: (filter) => tableOf(name).list(filter as ((row: Row) => boolean) | undefined) as readonly T[],
      syncState: (id) => tableOf(name).get(id)?.state,
      subscribe: (listener) => {
        let set = collectionListeners.get(name)
        if (!set) collectionListeners.set(name, (set = new Set()))
        set.add(listener)
        return () => set!.delete(listener)
      },
    }
  }

  // ── conflict resolution (shared by push and pull) ──────────────────────
  /**
   * Resolve a conflict between the record's local state and `remote`, inside `tx`. Unsent queued
   * items of the record are replaced by whatever the resolution needs to send; sent ones stay (the
   * server may have them) and will conflict again if stale.
   */
  function resolveRecord(tx: Transaction, c: ResolvedCollection, key: string, rec: RecordEnvelope, remote: RemoteState, drop: readonly number[]): void {
    const table = tableOf(c.name)
    const queued = queue.pendingFor(c.table, key)
    const lastLocal = queued.at(-1)
    const local = { row: rec.deleted ? null : stripLocalOnly(rec.data, c.localOnly), hlc: lastLocal?.hlc ?? rec.hlc, deleted: rec.deleted }
    const remoteRow = remote.row === null ? null : stripLocalOnly(remote.row, c.localOnly)
    const result = resolveConflict({
      strategy: c.conflict,
      local,
      remote: { row: remote.deleted ? null : remoteRow, hlc: remote.hlc, deleted: remote.deleted || remote.row === null },
      base: rec.base,
      table: c.table,
      id: key,
      localOnly: c.localOnly,
    })
    const replaced = [...drop, ...queued.filter((i) => !i.sent).map((i) => i.seq)]
    const strategyName = typeof c.conflict === 'string' ? c.conflict : typeof c.conflict === 'function' ? 'custom' : 'merge'
    tx.afterCommit(() => emit({ type: 'conflict', collection: c.name, id: key, strategy: strategyName }))
    const remoteGone = remote.deleted || remote.row === null
    const base = remoteGone ? null : remoteRow
    if (result.outcome === 'failed') {
      logger.error('conflict resolver failed; keeping the conflict for a person', { collection: c.name, id: key, error: result.error.message })
    }
    if (result.outcome === 'ask-user' || result.outcome === 'failed') {
      if (replaced.length) tx.add(queue.ack(dedupe(replaced)))
      const existing = [...conflicts.values()].find((x) => x.collection === c.name && x.recordId === key)
      const entry: StoredConflict = {
        id: existing?.id ?? randomUuid(),
        collection: c.name,
        recordId: key,
        local: rec.deleted ? null : rec.data,
        remote: remoteGone ? null : remote.row,
        base: rec.base,
        detectedAt: existing?.detectedAt ?? env.now(),
        remoteVersion: remote.version,
        remoteDeleted: remote.deleted,
        remoteHlc: remote.hlc,
      }
      tx.write(setOp(CONFLICT_PREFIX + entry.id, entry))
      tx.add({ ops: [], apply: () => void conflicts.set(entry.id, entry) })
      tx.add(table.put(key, { ...rec, version: remote.version ?? rec.version, state: 'conflict' }))
      return
    }
    if (replaced.length) tx.add(queue.ack(dedupe(replaced)))
    const stillSent = queue.pendingFor(c.table, key)
    if (result.outcome === 'keep-remote') {
      if (remoteGone && stillSent.length === 0) tx.add(table.remove(key))
      else if (remoteGone) tx.add(table.put(key, { ...rec, base: null, version: remote.version, deleted: true, state: 'pending' }))
      else {
        tx.add(table.put(key, { data: withLocalOnly(remote.row!, rec.data, c.localOnly), base, version: remote.version, deleted: false, hlc: remote.hlc, state: stillSent.length ? 'pending' : 'synced' }))
      }
      return
    }
    const hlc = clock.tick()
    tx.add(table.put(key, { ...rec, base, version: remote.version }))
    if (result.outcome === 'delete') {
      if (remoteGone && stillSent.length === 0) {
        tx.add(table.remove(key))
        return
      }
      if (!remoteGone) enqueue(tx, c, key, 'delete', null, hlc)
      tx.add(table.put(key, { ...rec, base, version: remote.version, deleted: true, hlc, state: 'pending' }))
      return
    }
    // write: send the resolved row on top of the remote version (a create when the server has none).
    const row = withLocalOnly(result.row, rec.data, c.localOnly)
    const action = remote.version === null ? 'create' : 'update'
    const payload = action === 'create' ? row : diff(stripLocalOnly(result.row, c.localOnly), remoteGone ? null : remoteRow)
    if (action === 'create' || Object.keys(payload).length > 0 || remote.deleted) enqueue(tx, c, key, action, action === 'create' ? row : withPk(payload, c, key), hlc)
    const pendingNow = queue.pendingCount(c.table, key)
    tx.add(table.put(key, { data: row, base, version: remote.version, deleted: false, hlc, state: pendingNow ? 'pending' : 'synced' }))
  }

  // ── push ────────────────────────────────────────────────────────────────
  const pushLoop: PushLoop = createPushLoop({
    queue,
    backend,
    // (The clock and the client id are known once storage is loaded.)
    receiveStamp: (stamp) => void clock.receive(stamp),
    logger,
    batchSize: o.batchSize,
    clientId: () => clientId,
    now: () => env.now(),
    collectionOf: (table) => byTable.get(table),
    tableOf,
    transact,
    yieldToHost,
    resolveRecord,
    notifyCollection,
    emit,
    progress: (done, total) => {
      progress = { phase: 'push', done, total }
      refreshStatus()
    },
  })

  // ── pull ────────────────────────────────────────────────────────────────
  async function pullAll(signal: AbortSignal): Promise<number> {
    let pulled = 0
    // Whether the page that ended the stream said rows after it are held back (see PullResult).
    let pending = false
    for (;;) {
      if (signal.aborted) throw new AbortError()
      // The echoes of this instance's own pushes are left out, but never in a resync, which must
      // see every row to know which local records the server no longer has.
      const request = { tables: serverTables, cursor, limit: o.pullLimit }
      const page = await backend.pull(resync ? request : { ...request, skipNode: clock.nodeId }, { signal })
      if (page.reset) {
        await transact((tx) => {
          tx.write(setOp(META_RESYNC, true), deleteOp(META_CURSOR))
          tx.add({ ops: [], apply: () => { cursor = null; resync = { seen: new Set() } } })
        })
        logger.info('pull cursor is older than the retention horizon; resyncing from scratch')
        continue
      }
      if (page.changes.length > 0 || page.cursor !== cursor) {
        // In slices; the cursor moves with the last one.
        for (let from = 0; from === 0 || from < page.changes.length; from += APPLY_SLICE) {
          await yieldToHost()
          const to = Math.min(page.changes.length, from + APPLY_SLICE)
          await transact((tx) => {
            const touched = new Map<string, string[]>()
            for (let i = from; i < to; i++) applyChange(tx, page.changes[i]!, touched)
            if (to === page.changes.length) {
              tx.write(page.cursor === null ? deleteOp(META_CURSOR) : setOp(META_CURSOR, page.cursor))
              tx.add({ ops: [], apply: () => void (cursor = page.cursor) })
            }
            tx.afterCommit(() => {
              for (const [name, ids] of touched) notifyCollection(name, ids, 'remote')
            })
          })
        }
      }
      pulled += page.changes.length
      progress = { phase: 'pull', done: pulled, total: null }
      refreshStatus()
      if (!page.hasMore) {
        pending = page.pending === true
        break
      }
      await yieldToHost()
    }
    // A resync concludes which records the server no longer has only once it has seen every row:
    // with rows held back, it goes on from its cursor in the next sync.
    if (resync && !pending) await finishResync()
    else if (resync) logger.debug('resync waits for rows the server holds back')
    if (pulled) emit({ type: 'pulled', changes: pulled })
    return pulled
  }

  /** After a full resync, synced records the server no longer has were purged there: drop them. */
  async function finishResync(): Promise<void> {
    const seen = resync!.seen
    await transact((tx) => {
      for (const c of o.collections.values()) {
        const table = tableOf(c.name)
        for (const [key, rec] of table.records) {
          if (rec.state === 'synced' && rec.version !== null && !seen.has(`${c.table}\u0000${key}`)) tx.add(table.remove(key))
        }
      }
      tx.write(deleteOp(META_RESYNC))
      tx.add({ ops: [], apply: () => void (resync = null) })
    })
  }

  function applyChange(tx: Transaction, change: Change, touched: Map<string, string[]>): void {
    const c = byTable.get(change.table)
    if (!c) return
    const table = tableOf(c.name)
    const key = table.resolve(change.id)
    resync?.seen.add(`${c.table}\u0000${key}`)
    const rec = table.get(key)
    // Already held (e.g. the echo of our own write): its stamp was received with it.
    if (rec && rec.version !== null && change.version <= rec.version) return
    if (change.hlc) clock.receive(change.hlc)
    const mark = (): void => {
      const ids = touched.get(c.name) ?? []
      ids.push(key)
      touched.set(c.name, ids)
    }
    // (The decoded row is this change's own: with no local-only fields it is kept as it is, as
    // both data and base of a record it leaves synced.)
    const remoteRow = c.localOnly.length > 0 ? stripLocalOnly(change.row, c.localOnly) : change.row
    if (!rec) {
      if (change.deleted) return
      tx.add(table.put(key, { data: c.localOnly.length > 0 ? { ...change.row } : change.row, base: remoteRow, version: change.version, deleted: false, hlc: change.hlc, state: 'synced' }))
      return mark()
    }
    if (rec.state === 'conflict') {
      const entry = [...conflicts.values()].find((x) => x.collection === c.name && x.recordId === key)
      if (entry) {
        const next: StoredConflict = { ...entry, remote: change.deleted ? null : change.row, remoteVersion: change.version, remoteDeleted: change.deleted, remoteHlc: change.hlc }
        tx.write(setOp(CONFLICT_PREFIX + entry.id, next))
        tx.add({ ops: [], apply: () => void conflicts.set(entry.id, next) })
      }
      tx.add(table.put(key, { ...rec, version: change.version }))
      return mark()
    }
    const queued = queue.pendingFor(c.table, key)
    if (queued.length === 0) {
      if (change.deleted) tx.add(table.remove(key))
      else tx.add(table.put(key, { data: c.localOnly.length > 0 ? withLocalOnly(change.row, rec.data, c.localOnly) : change.row, base: remoteRow, version: change.version, deleted: false, hlc: change.hlc, state: 'synced' }))
      return mark()
    }
    if (change.hlc !== null && queued.some((i) => i.sent && i.hlc === change.hlc)) {
      // Our own write, applied by the server but its answer lost: it is the new base.
      tx.add(table.put(key, { ...rec, base: remoteRow, version: change.version }))
      return
    }
    resolveRecord(tx, c, key, rec, { row: change.row, version: change.version, deleted: change.deleted, hlc: change.hlc }, [])
    mark()
  }

  // ── sync runs ───────────────────────────────────────────────────────────
  /**
   * Give the host a turn between batches so rendering and input are never held up. Host timers,
   * not the environment's: a virtual-time environment must not stall a running sync.
   */
  async function yieldToHost(): Promise<void> {
    if (env.yieldToHost) return env.yieldToHost()
    const host = globalThis as { scheduler?: { yield?: () => Promise<void> } }
    if (typeof host.scheduler?.yield === 'function') return host.scheduler.yield()
    await new Promise<void>((resolve) => globalThis.setTimeout(resolve, 0))
  }

  async function runSync(ctx: { highPriorityOnly: boolean; signal: AbortSignal }): Promise<SyncRunResult> {
    if (running) return running
    const started = env.now()
    const run = (async (): Promise<SyncRunResult> => {
      try {
        await ready
        const pushed = await pushLoop.pushAll(ctx.signal, ctx.highPriorityOnly)
        const pulled = await pullAll(ctx.signal)
        lastSyncAt = env.now()
        lastError = null
        record(true, started)
        return { ok: true, didWork: pushed + pulled > 0 }
      } catch (error) {
        record(false, started)
        if (isAbortError(error) || ctx.signal.aborted) return { ok: false, error: new SyncError('network', 'sync aborted', { cause: error }) }
        const syncError =
          error instanceof SyncError ? error
          : error instanceof StorageError ? new SyncError('permanent', `local storage failed: ${error.message}`, { cause: error })
          : new SyncError('permanent', `internal error: ${String(error)}`, { cause: error })
        lastError = { kind: error instanceof StorageError ? 'storage' : error instanceof SyncError ? syncError.kind : 'internal', message: syncError.message }
        if (!(error instanceof SyncError)) logger.error('sync run failed', { error: String(error), stack: (error as Error)?.stack })
        else logger.warn('sync run failed', { kind: syncError.kind, message: syncError.message })
        emit({ type: 'error', kind: syncError.kind, message: syncError.message })
        return { ok: false, error: syncError }
      } finally {
        progress = null
      }
    })()
    running = run
    try {
      return await run
    } finally {
      running = null
      refreshStatus()
    }
  }

  function record(ok: boolean, started: number): void {
    runs.push({ ok, ms: env.now() - started })
    if (runs.length > RUN_WINDOW) runs.shift()
  }

  const scheduler: Scheduler = createScheduler({
    env,
    runSync: (ctx) => runSync(ctx),
    hasPendingWork: () => queue.size > 0,
    hasHighPriorityWork: () => queue.nextBatch({ limit: 1, minPriority: 'high' }).length > 0,
    isAuthenticated: o.isAuthenticated,
    refreshAuth: o.refreshAuth,
    intervals: { activeMs: o.schedule.activeMs, backgroundMs: o.schedule.backgroundMs, lowBatteryMs: o.schedule.lowBatteryMs },
    lowBatteryThreshold: o.schedule.lowBatteryThreshold,
    debounceMs: o.schedule.debounceMs,
    logger,
  })
  scheduler.subscribe(() => refreshStatus())

  // ── commands ────────────────────────────────────────────────────────────
  async function forceSyncAll(): Promise<ForceSyncResult> {
    await ready
    if (closed) return { ok: false, reason: 'stopped', message: 'the orchestrator is closed' }
    // What was queued at the call: seqs only grow, and a later write folded into one of these items
    // goes out with it.
    const queued = queue.size
    const lastQueued = queue.lastSeq
    let pulled = 0
    // A run may have started before the call; a few runs drain what was queued at the call.
    for (let attempt = 0; attempt < 5; attempt++) {
      const result = await scheduler.requestSync('manual')
      if ('skipped' in result) {
        const reason = result.skipped
        return { ok: false, reason, message: reason === 'offline' ? 'the device is offline' : reason === 'unauthenticated' ? 'no session' : 'sync is stopped' }
      }
      if (!result.ok) {
        const reason = result.error.kind === 'auth' ? 'unauthenticated' : result.error.kind === 'network' ? 'offline' : 'error'
        return { ok: false, reason, message: result.error.message }
      }
      pulled += result.didWork ? 1 : 0
      let left = false
      queue.scanInDeliveryOrder((item) => {
        if (item.seq > lastQueued || isHeld(item)) return true
        left = true
        return false
      })
      if (!left) return { ok: true, pushed: queued, pulled }
    }
    return { ok: false, reason: 'error', message: 'queued changes did not drain after repeated syncs' }
  }

  function isHeld(item: QueueItem): boolean {
    const c = byTable.get(item.entityType)
    return !!c && tableOf(c.name).get(item.recordId)?.state === 'conflict'
  }

  async function clearQueue(): Promise<unknown[]> {
    await ready
    return transact((tx) => {
      const plan = queue.clear({ includeSent: true })
      const discarded = plan.discarded
      tx.add(plan)
      // Records roll back to the last state the server confirmed.
      const touched = new Map<string, string[]>()
      for (const item of discarded) {
        const c = byTable.get(item.entityType)
        if (!c) continue
        const table = tableOf(c.name)
        const rec = table.get(item.recordId)
        if (!rec || rec.state === 'conflict') continue
        if (rec.base === null) tx.add(table.remove(item.recordId))
        else tx.add(table.put(item.recordId, { data: withLocalOnly(rec.base, rec.data, c.localOnly), base: rec.base, version: rec.version, deleted: false, hlc: rec.hlc, state: 'synced' }))
        touched.set(c.name, [...(touched.get(c.name) ?? []), item.recordId])
      }
      tx.afterCommit(() => {
        // A discarded item that was sent may have been applied, its answer never seen: rows this
        // node stamped are no longer all held here, so its pulls must not leave them out.
        if (discarded.some((item) => item.sent)) clock = createHlcClock({ nodeId: newNodeId(), now: () => env.now(), last: clock.peek() })
        for (const [name, ids] of touched) notifyCollection(name, ids, 'local')
        refreshStatus()
      })
      return discarded as unknown[]
    })
  }

  async function resolveConflicts(choices: readonly ConflictChoice[]): Promise<void> {
    await ready
    await transact((tx) => {
      for (const choice of choices) {
        const entry = conflicts.get(choice.id)
        if (!entry) continue
        const c = configOf(entry.collection)
        const table = tableOf(c.name)
        const rec = table.get(entry.recordId)
        tx.write(deleteOp(CONFLICT_PREFIX + entry.id))
        tx.add({ ops: [], apply: () => void conflicts.delete(entry.id) })
        if (!rec) continue
        const queued = queue.pendingFor(c.table, entry.recordId).filter((i) => !i.sent)
        if (queued.length) tx.add(queue.ack(queued.map((i) => i.seq)))
        const remoteRow = entry.remoteDeleted || entry.remote === null ? null : stripLocalOnly(entry.remote, c.localOnly)
        // A merged value keeps the device's local-only fields unless it sets them itself.
        const chosen: Row | null = choice.choice === 'remote' ? (remoteRow ? withLocalOnly(remoteRow, rec.data, c.localOnly) : null) : choice.choice === 'local' ? (rec.deleted ? null : rec.data) : { ...withLocalOnly(choice.value, rec.data, c.localOnly), ...choice.value, [c.primaryKey]: rec.data[c.primaryKey] }
        const hlc = clock.tick()
        const base = remoteRow
        if (choice.choice === 'remote') {
          if (chosen === null) tx.add(table.remove(entry.recordId))
          else tx.add(table.put(entry.recordId, { data: chosen, base, version: entry.remoteVersion, deleted: false, hlc: entry.remoteHlc, state: 'synced' }))
        } else if (chosen === null) {
          tx.add(table.put(entry.recordId, { ...rec, base, version: entry.remoteVersion, deleted: true, hlc, state: 'pending' }))
          if (remoteRow) enqueue(tx, c, entry.recordId, 'delete', null, hlc)
          else tx.add(table.remove(entry.recordId))
        } else {
          tx.add(table.put(entry.recordId, { data: chosen, base, version: entry.remoteVersion, deleted: false, hlc, state: 'pending' }))
          const action = entry.remoteVersion === null ? 'create' : 'update'
          enqueue(tx, c, entry.recordId, action, action === 'create' ? chosen : withPk(omit(chosen, c.primaryKey), c, entry.recordId), hlc)
        }
        tx.afterCommit(() => notifyCollection(c.name, [entry.recordId], 'local'))
      }
      tx.afterCommit(() => {
        refreshStatus()
        scheduler.notifyWrite()
      })
    })
  }

  async function getMetrics(): Promise<SyncMetrics> {
    await ready
    const counts = queue.counts()
    const s = scheduler.getState()
    const ok = runs.filter((r) => r.ok).length
    return {
      queueLength: queue.size,
      pendingCreates: counts.creates,
      pendingUpdates: counts.updates,
      pendingDeletes: counts.deletes,
      failedItems: counts.failed,
      conflicts: conflicts.size,
      lastSyncAt,
      nextSyncAt: s.nextSyncAt,
      successRate: runs.length ? ok / runs.length : 1,
      averageSyncMs: runs.length ? runs.reduce((a, r) => a + r.ms, 0) / runs.length : null,
      dataInSync: await verifyInSync(),
    }
  }

  /** Compare per-table checksums of what the device holds as synced with the server's. */
  async function verifyInSync(): Promise<boolean | null> {
    if (!env.isOnline()) return null
    try {
      const remote = await backend.checksum(serverTables)
      if (queue.size > 0 || conflicts.size > 0) return false
      for (const r of remote) {
        const c = byTable.get(r.table)
        if (!c) continue
        const entries: Array<{ id: string; version: number }> = []
        for (const [key, rec] of tableOf(c.name).records) {
          if (rec.deleted || rec.version === null) return false
          entries.push({ id: key, version: rec.version })
        }
        const local = checksumOf(entries)
        if (local.count !== r.count || local.checksum !== r.checksum) return false
      }
      return true
    } catch (error) {
      logger.warn('could not verify sync state with the server', { error: String(error) })
      return null
    }
  }

  async function repairSync(): Promise<RepairReport> {
    await ready
    await scheduler.stop()
    const report = await mutex.run(async () => {
      const quarantined: DamagedEntry[] = [...damaged]
      // Items a sent mark counts for are written whole first: a damaged mark quarantined below
      // would otherwise leave them looking unsent.
      const ops: StorageOp[] = [...queue.settle().ops]
      for (const d of quarantined) {
        ops.push(setOp(QUARANTINE_PREFIX + d.key, { key: d.key, value: safeJson(d.value), problem: d.problem, at: env.now() }))
        ops.push(deleteOp(d.key))
      }
      ops.push(deleteOp(META_CURSOR), setOp(META_RESYNC, true))
      await storage.commit(ops)
      await loadState()
      return { quarantined: quarantined.map((d) => ({ key: d.key, problem: d.problem })) }
    })
    // Rebuild: every record that is not in sync and has nothing queued gets a fresh change.
    let requeued = 0
    await transact((tx) => {
      for (const c of o.collections.values()) {
        const table = tableOf(c.name)
        for (const [key, rec] of table.records) {
          if (rec.state === 'synced' || rec.state === 'conflict' || queue.pendingCount(c.table, key) > 0) continue
          const hlc = clock.tick()
          if (rec.deleted) {
            if (rec.version === null) tx.add(table.remove(key))
            else enqueue(tx, c, key, 'delete', null, hlc)
          } else if (rec.version === null) enqueue(tx, c, key, 'create', rec.data, hlc)
          else enqueue(tx, c, key, 'update', withPk(diff(stripLocalOnly(rec.data, c.localOnly), rec.base), c, key), hlc)
          requeued++
        }
      }
    })
    for (const name of tables.keys()) notifyCollection(name, [], 'local')
    if (!closed) scheduler.start()
    refreshStatus()
    return { ...report, requeued }
  }

  async function optimizeSync(): Promise<OptimizeReport> {
    await ready
    const before = queue.size
    const plan = queue.optimize ? queue.optimize() : null
    if (plan) await transact((tx) => tx.add(plan))
    const compact = (storage as Storage & { compact?: () => Promise<void> }).compact
    if (compact) await compact.call(storage)
    refreshStatus()
    return { before, after: queue.size, compacted: !!compact }
  }

  // ── lifecycle ───────────────────────────────────────────────────────────
  const ready: Promise<void> = (async () => {
    await loadState()
    clock = createHlcClock({ nodeId: newNodeId(), now: () => env.now() })
    for (const table of tables.values()) for (const rec of table.records.values()) if (rec.hlc) clock.receive(rec.hlc)
    refreshStatus()
    if (o.autoStart && !closed) scheduler.start()
  })()
  ready.catch((error) => {
    logger.error('loading local state failed', { error: String(error) })
    lastError = { kind: 'storage', message: String(error) }
  })
  status = {
    state: 'idle', online: env.isOnline(), queueLength: 0, pending: { creates: 0, updates: 0, deletes: 0 }, failed: 0, conflicts: 0,
    lastSyncAt: null, nextSyncAt: null, lastError: null, progress: null,
  }

  return {
    ready,
    get clientId() {
      return clientId
    },
    collection: <T extends Row>(name: string) => makeCollection<T>(name),
    startSync: () => {
      if (!closed) void ready.then(() => scheduler.start())
    },
    stopSync: async () => {
      await scheduler.stop()
      refreshStatus()
    },
    forceSyncAll,
    clearQueue,
    getSyncStatus: () => status,
    getMetrics,
    getConflicts: () => [...conflicts.values()].map(({ remoteVersion: _v, remoteDeleted: _d, remoteHlc: _h, ...rest }) => rest),
    resolveConflicts,
    repairSync,
    optimizeSync,
    getFailed: () => queue.failed(),
    notifyAuthChange: () => {
      scheduler.notifyAuthChange()
      refreshStatus()
    },
    retryFailed: async (ids?: readonly string[]) => {
      await transact((tx) => tx.add(queue.retryFailed(ids)))
      refreshStatus()
      scheduler.notifyWrite()
    },
    discardFailed: async (ids?: readonly string[]) => {
      await transact((tx) => tx.add(queue.discardFailed(ids)))
      refreshStatus()
    },
    subscribe: (listener) => {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    close: async () => {
      closed = true
      await scheduler.stop()
      await mutex.run(() => undefined)
      await storage.close()
      refreshStatus()
    },
  } as SyncOrchestrator
}

/** The `localOnly` list of a `{ merge: { localOnly } }` strategy (none for other strategies). */
function mergeLocalOnly(strategy: unknown): readonly string[] {
  if (strategy === null || typeof strategy !== 'object') return []
  const list = (strategy as { merge?: { localOnly?: unknown } }).merge?.localOnly
  return Array.isArray(list) ? list.filter((f): f is string => typeof f === 'string') : []
}

/**
 * A fresh HLC node id for this instance's clock (12 hex digits, random). Rows on the server stamped
 * with it are exactly the ones this instance pushed and got an answer for (or will: a sent item is
 * sent again until answered), which is what lets its pulls leave them out. So it is new for every
 * instance, never persisted (a restored or copied storage must not inherit it), and renewed when
 * sent items are discarded without an answer.
 */
function newNodeId(): string {
  return randomUuid().replace(/-/g, '').slice(0, 12)
}

function withPk(row: Row, c: ResolvedCollection, key: string): Row {
  return c.idMode === 'server' ? row : { ...row, [c.primaryKey]: row[c.primaryKey] ?? key }
}

/** Fields of `next` that differ from `base` (all of them when there is no base). */
function diff(next: Row, base: Row | null): Row {
  if (!base) return { ...next }
  const out: Row = {}
  for (const [k, v] of Object.entries(next)) if (JSON.stringify(v) !== JSON.stringify(base[k])) out[k] = v
  return out
}

function dedupe(xs: number[]): number[] {
  return [...new Set(xs)]
}

function safeJson(value: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(value ?? null))
  } catch {
    return String(value)
  }
}

export type { Unsubscribe }
