/**
 * The durable mutation queue: every local change waiting for the server, in the order it must go.
 *
 * The queue never commits by itself. Each mutating method returns a {@link QueuePlan}: the storage
 * ops to put in the caller's single `storage.commit` (next to the record write they belong with)
 * and `apply()`, which updates the in-memory index. A plan describes a change to the state the
 * queue had when the plan was made; applying it after another plan has been applied throws
 * {@link StaleQueuePlanError} rather than corrupting the index. If a commit fails after `apply()`
 * ran (or succeeds without it), memory and storage disagree: call `load()` again.
 *
 * Invariants:
 * - Once a plan's ops are committed and `apply()` has run, a fresh queue loaded from the same
 *   storage equals this one.
 * - `seq` is strictly increasing and never reused: `meta/nextSeq` is written in the same commit as
 *   each new item and never decreases; `load()` resumes after the highest seq it finds anywhere.
 * - Within one record, items are delivered in seq order. Across records, by the record's
 *   effective priority (the highest priority among its queued items), then by seq. A high item
 *   queued behind a low item of the same record cannot overtake it, so the low item is promoted
 *   with it instead of blocking it (no priority inversion); with `minPriority: 'high'` such a
 *   record goes out whole.
 * - A sent item's content (seq, action, data, baseVersion) never changes: the server may already
 *   have applied it under its seq. Only bookkeeping (attempts, lastAttempt, error) and addressing
 *   (recordId and remoteId, by `remap`) change afterwards.
 * - Coalescing only ever touches the last item of a record, and only while it is unsent.
 * - Storage cost of an enqueue is at most two ops, of `markSent` one op (a {@link SentMark} for the
 *   whole call, instead of each item written whole); each in-memory operation is O(log n) plus the
 *   length of the one record's own queue, which coalescing keeps short.
 * - A sent mark lives exactly as long as an item it counts for: the commit that writes the last of
 *   them whole, or removes it, deletes the mark.
 */
import type { MutationAction, Row } from './protocol.js'
import { deleteOp, setOp, type Storage, type StorageEntry, type StorageOp } from './storage.js'
import { mapPacked } from './arrays.js'
import type { Priority } from './types.js'
import { createSilentLogger, type Logger } from './logger.js'
import {
  MAX_SEQ,
  failedItemSchema,
  queueItemSchema,
  sentMarkSchema,
  seqKey,
  seqOfKey,
  type FailedItem,
  type QueueError,
  type QueueItem,
  type SentMark,
} from './queueItem.js'
import { SortedNumberSet, insertSorted, removeSorted } from './sortedNumberSet.js'
import { RecordMap } from './recordMap.js'

export type { FailedItem, QueueError, QueueItem, SentMark } from './queueItem.js'

/** Options of {@link createQueue}. */
export interface QueueOptions {
  storage: Storage
  /** Key prefix of queued items (default `q/`). */
  prefix?: string
  /** Key prefix of dead-letter items (default `f/`). */
  failedPrefix?: string
  /** Key prefix of sent marks, the records `markSent` writes (default `s/`). */
  markPrefix?: string
  /** Key of the sequence counter (default `meta/nextSeq`). */
  counterKey?: string
  /** Clock for timestamps (default `Date.now`). */
  now?: () => number
  /** Where load-time findings that need no repair are reported. */
  logger?: Logger
}

/** A change to the queue: ops for the caller's commit, and the in-memory effect to run after it. */
export interface QueuePlan {
  /** Storage ops; put them in the same `commit` as the writes they belong with. */
  ops: StorageOp[]
  /**
   * Update the in-memory queue. Call once the ops are committed (or, in a transaction that
   * reloads on failure, as soon as the plan is made). A second call does nothing.
   */
  apply(): void
}

/** What {@link Queue.enqueue} will do. */
export interface EnqueuePlan extends QueuePlan {
  /**
   * `appended`: a new item; `coalesced`: folded into the record's last unsent item;
   * `cancelled`: a delete that cancelled the record's unsent create (nothing reaches the server).
   */
  outcome: 'appended' | 'coalesced' | 'cancelled'
  /** The item as it will be stored; `null` when cancelled. */
  item: QueueItem | null
  /** Items removed by a cancellation. */
  cancelled: QueueItem[]
}

/** What {@link Queue.markSent} will do. */
export interface MarkSentPlan extends QueuePlan {
  /** The items as marked: build the request from these, not from items picked earlier. */
  items: QueueItem[]
}

/** A plan that removes items. */
export interface RemovePlan extends QueuePlan {
  removed: QueueItem[]
}

/** What {@link Queue.fail} will do. */
export interface FailPlan extends QueuePlan {
  /** The dead-letter item; `null` when the seq was not queued. */
  item: FailedItem | null
}

/** What {@link Queue.retryFailed} will do. */
export interface RetryPlan extends QueuePlan {
  /** The items put back, each with a new seq. */
  retried: QueueItem[]
}

/** A plan that discards items (queued or dead-letter). */
export interface DiscardPlan<T extends QueueItem = QueueItem> extends QueuePlan {
  discarded: T[]
}

/** What {@link Queue.optimize} will do. */
export interface OptimizePlan extends QueuePlan {
  /** How many items disappear by coalescing. */
  removed: number
}

/** A new change for {@link Queue.enqueue}. */
export interface EnqueueInput {
  action: MutationAction
  entityType: string
  recordId: string
  /** Default: `recordId`. */
  localId?: string
  /** Default `null`. */
  remoteId?: string | null
  /** create: the full row; update: changed fields; delete: `null`. */
  data: Row | null
  /** Default `null`. */
  baseVersion?: number | null
  hlc: string
  /** Default `normal`. */
  priority?: Priority
  /** Default: the queue's clock. */
  timestamp?: number
}

/** Options of {@link Queue.nextBatch}. */
export interface NextBatchOptions {
  /** Most items to return. */
  limit: number
  /** Only records whose effective priority is at least this (default `low`: everything). */
  minPriority?: Priority
}

/** Options of {@link Queue.markSent}. */
export interface MarkSentOptions {
  /** Attempt time (default: the queue's clock). */
  now?: number
  /** Base version to freeze per seq, for items being sent for the first time. */
  baseVersions?: ReadonlyMap<number, number | null>
}

/** A place in delivery order: the priority class (0 = high) and the seq within it. */
export interface DeliveryPosition {
  rank: number
  seq: number
}

/** Queue figures. */
export interface QueueCounts {
  creates: number
  updates: number
  deletes: number
  /** Dead-letter items. */
  failed: number
}

/** An entry found in storage that could not be loaded; it is left in place for repair. */
export interface QueueLoadProblem {
  key: string
  value: unknown
  problem: string
}

/** The queue. Queries are synchronous from memory; mutations return plans. */
export interface Queue {
  /**
   * (Re)build the in-memory index from storage. Returns the entries that could not be used: they
   * are not loaded, not dropped, and their seqs are never handed out again.
   */
  load(): Promise<QueueLoadProblem[]>
  /** Number of queued items (dead-letter items excluded). */
  readonly size: number
  /**
   * The highest seq handed out so far (0 before the first). Every item queued now has a seq at most
   * this; items queued later, and items put back by `retryFailed`, get higher ones.
   */
  readonly lastSeq: number
  /** Queue a change, coalescing it into the record's last item when that item was never sent. */
  enqueue(input: EnqueueInput): EnqueuePlan
  /** Items to push next: by effective priority then seq across records, FIFO within a record. */
  nextBatch(options: NextBatchOptions): QueueItem[]
  /**
   * Queued items in delivery order (as {@link nextBatch}), read lazily; with `after`, only those
   * after that position (see {@link deliveryPosition}). Do not change the queue while reading.
   * Resuming after a change is safe for per-record order: a record's items move between priority
   * classes together, so a resumed read either sees all of a record's unread items or none.
   */
  inDeliveryOrder(minPriority?: Priority, after?: DeliveryPosition): IterableIterator<QueueItem>
  /**
   * Calls `visit` with queued items in delivery order, as {@link inDeliveryOrder} yields them,
   * until it returns false; cheaper per item than the iterator. Do not change the queue meanwhile.
   */
  scanInDeliveryOrder(visit: (item: QueueItem) => boolean | void, minPriority?: Priority, after?: DeliveryPosition): void
  /** Where a queued item stands in delivery order now (undefined when it is not queued). */
  deliveryPosition(seq: number): DeliveryPosition | undefined
  /** Record that these items are being handed to the server (freezes them; counts an attempt). */
  markSent(items: ReadonlyArray<number | Pick<QueueItem, 'seq'>>, options?: MarkSentOptions): MarkSentPlan
  /** Remove items the server has answered for. Unknown seqs are ignored. */
  ack(seqs: readonly number[]): RemovePlan
  /** Move an item to the dead-letter store with the reason. */
  fail(seq: number, error: QueueError, options?: { now?: number }): FailPlan
  /**
   * Keep a transient failure on the items, in place. Attempts are counted by `markSent`, when the
   * attempt is made, so this does not count again.
   */
  recordError(seqs: number | readonly number[], error: QueueError): QueuePlan
  /** Set the base version of the record's unsent updates and deletes (creates keep theirs). */
  rebase(entityType: string, recordId: string, baseVersion: number | null): QueuePlan
  /**
   * The server assigned `remoteId` to the record queued as `localId`: its queued and dead-letter
   * items get `remoteId`, and its queue is re-keyed to `remoteId` (so later writes, made under the
   * remote id, line up behind them). `localId` on the items keeps the local id.
   */
  remap(entityType: string, localId: string, remoteId: string): QueuePlan
  /** Dead-letter items, by seq. */
  failed(): FailedItem[]
  /**
   * Put dead-letter items (all, or those with these ids) back, each with a new seq: the old seq is
   * spent on the server. They go to the back of their record's queue.
   */
  retryFailed(ids?: readonly string[]): RetryPlan
  /** Drop dead-letter items (all, or those with these ids). */
  discardFailed(ids?: readonly string[]): DiscardPlan<FailedItem>
  /** All queued items, in delivery order. */
  pending(): QueueItem[]
  /** One queued item. */
  get(seq: number): QueueItem | undefined
  /** The record's queued items, in order. */
  pendingFor(entityType: string, recordId: string): QueueItem[]
  /** How many items the record has queued (`pendingFor(...).length`, without building the list). */
  pendingCount(entityType: string, recordId: string): number
  counts(): QueueCounts
  /**
   * Discard queued items that were never sent (with `includeSent`, all of them). Sent items are
   * kept by default: the server may have applied them, and their answers must still be handled.
   */
  clear(options?: { includeSent?: boolean }): DiscardPlan
  /** Coalesce adjacent unsent items of each record (e.g. after `retryFailed`). O(n). */
  optimize(): OptimizePlan
  /**
   * Write every item a sent mark counts for whole, and delete every mark: storage then holds the
   * queue in `q/` entries alone. Repair runs it before quarantining a damaged mark, whose loss
   * would otherwise make the items it marked look unsent.
   */
  settle(): QueuePlan
}

/** Thrown by `apply()` of a plan made before another plan was applied (or before `load()`). */
export class StaleQueuePlanError extends Error {
  constructor() {
    super('queue plan is stale: another change was applied after it was made')
    this.name = 'StaleQueuePlanError'
  }
}

// ── internals ───────────────────────────────────────────────────────────────

type Rank = 0 | 1 | 2
const RANK: Record<Priority, Rank> = { high: 0, normal: 1, low: 2 }

/** One record's queue. `prio` counts its items per rank; `rank` is the highest present. */
interface Chain {
  seqs: number[]
  prio: [number, number, number]
  rank: Rank
}

interface State {
  items: Map<number, QueueItem>
  chains: RecordMap<Chain>
  /** Seqs of queued items per effective rank of their record, in seq order. */
  classes: [SortedNumberSet, SortedNumberSet, SortedNumberSet]
  counts: { creates: number; updates: number; deletes: number }
  failed: Map<number, FailedItem>
  failedById: Map<string, number>
  failedByRecord: Map<string, Set<number>>
  nextSeq: number
  /**
   * For an item whose stored `q/` entry is older than its sent state: the mark that holds it
   * ({@link UNKNOWN_MARK} when a mark could not be read and the item counts as sent for safety).
   */
  markOf: Map<number, number>
  /** How many items each mark in storage counts for. */
  marks: Map<number, number>
}

/** {@link State.markOf} of an item that counts as sent because a mark in storage is unreadable. */
const UNKNOWN_MARK = -1

/**
 * One in-memory change of a plan (`nextSeq`'s `seq` is the counter's new value; `dropMark`'s the
 * mark's number). Changes are built only by the functions below, so all have one object shape
 * (type, item, seq, mark): the code running plans stays monomorphic instead of being sent back to
 * be compiled again when the first removal of a sync reaches it. `put` writes the item whole;
 * `mark` puts it in memory only, held by the sent mark `mark` that the plan writes.
 */
type Change =
  | { type: 'put'; item: QueueItem; seq: number; mark: number }
  | { type: 'mark'; item: QueueItem; seq: number; mark: number }
  | { type: 'putFailed'; item: FailedItem; seq: number; mark: number }
  | { type: 'remove' | 'removeFailed' | 'nextSeq' | 'dropMark'; item: null; seq: number; mark: number }

const putChange = (item: QueueItem): Change => ({ type: 'put', item, seq: item.seq, mark: 0 })
const markChange = (item: QueueItem, mark: number): Change => ({ type: 'mark', item, seq: item.seq, mark })
const putFailedChange = (item: FailedItem): Change => ({ type: 'putFailed', item, seq: item.seq, mark: 0 })
const seqChange = (type: 'remove' | 'removeFailed' | 'nextSeq' | 'dropMark', seq: number): Change => ({ type, item: null, seq, mark: 0 })

interface Resolved {
  storage: Storage
  prefix: string
  failedPrefix: string
  markPrefix: string
  counterKey: string
  now: () => number
  logger: Logger
}

function resolveOptions(options: QueueOptions): Resolved {
  const o: Resolved = {
    storage: options.storage,
    prefix: options.prefix ?? 'q/',
    failedPrefix: options.failedPrefix ?? 'f/',
    markPrefix: options.markPrefix ?? 's/',
    counterKey: options.counterKey ?? 'meta/nextSeq',
    now: options.now ?? (() => Date.now()),
    logger: options.logger ?? createSilentLogger(),
  }
  const prefixes = [o.prefix, o.failedPrefix, o.markPrefix]
  const overlap = (a: string, i: number) => prefixes.some((b, j) => i !== j && (a.startsWith(b) || b.startsWith(a)))
  if (prefixes.some((p, i) => !p || overlap(p, i))) {
    throw new TypeError(`queue prefixes must be non-empty and disjoint (got ${prefixes.map((p) => `"${p}"`).join(', ')})`)
  }
  if (prefixes.some((p) => o.counterKey.startsWith(p))) {
    throw new TypeError(`queue counter key "${o.counterKey}" must lie outside the item prefixes`)
  }
  return o
}

function emptyState(): State {
  return {
    items: new Map(),
    chains: new RecordMap(),
    classes: [new SortedNumberSet(), new SortedNumberSet(), new SortedNumberSet()],
    counts: { creates: 0, updates: 0, deletes: 0 },
    failed: new Map(),
    failedById: new Map(),
    failedByRecord: new Map(),
    nextSeq: 1,
    markOf: new Map(),
    marks: new Map(),
  }
}

function chainKey(entityType: string, recordId: string): string {
  return `${entityType}\u0000${recordId}`
}

function keyOf(item: QueueItem): string {
  return chainKey(item.entityType, item.recordId)
}

function rankOf(chain: Chain): Rank {
  return chain.prio[0] > 0 ? 0 : chain.prio[1] > 0 ? 1 : 2
}

function countAction(s: State, action: MutationAction, delta: number): void {
  if (action === 'create') s.counts.creates += delta
  else if (action === 'update') s.counts.updates += delta
  else s.counts.deletes += delta
}

/** Move every seq of `chain` to the class of its new effective rank. */
function rerank(s: State, chain: Chain): void {
  const rank = rankOf(chain)
  if (rank === chain.rank) return
  for (const seq of chain.seqs) {
    s.classes[chain.rank].delete(seq)
    s.classes[rank].add(seq)
  }
  chain.rank = rank
}

function attach(s: State, item: QueueItem): void {
  let chain = s.chains.get(item.entityType, item.recordId)
  if (!chain) {
    chain = { seqs: [], prio: [0, 0, 0], rank: RANK[item.priority] }
    s.chains.set(item.entityType, item.recordId, chain)
  }
  chain.prio[RANK[item.priority]]++
  rerank(s, chain)
  insertSorted(chain.seqs, item.seq)
  s.classes[chain.rank].add(item.seq)
  s.items.set(item.seq, item)
  countAction(s, item.action, 1)
}

function detach(s: State, seq: number): void {
  const item = s.items.get(seq)
  if (!item) return
  const chain = s.chains.get(item.entityType, item.recordId)!
  s.items.delete(seq)
  removeSorted(chain.seqs, seq)
  s.classes[chain.rank].delete(seq)
  chain.prio[RANK[item.priority]]--
  countAction(s, item.action, -1)
  if (chain.seqs.length === 0) s.chains.delete(item.entityType, item.recordId)
  else rerank(s, chain)
}

function put(s: State, item: QueueItem): void {
  const old = s.items.get(item.seq)
  if (!old) return attach(s, item)
  if (old.entityType !== item.entityType || old.recordId !== item.recordId) {
    detach(s, item.seq)
    return attach(s, item)
  }
  s.items.set(item.seq, item)
  if (old.action !== item.action) {
    countAction(s, old.action, -1)
    countAction(s, item.action, 1)
  }
  if (old.priority !== item.priority) {
    const chain = s.chains.get(item.entityType, item.recordId)!
    chain.prio[RANK[old.priority]]--
    chain.prio[RANK[item.priority]]++
    rerank(s, chain)
  }
}

function putFailed(s: State, item: FailedItem): void {
  removeFailed(s, item.seq)
  s.failed.set(item.seq, item)
  s.failedById.set(item.id, item.seq)
  const key = keyOf(item)
  let set = s.failedByRecord.get(key)
  if (!set) s.failedByRecord.set(key, (set = new Set()))
  set.add(item.seq)
}

function removeFailed(s: State, seq: number): void {
  const item = s.failed.get(seq)
  if (!item) return
  s.failed.delete(seq)
  if (s.failedById.get(item.id) === seq) s.failedById.delete(item.id)
  const key = keyOf(item)
  const set = s.failedByRecord.get(key)
  set?.delete(seq)
  if (set?.size === 0) s.failedByRecord.delete(key)
}

function higher(a: Priority, b: Priority): Priority {
  return RANK[a] <= RANK[b] ? a : b
}

/** The fields of a later change that coalescing reads. */
interface LaterChange {
  action: MutationAction
  data: Readonly<Row> | null
  hlc: string
  priority: Priority
  remoteId: string | null
}

/**
 * Fold `next` into `last` (the record's last item, unsent): the merged item, `'cancel'` when both
 * disappear, or `null` when the pair does not coalesce and `next` must be appended.
 */
function coalesce(last: QueueItem, next: LaterChange): QueueItem | 'cancel' | null {
  const common = {
    hlc: next.hlc,
    priority: higher(last.priority, next.priority),
    remoteId: last.remoteId ?? next.remoteId,
  }
  if (next.action === 'update' && (last.action === 'create' || last.action === 'update')) {
    // Later wins per field; the action and base version stay those of the first change.
    return freezeItem({ ...last, ...common, data: { ...last.data, ...next.data } })
  }
  if (next.action === 'delete' && last.action === 'create') return 'cancel'
  if (next.action === 'delete' && last.action === 'update') {
    return freezeItem({ ...last, ...common, action: 'delete', data: null })
  }
  return null
}

/**
 * `item` as sent at `at`, its `attempts`-th time, with the base version it was sent with: built
 * field by field in the order enqueue builds an item, so every item has one hidden class in V8. (A
 * spread copy of a frozen item gets another one, and every optimized function that had seen items
 * until then would be thrown away and compiled again: in a backlog, as its first batch is frozen.)
 */
function sentItem(item: QueueItem, at: number | null, baseVersion: number | null, attempts: number): QueueItem {
  // (Required: a field added to QueueItem, even an optional one, must be copied here too.)
  const next: Required<QueueItem> = {
    id: item.id,
    seq: item.seq,
    action: item.action,
    entityType: item.entityType,
    recordId: item.recordId,
    localId: item.localId,
    remoteId: item.remoteId,
    data: item.data,
    baseVersion,
    hlc: item.hlc,
    timestamp: item.timestamp,
    attempts,
    lastAttempt: at,
    error: item.error,
    priority: item.priority,
    sent: true,
  }
  return next
}

function freezeItem<T extends QueueItem>(item: T): T {
  if (item.data !== null) Object.freeze(item.data)
  if (item.error !== null) Object.freeze(item.error)
  return Object.freeze(item)
}

function copyError(error: QueueError): QueueError {
  if (typeof error?.kind !== 'string' || typeof error.message !== 'string') {
    throw new TypeError('queue error must be { kind: string, code?: string, message: string }')
  }
  return error.code === undefined
    ? { kind: error.kind, message: error.message }
    : { kind: error.kind, code: String(error.code), message: error.message }
}

function isRow(value: unknown): value is Row {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function checkInput(input: EnqueueInput): void {
  if (input.action !== 'create' && input.action !== 'update' && input.action !== 'delete') {
    throw new TypeError(`queue: unknown action "${String(input.action)}"`)
  }
  if (typeof input.entityType !== 'string' || input.entityType === '') throw new TypeError('queue: entityType must be a non-empty string')
  if (typeof input.recordId !== 'string' || input.recordId === '') throw new TypeError('queue: recordId must be a non-empty string')
  if (input.action === 'delete' ? input.data != null : !isRow(input.data)) {
    throw new TypeError(`queue: a ${input.action} needs ${input.action === 'delete' ? 'null data' : 'a data object'}`)
  }
  if (typeof input.hlc !== 'string') throw new TypeError('queue: hlc must be a string')
  if (input.priority !== undefined && !Object.hasOwn(RANK, input.priority)) throw new TypeError(`queue: unknown priority "${String(input.priority)}"`)
  const base = input.baseVersion
  if (base != null && !Number.isInteger(base)) throw new TypeError('queue: baseVersion must be an integer or null')
}

function describeIssues(error: { issues: ReadonlyArray<{ path: readonly PropertyKey[]; message: string }> }): string {
  return error.issues.map((i) => (i.path.length ? `${i.path.map(String).join('.')}: ${i.message}` : i.message)).join('; ')
}

/** The storage op of one change (a `mark` has none: the plan writes its record once). */
function opOf(o: Resolved, change: Change): StorageOp | null {
  switch (change.type) {
    case 'put':
      return setOp(seqKey(o.prefix, change.seq), change.item)
    case 'mark':
      return null
    case 'remove':
      return deleteOp(seqKey(o.prefix, change.seq))
    case 'putFailed':
      return setOp(seqKey(o.failedPrefix, change.seq), change.item)
    case 'removeFailed':
      return deleteOp(seqKey(o.failedPrefix, change.seq))
    case 'nextSeq':
      return setOp(o.counterKey, change.seq)
    case 'dropMark':
      return deleteOp(seqKey(o.markPrefix, change.seq))
  }
}

/** The item's stored entry is whole again (or gone): its mark no longer counts for it. */
function release(s: State, seq: number): void {
  const mark = s.markOf.get(seq)
  if (mark === undefined) return
  s.markOf.delete(seq)
  if (mark === UNKNOWN_MARK) return
  const left = s.marks.get(mark)! - 1
  if (left === 0) s.marks.delete(mark)
  else s.marks.set(mark, left)
}

/**
 * The in-memory effect of one change. (Module functions, not closures of `createQueue`: code
 * optimized for one queue's closures would be thrown away when another queue's ran through it.)
 */
function runChange(s: State, change: Change): void {
  switch (change.type) {
    case 'put':
      put(s, change.item)
      return release(s, change.seq)
    case 'mark':
      put(s, change.item)
      release(s, change.seq)
      s.markOf.set(change.seq, change.mark)
      s.marks.set(change.mark, (s.marks.get(change.mark) ?? 0) + 1)
      return
    case 'remove':
      detach(s, change.seq)
      return release(s, change.seq)
    case 'putFailed':
      return putFailed(s, change.item)
    case 'removeFailed':
      return removeFailed(s, change.seq)
    case 'nextSeq':
      s.nextSeq = change.seq
      return
    case 'dropMark':
      s.marks.delete(change.seq)
  }
}

/**
 * Marks a plan of `changes` empties: every item they count for is written whole, removed or marked
 * again by it, so their records are deleted in the same commit. (A plan names each queued seq at
 * most once.)
 */
function marksEmptiedBy(s: State, changes: readonly Change[]): number[] {
  const emptied: number[] = []
  if (s.marks.size === 0) return emptied
  let left: Map<number, number> | null = null
  for (const change of changes) {
    if (change.type !== 'put' && change.type !== 'remove' && change.type !== 'mark') continue
    const mark = s.markOf.get(change.seq)
    if (mark === undefined || mark === UNKNOWN_MARK) continue
    left ??= new Map()
    left.set(mark, (left.get(mark) ?? s.marks.get(mark)!) - 1)
  }
  if (left) for (const [mark, count] of left) if (count === 0) emptied.push(mark)
  return emptied
}

/** Create a queue over `storage`; call `load()` before changing it. */
export function createQueue(options: QueueOptions): Queue {
  const o = resolveOptions(options)
  let state = emptyState()
  let loaded = false
  /** Bumped by every applied plan and by `load()`; a plan is valid only for the value it saw. */
  let generation = 0
  /**
   * Number of the next sent mark, taken when a plan is made (not applied): two plans made from one
   * state never write the same mark key, even if both were committed.
   */
  let nextMark = 1

  /** A plan of `changes`; `written` is the sent mark it writes, as number and record. */
  function plan<T extends object>(changes: Change[], extra: T, written?: { mark: number; record: SentMark }): QueuePlan & T {
    const madeAt = generation
    let applied = false
    const ops: StorageOp[] = []
    for (const change of changes) {
      const op = opOf(o, change)
      if (op !== null) ops.push(op)
    }
    if (written) ops.push(setOp(seqKey(o.markPrefix, written.mark), written.record))
    for (const mark of marksEmptiedBy(state, changes)) ops.push(deleteOp(seqKey(o.markPrefix, mark)))
    return {
      ...extra,
      ops,
      apply() {
        if (applied) return
        if (changes.length > 0) {
          if (madeAt !== generation) throw new StaleQueuePlanError()
          generation++
          for (const change of changes) runChange(state, change)
        }
        applied = true
      },
    }
  }

  function requireLoaded(): void {
    if (!loaded) throw new Error('queue is not loaded: await queue.load() before changing it')
  }

  function takeSeq(next: number): number {
    if (next > MAX_SEQ) throw new RangeError('queue sequence numbers exhausted')
    return next
  }

  function itemsOf(seqs: Iterable<number>): QueueItem[] {
    const out: QueueItem[] = []
    for (const seq of seqs) {
      const item = state.items.get(seq)
      if (item) out.push(item)
    }
    return out
  }

  function selectFailed(ids: readonly string[] | undefined): FailedItem[] {
    if (ids === undefined) return [...state.failed.values()].sort((a, b) => a.seq - b.seq)
    const seqs = new Set<number>()
    for (const id of ids) {
      const seq = state.failedById.get(id)
      if (seq !== undefined) seqs.add(seq)
    }
    return [...seqs].sort((a, b) => a - b).map((seq) => state.failed.get(seq)!)
  }

  function* inDeliveryOrder(minPriority?: Priority, after?: DeliveryPosition): IterableIterator<QueueItem> {
    requireLoaded()
    const maxRank = RANK[minPriority ?? 'low']
    for (let rank = after?.rank ?? 0; rank <= maxRank; rank++) {
      const seqs = after && rank === after.rank ? state.classes[rank as Rank].valuesAfter(after.seq) : state.classes[rank as Rank].values()
      for (const seq of seqs) yield state.items.get(seq)!
    }
  }

  function scanInDeliveryOrder(visit: (item: QueueItem) => boolean | void, minPriority?: Priority, after?: DeliveryPosition): void {
    requireLoaded()
    const maxRank = RANK[minPriority ?? 'low']
    const items = state.items
    const each = (seq: number): boolean | void => visit(items.get(seq)!)
    for (let rank = after?.rank ?? 0; rank <= maxRank; rank++) {
      if (!state.classes[rank as Rank].forEachAfter(after && rank === after.rank ? after.seq : undefined, each)) return
    }
  }

  function deliveryPosition(seq: number): DeliveryPosition | undefined {
    const item = state.items.get(seq)
    return item && { rank: state.chains.get(item.entityType, item.recordId)!.rank, seq }
  }

  function nextBatch({ limit, minPriority }: NextBatchOptions): QueueItem[] {
    const out: QueueItem[] = []
    if (!(limit > 0)) return out
    scanInDeliveryOrder((item) => {
      if (out.length >= limit) return false
      out.push(item)
    }, minPriority)
    return out
  }

  async function load(): Promise<QueueLoadProblem[]> {
    const [entries, failedEntries, markEntries, counter] = await Promise.all([
      o.storage.scan(o.prefix),
      o.storage.scan(o.failedPrefix),
      o.storage.scan(o.markPrefix),
      o.storage.get(o.counterKey),
    ])
    const s = emptyState()
    const problems: QueueLoadProblem[] = []
    const ids = new Set<string>()
    let highest = 0
    const read = (key: string, value: unknown, prefix: string, failed: boolean): QueueItem | null => {
      const seq = seqOfKey(prefix, key)
      if (seq === null) {
        problems.push({ key, value, problem: 'unrecognised key under the queue prefix' })
        return null
      }
      // Even an unreadable item holds its seq: handing it out again could overwrite the entry.
      highest = Math.max(highest, seq)
      const parsed = (failed ? failedItemSchema : queueItemSchema).safeParse(value)
      if (!parsed.success) {
        problems.push({ key, value, problem: `invalid ${failed ? 'dead-letter' : 'queue'} item: ${describeIssues(parsed.error)}` })
        return null
      }
      const item = parsed.data as QueueItem
      if (item.seq !== seq) problems.push({ key, value, problem: `item seq ${item.seq} does not match its key` })
      else if (ids.has(item.id)) problems.push({ key, value, problem: `duplicate item id "${item.id}"` })
      else if (failed && s.items.has(seq)) problems.push({ key, value, problem: `seq ${seq} is also queued` })
      else {
        ids.add(item.id)
        return freezeItem(item)
      }
      return null
    }
    for (const { key, value } of entries) {
      const item = read(key, value, o.prefix, false)
      if (item) attach(s, item)
    }
    for (const { key, value } of failedEntries) {
      const item = read(key, value, o.failedPrefix, true)
      if (item) putFailed(s, item as FailedItem)
    }
    const unreadableMarks = applyMarks(s, markEntries, problems)
    s.nextSeq = highest + 1
    const counterOk = typeof counter === 'number' && Number.isSafeInteger(counter) && counter >= 1
    if (counterOk) s.nextSeq = Math.max(s.nextSeq, counter)
    else if (counter !== undefined || highest > 0) {
      // The counter is written with every new item, so it is missing only if it was lost. Seqs of
      // acknowledged items are gone too, and reusing one would make the server drop the change as
      // a duplicate: continue from a clock-derived floor far above any count reached so far.
      const floor = Math.min(Math.floor(Math.max(0, o.now())) * 1000, 2 ** 52)
      s.nextSeq = Math.max(s.nextSeq, floor)
      o.logger.warn('queue sequence counter missing or unreadable; continuing from a clock-derived floor', {
        key: o.counterKey,
        value: counter,
        nextSeq: s.nextSeq,
      })
    }
    if (unreadableMarks) {
      // Which items an unreadable mark marked is unknown, and an item sent but taken for unsent
      // could have a later write folded into it after the server applied it: all count as sent.
      // (Replacing a value under its own key while iterating a Map is safe.)
      for (const item of s.items.values()) {
        if (item.sent) continue
        put(s, freezeItem(sentItem(item, item.lastAttempt, item.baseVersion, item.attempts)))
        s.markOf.set(item.seq, UNKNOWN_MARK)
      }
    }
    state = s
    generation++
    loaded = true
    return problems
  }

  /**
   * Applies the sent marks found in storage, in the order they were written, to the loaded items;
   * returns whether any could not be read (reported in `problems`).
   */
  function applyMarks(s: State, entries: readonly StorageEntry[], problems: QueueLoadProblem[]): boolean {
    let unreadable = false
    // A mark left counting for nothing (its items were damaged) is kept here, at zero, for
    // settle() to delete; plans delete only the marks they empty.
    for (const { key, value } of entries) {
      const mark = seqOfKey(o.markPrefix, key)
      if (mark !== null) nextMark = Math.max(nextMark, mark + 1)
      const parsed = sentMarkSchema.safeParse(value)
      if (mark === null || !parsed.success) {
        unreadable = true
        const what = mark === null ? 'unrecognised key under the sent-mark prefix' : `invalid sent mark: ${describeIssues(parsed.error!)}`
        problems.push({ key, value, problem: `${what}; every queued item counts as sent until repair` })
        continue
      }
      const { at, seqs, attempts, bases } = parsed.data
      let counted = 0
      for (let i = 0; i < seqs.length; i++) {
        const item = s.items.get(seqs[i]!)
        if (!item || attempts[i]! <= item.attempts) continue
        put(s, freezeItem(sentItem(item, at, bases[i]!, attempts[i]!)))
        const earlier = s.markOf.get(item.seq)
        if (earlier !== undefined) s.marks.set(earlier, s.marks.get(earlier)! - 1)
        s.markOf.set(item.seq, mark)
        counted++
      }
      s.marks.set(mark, counted)
    }
    return unreadable
  }

  return {
    load,
    get size() {
      return state.items.size
    },
    get lastSeq() {
      return state.nextSeq - 1
    },

    enqueue(input) {
      requireLoaded()
      checkInput(input)
      const priority = input.priority ?? 'normal'
      const remoteId = input.remoteId ?? null
      const chain = state.chains.get(input.entityType, input.recordId)
      const lastSeq = chain?.seqs[chain.seqs.length - 1]
      const last = lastSeq === undefined ? undefined : state.items.get(lastSeq)
      if (last && !last.sent) {
        const merged = coalesce(last, { action: input.action, data: input.data, hlc: input.hlc, priority, remoteId })
        if (merged === 'cancel') {
          return plan([seqChange('remove', last.seq)], { outcome: 'cancelled' as const, item: null, cancelled: [last] })
        }
        if (merged) return plan([putChange(merged)], { outcome: 'coalesced' as const, item: merged, cancelled: [] })
      }
      const seq = takeSeq(state.nextSeq)
      const item = freezeItem<QueueItem>({
        id: `q${seq}`,
        seq,
        action: input.action,
        entityType: input.entityType,
        recordId: input.recordId,
        localId: input.localId ?? input.recordId,
        remoteId,
        data: input.data === null ? null : { ...input.data },
        baseVersion: input.baseVersion ?? null,
        hlc: input.hlc,
        timestamp: input.timestamp ?? o.now(),
        attempts: 0,
        lastAttempt: null,
        error: null,
        priority,
        sent: false,
      })
      return plan(
        [
          putChange(item),
          seqChange('nextSeq', seq + 1),
        ],
        { outcome: 'appended' as const, item, cancelled: [] },
      )
    },

    nextBatch,
    inDeliveryOrder,
    scanInDeliveryOrder,
    deliveryPosition,

    markSent(refs, options = {}) {
      requireLoaded()
      const now = options.now ?? o.now()
      const changes: Change[] = []
      const items: QueueItem[] = []
      const seen = new Set<number>()
      const mark = nextMark
      const seqs: number[] = []
      const attempts: number[] = []
      const bases: Array<number | null> = []
      for (const ref of refs) {
        const seq = typeof ref === 'number' ? ref : ref.seq
        const item = state.items.get(seq)
        if (!item || seen.has(seq)) continue
        seen.add(seq)
        const frozenBase = item.sent || !options.baseVersions?.has(seq) ? item.baseVersion : (options.baseVersions.get(seq) ?? null)
        const next = freezeItem(sentItem(item, now, frozenBase, item.attempts + 1))
        changes.push(markChange(next, mark))
        items.push(next)
        seqs.push(seq)
        attempts.push(next.attempts)
        bases.push(frozenBase)
      }
      if (items.length === 0) return plan(changes, { items })
      nextMark++
      return plan(changes, { items }, { mark, record: { at: now, seqs, attempts, bases } })
    },

    ack(seqs) {
      requireLoaded()
      const removed = itemsOf(new Set(seqs))
      return plan(
        mapPacked(removed, (item) => seqChange('remove', item.seq)),
        { removed },
      )
    },

    fail(seq, error, options = {}) {
      requireLoaded()
      const reason = copyError(error)
      const item = state.items.get(seq)
      if (!item) return plan([], { item: null })
      const failed = freezeItem<FailedItem>({ ...item, error: reason, failedAt: options.now ?? o.now() })
      return plan(
        [
          seqChange('remove', seq),
          putFailedChange(failed),
        ],
        { item: failed },
      )
    },

    recordError(seqs, error) {
      requireLoaded()
      const reason = copyError(error)
      const items = itemsOf(new Set(typeof seqs === 'number' ? [seqs] : seqs))
      return plan(
        items.map((item) => putChange(freezeItem({ ...item, error: reason }))),
        {},
      )
    },

    rebase(entityType, recordId, baseVersion) {
      requireLoaded()
      const chain = state.chains.get(entityType, recordId)
      const changes: Change[] = []
      for (const item of itemsOf(chain?.seqs ?? [])) {
        if (item.sent || item.action === 'create' || item.baseVersion === baseVersion) continue
        changes.push(putChange(freezeItem({ ...item, baseVersion })))
      }
      return plan(changes, {})
    },

    remap(entityType, localId, remoteId) {
      requireLoaded()
      const key = chainKey(entityType, localId)
      const changes: Change[] = []
      for (const item of itemsOf(state.chains.get(entityType, localId)?.seqs ?? [])) {
        changes.push(putChange(freezeItem({ ...item, recordId: remoteId, remoteId })))
      }
      for (const seq of [...(state.failedByRecord.get(key) ?? [])].sort((a, b) => a - b)) {
        const item = state.failed.get(seq)!
        changes.push(putFailedChange(freezeItem({ ...item, recordId: remoteId, remoteId })))
      }
      return plan(changes, {})
    },

    failed() {
      return selectFailed(undefined)
    },

    retryFailed(ids) {
      requireLoaded()
      const changes: Change[] = []
      const retried: QueueItem[] = []
      let next = state.nextSeq
      for (const failed of selectFailed(ids)) {
        const { failedAt: _failedAt, ...rest } = failed
        const item = freezeItem<QueueItem>({ ...rest, seq: takeSeq(next++), sent: false, attempts: 0, lastAttempt: null, error: null })
        changes.push(seqChange('removeFailed', failed.seq), putChange(item))
        retried.push(item)
      }
      if (retried.length > 0) changes.push(seqChange('nextSeq', next))
      return plan(changes, { retried })
    },

    discardFailed(ids) {
      requireLoaded()
      const discarded = selectFailed(ids)
      return plan(
        discarded.map((item) => seqChange('removeFailed', item.seq)),
        { discarded },
      )
    },

    pending() {
      return nextBatch({ limit: Infinity })
    },

    get(seq) {
      return state.items.get(seq)
    },

    pendingFor(entityType, recordId) {
      return itemsOf(state.chains.get(entityType, recordId)?.seqs ?? [])
    },

    pendingCount(entityType, recordId) {
      return state.chains.get(entityType, recordId)?.seqs.length ?? 0
    },

    counts() {
      return { ...state.counts, failed: state.failed.size }
    },

    clear(options = {}) {
      requireLoaded()
      const discarded = [...state.items.values()]
        .filter((item) => options.includeSent || !item.sent)
        .sort((a, b) => a.seq - b.seq)
      return plan(
        discarded.map((item) => seqChange('remove', item.seq)),
        { discarded },
      )
    },

    optimize() {
      requireLoaded()
      const changes: Change[] = []
      let removed = 0
      for (const chain of state.chains.values()) {
        if (chain.seqs.length < 2) continue
        // Replay the record's queue through the enqueue rule; only adjacent unsent pairs fold.
        const kept: QueueItem[] = []
        const gone: number[] = []
        for (const item of itemsOf(chain.seqs)) {
          const top = kept[kept.length - 1]
          const merged = top && !top.sent && !item.sent ? coalesce(top, item) : null
          if (merged === 'cancel') {
            kept.pop()
            gone.push(top!.seq, item.seq)
          } else if (merged) {
            kept[kept.length - 1] = merged
            gone.push(item.seq)
          } else kept.push(item)
        }
        if (gone.length === 0) continue
        removed += gone.length
        for (const seq of gone) changes.push(seqChange('remove', seq))
        for (const item of kept) if (state.items.get(item.seq) !== item) changes.push(putChange(item))
      }
      return plan(changes, { removed })
    },

    settle() {
      requireLoaded()
      const changes: Change[] = []
      for (const seq of [...state.markOf.keys()].sort((a, b) => a - b)) changes.push(putChange(state.items.get(seq)!))
      for (const [mark, count] of state.marks) if (count === 0) changes.push(seqChange('dropMark', mark))
      return plan(changes, {})
    },
  }
}
