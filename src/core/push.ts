/**
 * The push loop: queued items go to the backend batch after batch, and each answer is applied to
 * the queue and the records.
 *
 * ```
 * pickBatch(n) ─ freeze (markSent, committed) ─> launch ─ backend.push ─┐
 *      ↑ while that request is on the wire, the next batch is picked     │
 *      └──────────── land: apply outcomes (slices, in send order) <──────┘
 * ```
 *
 * Invariants:
 * - An item is marked sent (its base version frozen) in storage before its request leaves; it is
 *   never altered afterwards, since the server may have applied it under its seq. A crash or an
 *   abort leaves sent items sent: they go again with the same seqs (exactly-once on the server).
 * - A batch holds at most one item per record, and none of a record in the batch still on the
 *   wire: a record's next item needs the version its earlier one produces.
 * - At most two requests are on the wire, and answers are applied in the order the batches were
 *   sent. A batch sent while its predecessor is on the wire names it (`after`), which the server
 *   applies first; only a batch all of whose items were new can be named.
 * - A request the server finds too large halves the batch size for this loop's life.
 */
import type { Backend, Mutation, MutationOutcome, Row } from './protocol.js'
import type { Logger } from './logger.js'
import type { SyncEvent } from './types.js'
import type { Transaction } from './transaction.js'
import type { RecordEnvelope, RecordTable } from './records.js'
import type { DeliveryPosition, Queue, QueueItem } from './queue.js'
import type { ResolvedCollection } from './orchestrator.js'
import { AbortError, SyncError } from './errors.js'
import { RecordMap } from './recordMap.js'
import { stripLocalOnly, withLocalOnly } from './conflict.js'
import { APPLY_SLICE, FREEZE_SLICE } from './slicing.js'

/**
 * A push run's first batch holds at most this many mutations; each next one twice as many as the
 * one before, up to `batchSize`. A few changes go in one small request answered quickly; a backlog
 * soon goes in large ones (fewer requests, each with the server's fixed cost), while the first
 * request is on the wire after freezing one slice rather than a whole large batch.
 */
const FIRST_BATCH = 200

/** A picked and frozen batch. */
interface Picked {
  batch: QueueItem[]
  mutations: Mutation[]
  /** Every item was sent for the first time (so a stored seq of it means the batch was applied). */
  fresh: boolean
}

/** A batch whose request has been sent. */
interface Flight extends Picked {
  answer: Promise<MutationOutcome[]>
}

/** An outcome the server answered for (not deferred). */
type AnsweredOutcome = Exclude<MutationOutcome, { status: 'deferred' }>

/** A server's state of a record, as a conflict answer gives it. */
export interface RemoteState {
  row: Row | null
  version: number | null
  deleted: boolean
  hlc: string | null
}

/** What the push loop uses of the orchestrator. */
export interface PushContext {
  queue: Queue
  backend: Backend
  logger: Logger
  /** Lets the device's clock see a stamp the server answered with. */
  receiveStamp(stamp: string): void
  /** Mutations per request at most (the loop halves its own copy on a 413). */
  batchSize: number
  /** This device's client id (known once storage is loaded). */
  clientId(): string
  now(): number
  /** The collection syncing a server table, if any. */
  collectionOf(table: string): ResolvedCollection | undefined
  tableOf(name: string): RecordTable
  /** Runs `body` as one transaction, under the orchestrator's mutex. */
  transact<T>(body: (tx: Transaction) => T | Promise<T>): Promise<T>
  /** A turn for the host (rendering, input) between slices. */
  yieldToHost(): Promise<void>
  /** Settles a conflict answered for a record (see the orchestrator's conflict resolution). */
  resolveRecord(tx: Transaction, c: ResolvedCollection, key: string, rec: RecordEnvelope, remote: RemoteState, drop: readonly number[]): void
  notifyCollection(name: string, ids: string[], source: 'local' | 'remote'): void
  emit(event: SyncEvent): void
  /** Progress of the run: items answered so far, of the queue's size at its start. */
  progress(done: number, total: number): void
}

/** The push loop of one orchestrator. */
export interface PushLoop {
  /**
   * Pushes everything queued (or only high-priority records); resolves to the number of items
   * answered. Throws on a failure (the run's error) or an abort; sent items stay sent.
   */
  pushAll(signal: AbortSignal, highPriorityOnly: boolean): Promise<number>
}

/** Creates the push loop over an orchestrator's queue, records and backend. */
export function createPushLoop(ctx: PushContext): PushLoop {
  const { queue, backend, receiveStamp, logger, clientId, now, collectionOf, tableOf, transact, yieldToHost, resolveRecord, notifyCollection, emit, progress } = ctx
  // Mutations per push request at most (see FIRST_BATCH): the batch size, halved each time the
  // server answers a batch with 413 (too large).
  let batchLimit = ctx.batchSize

  /**
   * The next items of a batch being built: up to `want` items, at most one per record (`seen`
   * holds the records of the whole batch, and of the batch on the wire), in delivery order, read
   * on from where the slice before stopped (`read`, updated). A record whose items moved to a
   * higher priority class meanwhile is passed over whole and waits for the next batch.
   */
  function pickSlice(highPriorityOnly: boolean, seen: RecordMap<true>, want: number, read: { last?: DeliveryPosition }): QueueItem[] {
    const slice: QueueItem[] = []
    // The items up to `read.last` were read by the slices before: each was chosen or passed over.
    let last: QueueItem | undefined
    queue.scanInDeliveryOrder((item) => {
      last = item
      if (seen.has(item.entityType, item.recordId)) return
      seen.set(item.entityType, item.recordId, true)
      const c = collectionOf(item.entityType)
      // A record waiting for a person is held back until the conflict is resolved.
      if (c && tableOf(c.name).get(item.recordId)?.state === 'conflict') return
      slice.push(item)
      if (slice.length >= want) return false
    }, highPriorityOnly ? 'high' : undefined, read.last)
    if (last) read.last = queue.deliveryPosition(last.seq)
    return slice
  }

  function toMutation(item: QueueItem, baseVersion: number | null): Mutation {
    return {
      seq: item.seq,
      table: item.entityType,
      action: item.action,
      id: item.remoteId ?? item.recordId,
      ...(item.data ? { data: item.data, key: collectionOf(item.entityType)?.primaryKey } : {}),
      baseVersion,
      hlc: item.hlc,
    }
  }

  // pickBatch's loops over items live in these two: a loop in the async pickBatch would have V8
  // optimize the whole of it (inlining the transaction and the host's turn) in the middle of a
  // sync, for a function that runs once per batch.

  /** The records of `flight`'s batch (none when there is no flight). */
  function recordsOf(flight: Flight | null): RecordMap<true> {
    const seen = new RecordMap<true>()
    if (flight) for (const item of flight.batch) seen.set(item.entityType, item.recordId, true)
    return seen
  }

  /** Appends a frozen slice's items, and their mutations, to a batch. */
  function appendSlice(batch: QueueItem[], mutations: Mutation[], slice: readonly QueueItem[]): void {
    for (const item of slice) {
      batch.push(item)
      mutations.push(toMutation(item, item.baseVersion))
    }
  }

  /**
   * Picks and freezes the next batch, in slices of at most FREEZE_SLICE items with a turn for the
   * host between them. Each slice is picked, frozen and read back inside one transaction, so no
   * local write can fold into an item between the moment it is chosen and the moment its request
   * is built; a write between slices lands in a new item, behind its record's frozen one (the
   * batch holds at most one item per record). A crash between slices leaves the frozen items sent,
   * to be sent again (exactly-once per seq).
   */
  async function pickBatch(signal: AbortSignal, highPriorityOnly: boolean, ahead: Flight | null, size: number): Promise<Picked | null> {
    // The records of a batch still on the wire wait for its answer: their next item needs the
    // version it produces.
    const seen = recordsOf(ahead)
    const read: { last?: DeliveryPosition } = {}
    const batch: QueueItem[] = []
    const mutations: Mutation[] = []
    let fresh = true
    while (batch.length < size) {
      // A turn for the host before every slice; before the first too when a batch was just sent,
      // as building its body and request took the turn before.
      if (batch.length > 0 || ahead) {
        await yieldToHost()
        if (signal.aborted) throw new AbortError()
      }
      const want = Math.min(FREEZE_SLICE, size - batch.length)
      const slice = await transact((tx) => {
        const chosen = pickSlice(highPriorityOnly, seen, want, read)
        if (chosen.length === 0) return null
        if (chosen.some((item) => item.sent)) fresh = false
        const bases = new Map<number, number | null>()
        for (const item of chosen) {
          const c = collectionOf(item.entityType)
          const rec = c ? tableOf(c.name).get(item.recordId) : undefined
          bases.set(item.seq, item.sent ? item.baseVersion : item.action === 'create' ? null : (rec?.version ?? item.baseVersion))
        }
        const plan = queue.markSent(chosen, { now: now(), baseVersions: bases })
        tx.add(plan)
        return plan.items
      })
      if (!slice) break
      appendSlice(batch, mutations, slice)
      if (slice.length < want) break
    }
    return batch.length === 0 ? null : { batch, mutations, fresh }
  }

  /**
   * Sends a picked batch; the request runs while the caller goes on. `after` names the batch before
   * it, still on the wire: the server applies this one only once that one is applied.
   */
  function launch(picked: Picked, signal: AbortSignal, after: Flight | null): Flight {
    const options = after ? { signal, after: after.mutations[0]!.seq } : { signal }
    const answer = backend.push(clientId(), picked.mutations, options)
    // Settled by land(), or dropped after a failure (the items stay sent, and are sent again).
    answer.catch(() => {})
    return { batch: picked.batch, mutations: picked.mutations, fresh: picked.fresh, answer }
  }

  /**
   * Applies a batch's answer; resolves to the number of its items answered (applied, conflicting or
   * rejected). Items deferred by the server, or of a request too large for it, stay sent and lead
   * the next batch.
   */
  async function land(flight: Flight): Promise<number> {
    const { batch, mutations } = flight
    let outcomes: MutationOutcome[]
    try {
      outcomes = await flight.answer
    } catch (error) {
      if (!(error instanceof SyncError) || error.kind !== 'too-large') throw error
      if (batch.length > 1) {
        // Smaller requests from now on; this batch's items, still sent, lead the next ones.
        batchLimit = Math.max(1, Math.min(batchLimit, Math.floor(batch.length / 2)))
        logger.warn('push request too large for the server; sending smaller batches', { from: batch.length, to: batchLimit })
        return 0
      }
      // One mutation too large on its own: the server can never take it; it fails like a rejection.
      outcomes = [{ seq: batch[0]!.seq, status: 'rejected', code: 'PAYLOAD_TOO_LARGE', message: error.message }]
    }
    if (outcomes.length !== mutations.length || outcomes.some((x, i) => x.seq !== mutations[i]!.seq)) {
      throw new SyncError('server', `push answer does not match the batch (${outcomes.length} outcomes for ${mutations.length} mutations)`)
    }
    if (outcomes.some((x) => x.status === 'deferred')) {
      if (outcomes.some((x) => x.status !== 'deferred')) throw new SyncError('server', 'push answer defers only part of the batch')
      return 0
    }
    await applyOutcomes(batch, outcomes as AnsweredOutcome[])
    await yieldToHost()
    return batch.length
  }

  /**
   * Pushes everything queued (or only high-priority records), batch after batch. The next batch is
   * picked, frozen and sent while the previous one's request is on the wire (at most two at once);
   * answers are applied in the order the batches were sent.
   */
  async function pushAll(signal: AbortSignal, highPriorityOnly: boolean): Promise<number> {
    let pushed = 0
    const total = queue.size
    // The batch sent last, whose answer is not applied yet.
    let ahead: Flight | null = null
    // The next batch's size (see FIRST_BATCH); batchLimit may shrink meanwhile.
    let size = FIRST_BATCH
    try {
      for (;;) {
        if (signal.aborted) throw new AbortError()
        // `after` can name only a batch all of whose items were new: otherwise land it first.
        const picked = ahead?.fresh === false ? null : await pickBatch(signal, highPriorityOnly, ahead, Math.min(size, batchLimit))
        if (!picked) {
          if (!ahead) return pushed
          const landing: Flight = ahead
          ahead = null
          pushed += await land(landing)
          continue
        }
        progress(pushed, total)
        // Building the request (its body and the fetch) in a turn of its own, not the last slice's.
        await yieldToHost()
        if (signal.aborted) throw new AbortError()
        const previous: Flight | null = ahead
        ahead = launch(picked, signal, previous)
        size *= 2
        if (previous) pushed += await land(previous)
      }
    } finally {
      // After a failure, a request still on the wire is left to finish: its items stay sent.
      if (ahead) await ahead.answer.catch(() => {})
    }
  }

  async function applyOutcomes(batch: QueueItem[], outcomes: AnsweredOutcome[]): Promise<void> {
    const counts = { applied: 0, conflicts: 0, rejected: 0 }
    for (let from = 0; from < batch.length; from += APPLY_SLICE) {
      // A turn for the host first: decoding the answer took one already.
      await yieldToHost()
      await applyOutcomeSlice(batch, outcomes, from, Math.min(batch.length, from + APPLY_SLICE), counts)
    }
    emit({ type: 'pushed', ...counts })
  }

  /** Applies outcomes `from`..`to` (exclusive) of a batch in one transaction; the batch's records are distinct. */
  async function applyOutcomeSlice(batch: QueueItem[], outcomes: AnsweredOutcome[], from: number, to: number, counts: { applied: number; conflicts: number; rejected: number }): Promise<void> {
    // Listeners hear once per collection per slice, not once per record.
    const touched = new Map<string, string[]>()
    const touch = (name: string, ...ids: string[]): void => {
      const list = touched.get(name)
      if (list) list.push(...ids)
      else touched.set(name, ids)
    }
    await transact((tx) => {
      tx.afterCommit(() => {
        for (const [name, ids] of touched) notifyCollection(name, ids, 'remote')
      })
      // Applied items leave the queue together, in one plan at the end of the slice: the batch's
      // records are distinct, so no other item of the slice reads them meanwhile.
      const acked: number[] = []
      for (let i = from; i < to; i++) {
        const item = batch[i]!
        const outcome = outcomes[i]!
        const c = collectionOf(item.entityType)
        if (!c) {
          acked.push(item.seq)
          continue
        }
        const table = tableOf(c.name)
        const key = item.recordId
        const rec = table.get(key)
        // (A write that kept the stamp it sent answers with that one: this clock issued it.)
        if ('hlc' in outcome && outcome.hlc && outcome.hlc !== item.hlc) receiveStamp(outcome.hlc)
        if (outcome.status === 'applied') {
          counts.applied++
          // How many items the record has after this one (it is still queued until the slice's ack).
          const remaining = queue.pendingCount(c.table, key) - (queue.get(item.seq) ? 1 : 0)
          let storedKey = key
          if (c.idMode === 'server' && item.action === 'create' && outcome.row && item.remoteId === null) {
            const remoteId = String(outcome.row[c.primaryKey])
            if (remoteId !== key) {
              storedKey = remoteId
              // Remapping rewrites the record's items: this one goes first, not with the slice.
              tx.add(queue.ack([item.seq]))
              tx.add(queue.remap(c.table, key, remoteId))
              tx.add(table.alias(key, remoteId))
              if (rec) tx.add(table.remove(key))
              touch(c.name, key, remoteId)
            }
          }
          if (storedKey === key) acked.push(item.seq)
          if (!rec) continue
          // A write re-sent after its answer was lost is answered with the version it produced
          // then; the record may already hold a later one, pulled meanwhile: keep that one.
          if (rec.version !== null && outcome.version < rec.version) {
            if (remaining === 0 && rec.deleted) tx.add(table.remove(key))
            else if (remaining === 0 && rec.state === 'pending') tx.add(table.put(key, { ...rec, state: 'synced' }))
            touch(c.name, key)
            continue
          }
          if (item.action === 'delete' && remaining === 0) {
            tx.add(table.remove(storedKey))
            continue
          }
          // (The decoded row is this outcome's own: with no local-only fields it is kept as it is.)
          const serverRow = outcome.row ? (c.localOnly.length > 0 ? stripLocalOnly(outcome.row, c.localOnly) : outcome.row) : rec.base
          const done = remaining === 0 && rec.state !== 'conflict'
          // Without local-only fields, a record done syncing holds the server's row as both data
          // and base: one object, stored once.
          const data = done && outcome.row ? (c.localOnly.length > 0 ? withLocalOnly(outcome.row, rec.data, c.localOnly) : outcome.row) : storedKey !== key ? { ...rec.data, [c.primaryKey]: outcome.row![c.primaryKey] } : rec.data
          tx.add(table.put(storedKey, { data, base: serverRow, version: outcome.version, deleted: rec.deleted, hlc: rec.hlc, state: done ? 'synced' : rec.state === 'failed' ? 'failed' : rec.state }))
          touch(c.name, storedKey)
        } else if (outcome.status === 'conflict') {
          counts.conflicts++
          if (!rec) {
            acked.push(item.seq)
            continue
          }
          resolveRecord(tx, c, key, rec, { row: outcome.row, version: outcome.version, deleted: outcome.deleted, hlc: outcome.hlc }, [item.seq])
          touch(c.name, key)
        } else {
          counts.rejected++
          tx.add(queue.fail(item.seq, { kind: 'permanent', code: outcome.code, message: outcome.message }))
          if (rec) tx.add(table.put(key, { ...rec, state: 'failed' }))
          touch(c.name, key)
          tx.afterCommit(() => emit({ type: 'failed', collection: c.name, id: key, code: outcome.code, message: outcome.message }))
          logger.warn('mutation rejected by the server', { table: c.table, id: key, code: outcome.code, message: outcome.message })
        }
      }
      if (acked.length > 0) tx.add(queue.ack(acked))
    })
  }

  return { pushAll }
}
