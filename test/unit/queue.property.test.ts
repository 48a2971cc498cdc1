import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { createQueue, type EnqueueInput, type EnqueuePlan, type Queue, type QueueItem, type QueuePlan } from '../../src/core/queue.js'
import { SortedNumberSet } from '../../src/core/sortedNumberSet.js'
import { createMemoryStorage } from '../../src/storage/memory.js'
import type { Storage } from '../../src/core/storage.js'
import type { Row } from '../../src/core/protocol.js'
import type { Priority } from '../../src/core/types.js'

// Replay a failing property with FC_SEED=<seed printed in the failure>.
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)
const params = (numRuns: number) => ({ seed, numRuns })

const RANK: Record<Priority, number> = { high: 0, normal: 1, low: 2 }
const priorityArb = fc.constantFrom<Priority>('high', 'normal', 'low')
const fieldsArb = fc.dictionary(fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 0, max: 9 }), { minKeys: 1 })

/** A queue over memory storage whose every plan is committed, then applied; checks invariants on the way. */
class Harness {
  readonly storage: Storage = createMemoryStorage()
  queue!: Queue
  /** Highest seq ever handed out. */
  maxSeq = 0
  private hlc = 0

  static async open(): Promise<Harness> {
    const h = new Harness()
    h.queue = createQueue({ storage: h.storage, now: () => 1_000 })
    expect(await h.queue.load()).toEqual([])
    return h
  }

  async run<P extends QueuePlan>(plan: P): Promise<P> {
    await this.storage.commit(plan.ops)
    plan.apply()
    this.check()
    return plan
  }

  /** Enqueue, checking that no sent item changes and that seqs only ever grow. */
  async enqueue(input: Omit<EnqueueInput, 'hlc'>): Promise<EnqueuePlan> {
    const sent = this.queue.pending().filter((i) => i.sent)
    const plan = await this.run(this.queue.enqueue({ ...input, hlc: `h${++this.hlc}` }))
    for (const item of sent) expect(this.queue.get(item.seq)).toBe(item)
    if (plan.outcome === 'appended') {
      this.fresh(plan.item!.seq)
      expect(this.queue.lastSeq).toBe(plan.item!.seq)
    }
    return plan
  }

  fresh(seq: number): void {
    expect(seq).toBeGreaterThan(this.maxSeq)
    this.maxSeq = seq
    expect(this.queue.lastSeq).toBeGreaterThanOrEqual(seq)
  }

  /** Replace the queue with one loaded from storage; it must be exactly where the old one was. */
  async reload(): Promise<void> {
    const fresh = createQueue({ storage: this.storage, now: () => 1_000 })
    expect(await fresh.load()).toEqual([])
    expect(fresh.pending()).toEqual(this.queue.pending())
    expect(fresh.failed()).toEqual(this.queue.failed())
    expect(fresh.counts()).toEqual(this.queue.counts())
    expect(fresh.lastSeq).toBe(this.queue.lastSeq)
    this.queue = fresh
    this.check()
    await this.checkMarks()
  }

  /**
   * No sent mark outlives the items it counts for: reading storage as load does (each mark, in
   * order, takes the items whose stored or marked attempt count is lower), every mark in storage
   * still holds at least one item at the end.
   */
  async checkMarks(): Promise<void> {
    const attempts = new Map<number, number>()
    for (const { value } of await this.storage.scan('q/')) attempts.set((value as QueueItem).seq, (value as QueueItem).attempts)
    const holder = new Map<number, string>()
    const marks = await this.storage.scan('s/')
    for (const { key, value } of marks) {
      const mark = value as { seqs: number[]; attempts: number[] }
      mark.seqs.forEach((seq, i) => {
        if (attempts.has(seq) && mark.attempts[i]! > attempts.get(seq)!) {
          attempts.set(seq, mark.attempts[i]!)
          holder.set(seq, key)
        }
      })
    }
    const holding = new Set(holder.values())
    for (const { key } of marks) expect(holding.has(key), `sent mark ${key} counts for no item`).toBe(true)
  }

  /** counts() and size agree with pending() and failed(); each record's items are in seq order. */
  check(): void {
    const pending = this.queue.pending()
    const counts = { creates: 0, updates: 0, deletes: 0, failed: this.queue.failed().length }
    for (const item of pending) counts[`${item.action}s` as 'creates' | 'updates' | 'deletes']++
    expect(this.queue.counts()).toEqual(counts)
    expect(this.queue.size).toBe(pending.length)
    const byRecord = new Map<string, number[]>()
    for (const item of [...pending].sort((a, b) => a.seq - b.seq)) {
      const key = `${item.entityType}/${item.recordId}`
      byRecord.set(key, [...(byRecord.get(key) ?? []), item.seq])
    }
    for (const [key, seqs] of byRecord) {
      const [table, id] = key.split('/') as [string, string]
      expect(this.queue.pendingFor(table, id).map((i) => i.seq)).toEqual(seqs)
      expect(this.queue.pendingCount(table, id)).toBe(seqs.length)
    }
    expect(this.queue.pendingCount('contacts', 'never-queued')).toBe(0)
  }
}

/** Apply a change to a per-record model as the server does; an impossible change is an error. */
function applyTo(rows: Map<string, Row>, id: string, action: QueueItem['action'], data: Readonly<Row> | null): void {
  const current = rows.get(id)
  if (action === 'create') {
    if (current) throw new Error(`create of existing row ${id}`)
    rows.set(id, { ...data })
  } else if (action === 'update') {
    if (!current) throw new Error(`update of missing row ${id}`)
    rows.set(id, { ...current, ...data })
  } else {
    if (!current) throw new Error(`delete of missing row ${id}`)
    rows.delete(id)
  }
}

describe('queue properties', () => {
  it('coalescing law: pushing the queue reaches the state of applying every write in order, exactly once', async () => {
    const stepArb = fc.oneof(
      { weight: 5, arbitrary: fc.record({ type: fc.constant('write' as const), record: fc.nat(3), remove: fc.boolean(), fields: fieldsArb, priority: priorityArb }) },
      {
        weight: 2,
        arbitrary: fc.record({ type: fc.constant('push' as const), limit: fc.integer({ min: 1, max: 6 }), result: fc.constantFrom('ok', 'lost', 'unreached') }),
      },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('reload' as const) }) },
    )
    await fc.assert(
      fc.asyncProperty(fc.array(fc.option(fieldsArb), { minLength: 4, maxLength: 4 }), fc.array(stepArb, { maxLength: 60 }), async (initial, steps) => {
        const h = await Harness.open()
        const server = new Map<string, Row>()
        const expected = new Map<string, Row>()
        initial.forEach((row, i) => {
          if (row) {
            server.set(`r${i}`, { ...row })
            expected.set(`r${i}`, { ...row })
          }
        })
        // The server applies each seq at most once, like the real one.
        const appliedSeqs = new Set<number>()
        const push = async (limit: number, result: string): Promise<void> => {
          const batch = h.queue.nextBatch({ limit })
          if (batch.length === 0) return
          const { items } = await h.run(h.queue.markSent(batch))
          if (result === 'unreached') return
          for (const item of items) {
            if (appliedSeqs.has(item.seq)) continue
            appliedSeqs.add(item.seq)
            applyTo(server, item.recordId, item.action, item.data)
          }
          if (result === 'ok') await h.run(h.queue.ack(items.map((i) => i.seq)))
        }
        for (const step of steps) {
          if (step.type === 'write') {
            const id = `r${step.record}`
            const action = !expected.has(id) ? 'create' : step.remove ? 'delete' : 'update'
            const data = action === 'delete' ? null : step.fields
            applyTo(expected, id, action, data)
            await h.enqueue({ action, entityType: 't', recordId: id, data, priority: step.priority })
          } else if (step.type === 'push') await push(step.limit, step.result)
          else await h.reload()
        }
        for (let i = 0; h.queue.size > 0; i++) {
          expect(i).toBeLessThan(1_000)
          await push(5, 'ok')
        }
        expect(Object.fromEntries(server)).toEqual(Object.fromEntries(expected))
      }),
      params(300),
    )
  })

  it('ordering: FIFO within a record, effective priority then seq across records, whatever is acked or failed; read on from any place', async () => {
    const stepArb = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          type: fc.constant('enqueue' as const),
          record: fc.nat(5),
          action: fc.constantFrom<QueueItem['action']>('create', 'update', 'delete'),
          priority: priorityArb,
          freeze: fc.boolean(),
        }),
      },
      {
        weight: 3,
        arbitrary: fc.record({
          type: fc.constant('batch' as const),
          limit: fc.integer({ min: 1, max: 8 }),
          minPriority: fc.constantFrom<Priority | undefined>(undefined, 'high', 'normal', 'low'),
          acked: fc.nat(8),
        }),
      },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('ackAny' as const), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('failAny' as const), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('retry' as const) }) },
    )
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { maxLength: 80 }), async (steps) => {
        const h = await Harness.open()
        // The test's own model of what is queued: seq → record and priority.
        const model = new Map<number, { record: string; priority: Priority }>()
        const expectedBatch = (limit: number, minPriority: Priority | undefined): number[] => {
          const rankOfRecord = new Map<string, number>()
          for (const { record, priority } of model.values()) rankOfRecord.set(record, Math.min(rankOfRecord.get(record) ?? 2, RANK[priority]))
          return [...model.entries()]
            .map(([seq, { record }]) => ({ seq, rank: rankOfRecord.get(record)! }))
            .filter((e) => e.rank <= RANK[minPriority ?? 'low'])
            .sort((a, b) => a.rank - b.rank || a.seq - b.seq)
            .slice(0, limit)
            .map((e) => e.seq)
        }
        for (const step of steps) {
          if (step.type === 'enqueue') {
            const recordId = `r${step.record}`
            const plan = await h.enqueue({ action: step.action, entityType: 't', recordId, data: step.action === 'delete' ? null : { v: 1 }, priority: step.priority })
            if (plan.outcome === 'cancelled') for (const item of plan.cancelled) model.delete(item.seq)
            else {
              const before = model.get(plan.item!.seq)
              const priority = before && RANK[before.priority] < RANK[step.priority] ? before.priority : step.priority
              expect(plan.item!.priority).toBe(priority)
              model.set(plan.item!.seq, { record: recordId, priority })
              if (step.freeze) await h.run(h.queue.markSent([plan.item!]))
            }
          } else if (step.type === 'batch') {
            const batch = h.queue.nextBatch({ limit: step.limit, minPriority: step.minPriority })
            expect(batch.map((i) => i.seq)).toEqual(expectedBatch(step.limit, step.minPriority))
            // Read on from any item's place: the rest of the order, and nothing before it.
            const order = expectedBatch(Infinity, step.minPriority)
            for (const [k, seq] of order.entries()) {
              const rest = [...h.queue.inDeliveryOrder(step.minPriority, h.queue.deliveryPosition(seq))].map((i) => i.seq)
              expect(rest).toEqual(order.slice(k + 1))
              // The scan reads the same, and stops where its visitor says.
              const scanned: number[] = []
              h.queue.scanInDeliveryOrder((i) => void scanned.push(i.seq), step.minPriority, h.queue.deliveryPosition(seq))
              expect(scanned).toEqual(rest)
              const firstTwo: number[] = []
              h.queue.scanInDeliveryOrder((i) => firstTwo.push(i.seq) < 2, step.minPriority, h.queue.deliveryPosition(seq))
              expect(firstTwo).toEqual(rest.slice(0, 2))
            }
            // Nothing goes before an earlier item of its own record.
            for (const [index, item] of batch.entries()) {
              for (const [seq, entry] of model) {
                if (entry.record === item.recordId && seq < item.seq) expect(batch.slice(0, index).map((i) => i.seq)).toContain(seq)
              }
            }
            const acked = batch.slice(0, step.acked).map((i) => i.seq)
            await h.run(h.queue.markSent(batch))
            await h.run(h.queue.ack(acked))
            for (const seq of acked) model.delete(seq)
          } else if (step.type === 'ackAny' || step.type === 'failAny') {
            const seqs = [...model.keys()]
            if (seqs.length === 0) continue
            const seq = seqs[step.pick % seqs.length]!
            if (step.type === 'ackAny') expect((await h.run(h.queue.ack([seq]))).removed).toHaveLength(1)
            else expect((await h.run(h.queue.fail(seq, { kind: 'permanent', message: 'no' }))).item).not.toBeNull()
            model.delete(seq)
          } else {
            const { retried } = await h.run(h.queue.retryFailed())
            for (const item of retried) {
              h.fresh(item.seq)
              model.set(item.seq, { record: item.recordId, priority: item.priority })
            }
          }
        }
        await h.reload()
        expect(h.queue.pending().map((i) => i.seq)).toEqual(expectedBatch(Infinity, undefined))
      }),
      params(300),
    )
  })

  it('seqs strictly increase and are never reused, across any operations and reloads; a reload resumes exactly', async () => {
    const pickArb = fc.nat()
    const stepArb = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({
          type: fc.constant('enqueue' as const),
          record: fc.nat(3),
          action: fc.constantFrom<QueueItem['action']>('create', 'update', 'delete'),
          fields: fieldsArb,
          priority: priorityArb,
        }),
      },
      { weight: 2, arbitrary: fc.record({ type: fc.constant('markSent' as const), pick: pickArb }) },
      { weight: 2, arbitrary: fc.record({ type: fc.constant('ack' as const), pick: pickArb }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('fail' as const), pick: pickArb }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('recordError' as const), pick: pickArb }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('retry' as const), all: fc.boolean(), pick: pickArb }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('discard' as const), pick: pickArb }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('rebase' as const), record: fc.nat(3), version: fc.nat(20) }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('remap' as const), record: fc.nat(3) }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('clear' as const), includeSent: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ type: fc.constant('optimize' as const) }) },
      { weight: 2, arbitrary: fc.record({ type: fc.constant('reload' as const) }) },
    )
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { maxLength: 60 }), async (steps) => {
        const h = await Harness.open()
        const pick = <T>(xs: readonly T[], n: number): T | undefined => (xs.length ? xs[n % xs.length] : undefined)
        for (const step of steps) {
          const pending = h.queue.pending()
          const failed = h.queue.failed()
          switch (step.type) {
            case 'enqueue': {
              const recordId = `r${step.record}`
              await h.enqueue({ action: step.action, entityType: 't', recordId, data: step.action === 'delete' ? null : step.fields, priority: step.priority })
              break
            }
            case 'markSent': {
              const item = pick(pending, step.pick)
              if (item) await h.run(h.queue.markSent([item]))
              break
            }
            case 'ack': {
              const item = pick(pending, step.pick)
              if (item) await h.run(h.queue.ack([item.seq]))
              break
            }
            case 'fail': {
              const item = pick(pending, step.pick)
              if (item) await h.run(h.queue.fail(item.seq, { kind: 'permanent', code: '23514', message: 'rejected' }))
              break
            }
            case 'recordError': {
              const item = pick(pending, step.pick)
              if (item) await h.run(h.queue.recordError(item.seq, { kind: 'network', message: 'offline' }))
              break
            }
            case 'retry': {
              const one = pick(failed, step.pick)
              const { retried } = await h.run(h.queue.retryFailed(step.all ? undefined : one ? [one.id] : []))
              for (const item of retried) h.fresh(item.seq)
              break
            }
            case 'discard': {
              const one = pick(failed, step.pick)
              if (one) await h.run(h.queue.discardFailed([one.id]))
              break
            }
            case 'rebase':
              await h.run(h.queue.rebase('t', `r${step.record}`, step.version))
              break
            case 'remap':
              await h.run(h.queue.remap('t', `r${step.record}`, `r${(step.record + 1) % 4}`))
              break
            case 'clear':
              await h.run(h.queue.clear({ includeSent: step.includeSent }))
              break
            case 'optimize':
              await h.run(h.queue.optimize())
              break
            case 'reload':
              await h.reload()
              break
          }
        }
        await h.reload()
        const next = await h.run(h.queue.enqueue({ action: 'create', entityType: 't', recordId: 'fresh', data: {}, hlc: 'h' }))
        h.fresh(next.item!.seq)
      }),
      params(300),
    )
  })

  it('a sent item is never modified by later writes to its record', async () => {
    const writeArb = fc.record({ action: fc.constantFrom<QueueItem['action']>('create', 'update', 'delete'), fields: fieldsArb, send: fc.boolean() })
    await fc.assert(
      fc.asyncProperty(fc.array(writeArb, { minLength: 1, maxLength: 30 }), async (writes) => {
        const h = await Harness.open()
        const sent = new Map<number, QueueItem>()
        for (const write of writes) {
          const plan = await h.enqueue({ action: write.action, entityType: 't', recordId: 'r', data: write.action === 'delete' ? null : write.fields })
          if (write.send && plan.item) {
            const { items } = await h.run(h.queue.markSent([plan.item]))
            sent.set(items[0]!.seq, items[0]!)
          }
          for (const [seq, item] of sent) expect(h.queue.get(seq)).toBe(item)
        }
        await h.reload()
        for (const [seq, item] of sent) expect(h.queue.get(seq)).toEqual(item)
      }),
      params(300),
    )
  })

  it('SortedNumberSet behaves as a sorted set of distinct numbers, read whole or after any value', () => {
    const opArb = fc.record({ add: fc.boolean(), value: fc.integer({ min: 0, max: 6_000 }) })
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 5_000 }), (ops) => {
        const set = new SortedNumberSet()
        const model = new Set<number>()
        for (const { add, value } of ops) {
          if (add) expect(set.add(value)).toBe(!model.has(value))
          else expect(set.delete(value)).toBe(model.has(value))
          if (add) model.add(value)
          else model.delete(value)
        }
        expect([...set.values()]).toEqual([...model].sort((a, b) => a - b))
        expect(set.size).toBe(model.size)
        for (const value of [0, 1, 3_000, 6_000]) expect(set.has(value)).toBe(model.has(value))
        const sorted = [...model].sort((a, b) => a - b)
        const all: number[] = []
        set.forEachAfter(undefined, (x) => void all.push(x))
        expect(all).toEqual(sorted)
        for (const value of [-1, 0, 1, 2_999, 3_000, 6_000, ...sorted.slice(0, 3), ...sorted.slice(-3)]) {
          expect([...set.valuesAfter(value)]).toEqual(sorted.filter((x) => x > value))
          const visited: number[] = []
          expect(set.forEachAfter(value, (x) => void visited.push(x))).toBe(true)
          expect(visited).toEqual(sorted.filter((x) => x > value))
          // A visitor returning false stops the walk, which says so.
          const upTo: number[] = []
          const whole = set.forEachAfter(value, (x) => upTo.push(x) < 3)
          expect(upTo).toEqual(sorted.filter((x) => x > value).slice(0, 3))
          expect(whole).toBe(upTo.length < 3)
        }
      }),
      params(100),
    )
  })
})
