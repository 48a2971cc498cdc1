import { beforeEach, describe, expect, it } from 'vitest'
import { createQueue, StaleQueuePlanError, type EnqueueInput, type Queue, type QueuePlan } from '../../src/core/queue.js'
import { seqKey } from '../../src/core/queueItem.js'
import { createMemoryStorage } from '../../src/storage/memory.js'
import { StorageError } from '../../src/core/errors.js'
import type { Storage } from '../../src/core/storage.js'
import type { Logger } from '../../src/core/logger.js'

let clock = 1_000
const now = (): number => clock

async function commit<P extends QueuePlan>(storage: Storage, plan: P): Promise<P> {
  await storage.commit(plan.ops)
  plan.apply()
  return plan
}

async function open(storage: Storage = createMemoryStorage()): Promise<{ storage: Storage; queue: Queue; run: <P extends QueuePlan>(plan: P) => Promise<P> }> {
  const queue = createQueue({ storage, now })
  expect(await queue.load()).toEqual([])
  return { storage, queue, run: (plan) => commit(storage, plan) }
}

function write(action: EnqueueInput['action'], recordId: string, data: Record<string, unknown> | null, extra: Partial<EnqueueInput> = {}): EnqueueInput {
  return { action, entityType: 'contacts', recordId, data, hlc: `h${clock++}`, ...extra }
}

/** A fresh queue over the same storage must be exactly where `queue` is. */
async function expectResumes(storage: Storage, queue: Queue): Promise<void> {
  const fresh = createQueue({ storage, now })
  expect(await fresh.load()).toEqual([])
  expect(fresh.pending()).toEqual(queue.pending())
  expect(fresh.failed()).toEqual(queue.failed())
  expect(fresh.counts()).toEqual(queue.counts())
  expect(fresh.size).toBe(queue.size)
  expect(fresh.lastSeq).toBe(queue.lastSeq)
  const probe = write('create', `probe-${clock}`, { x: 1 })
  expect(fresh.enqueue(probe).item!.seq).toBe(queue.enqueue(probe).item!.seq)
}

async function queueKeys(storage: Storage): Promise<string[]> {
  return (await storage.scan('q/')).map((e) => e.key)
}

beforeEach(() => {
  clock = 1_000
})

describe('enqueue', () => {
  it('appends items with increasing seqs, one key each plus the counter', async () => {
    const { storage, queue, run } = await open()
    const a = await run(queue.enqueue(write('create', 'a', { id: 'a', name: 'Ann' })))
    const b = await run(queue.enqueue(write('create', 'b', { id: 'b', name: 'Bob' })))
    expect(a.outcome).toBe('appended')
    expect(a.ops).toEqual([
      { type: 'set', key: seqKey('q/', 1), value: a.item },
      { type: 'set', key: 'meta/nextSeq', value: 2 },
    ])
    expect([a.item!.seq, b.item!.seq]).toEqual([1, 2])
    expect(a.item).toMatchObject({ action: 'create', entityType: 'contacts', recordId: 'a', localId: 'a', remoteId: null, baseVersion: null, attempts: 0, lastAttempt: null, error: null, priority: 'normal', sent: false })
    expect(await queueKeys(storage)).toEqual([seqKey('q/', 1), seqKey('q/', 2)])
    expect(queue.lastSeq).toBe(2)
    expect(await storage.get('meta/nextSeq')).toBe(3)
    await expectResumes(storage, queue)
  })

  it('costs the same number of ops however long the queue is', async () => {
    const { queue, run } = await open()
    for (let i = 0; i < 2_000; i++) await run(queue.enqueue(write('create', `r${i}`, { i })))
    const plan = queue.enqueue(write('create', 'last', { i: -1 }))
    expect(plan.ops).toHaveLength(2)
    expect(queue.enqueue(write('update', 'r5', { i: 6 })).ops).toHaveLength(1)
  })

  it('copies and freezes what it stores', async () => {
    const { queue, run } = await open()
    const data = { id: 'a', tags: ['x'] as string[] }
    const { item } = await run(queue.enqueue(write('create', 'a', data)))
    data.id = 'changed'
    expect(queue.get(item!.seq)!.data).toEqual({ id: 'a', tags: ['x'] })
    expect(Object.isFrozen(item)).toBe(true)
    expect(Object.isFrozen(item!.data)).toBe(true)
  })

  it('rejects malformed input with a TypeError and changes nothing', async () => {
    const { queue } = await open()
    expect(() => queue.enqueue(write('update', 'a', null))).toThrow(TypeError)
    expect(() => queue.enqueue(write('delete', 'a', { x: 1 }))).toThrow(TypeError)
    expect(() => queue.enqueue(write('create', '', { x: 1 }))).toThrow(TypeError)
    expect(() => queue.enqueue({ ...write('create', 'a', { x: 1 }), action: 'upsert' as never })).toThrow(TypeError)
    expect(() => queue.enqueue({ ...write('create', 'a', { x: 1 }), priority: 'urgent' as never })).toThrow(TypeError)
    expect(() => queue.enqueue({ ...write('create', 'a', { x: 1 }), priority: 'constructor' as never })).toThrow(TypeError)
    expect(() => queue.enqueue({ ...write('update', 'a', { x: 1 }), baseVersion: 1.5 })).toThrow(TypeError)
    expect(queue.size).toBe(0)
  })

  it('refuses to change an unloaded queue, since it cannot know which seqs are taken', () => {
    const queue = createQueue({ storage: createMemoryStorage() })
    expect(() => queue.enqueue(write('create', 'a', { x: 1 }))).toThrow(/not loaded/)
    expect(queue.size).toBe(0)
  })
})

describe('coalescing', () => {
  it('merges update+update into one update: later wins per field, first base version kept', async () => {
    const { storage, queue, run } = await open()
    const first = await run(queue.enqueue(write('update', 'a', { name: 'A', age: 1 }, { baseVersion: 3 })))
    const second = await run(queue.enqueue(write('update', 'a', { age: 2, city: 'Oslo' }, { baseVersion: 4, priority: 'high' })))
    expect(second.outcome).toBe('coalesced')
    expect(second.ops).toHaveLength(1)
    expect(queue.size).toBe(1)
    expect(queue.pendingFor('contacts', 'a')).toEqual([
      expect.objectContaining({
        id: first.item!.id,
        seq: first.item!.seq,
        action: 'update',
        data: { name: 'A', age: 2, city: 'Oslo' },
        baseVersion: 3,
        hlc: second.item!.hlc,
        timestamp: first.item!.timestamp,
        priority: 'high',
      }),
    ])
    expect(second.item!.hlc).not.toBe(first.item!.hlc)
    await expectResumes(storage, queue)
  })

  it('folds an update into an unsent create', async () => {
    const { queue, run } = await open()
    await run(queue.enqueue(write('create', 'a', { id: 'a', name: 'A', age: 1 })))
    const plan = await run(queue.enqueue(write('update', 'a', { age: 2 })))
    expect(plan.outcome).toBe('coalesced')
    expect(queue.pending()).toEqual([expect.objectContaining({ action: 'create', data: { id: 'a', name: 'A', age: 2 } })])
    expect(queue.counts()).toEqual({ creates: 1, updates: 0, deletes: 0, failed: 0 })
  })

  it('cancels create+delete: nothing is stored or sent, and the seq is not handed out again', async () => {
    const { storage, queue, run } = await open()
    const created = await run(queue.enqueue(write('create', 'a', { id: 'a' })))
    await run(queue.enqueue(write('update', 'a', { name: 'x' })))
    const deleted = await run(queue.enqueue(write('delete', 'a', null)))
    expect(deleted.outcome).toBe('cancelled')
    expect(deleted.item).toBeNull()
    expect(deleted.cancelled).toEqual([expect.objectContaining({ seq: created.item!.seq, action: 'create', data: { id: 'a', name: 'x' } })])
    expect(deleted.ops).toEqual([{ type: 'delete', key: seqKey('q/', created.item!.seq) }])
    expect(queue.size).toBe(0)
    expect(queue.pendingFor('contacts', 'a')).toEqual([])
    expect(await queueKeys(storage)).toEqual([])
    const next = await run(queue.enqueue(write('create', 'b', {})))
    expect(next.item!.seq).toBeGreaterThan(created.item!.seq)
    await expectResumes(storage, queue)
  })

  it('turns update+delete into a delete keeping the first base version', async () => {
    const { queue, run } = await open()
    await run(queue.enqueue(write('update', 'a', { name: 'x' }, { baseVersion: 7 })))
    const plan = await run(queue.enqueue(write('delete', 'a', null, { baseVersion: 8 })))
    expect(plan.outcome).toBe('coalesced')
    expect(queue.pending()).toEqual([expect.objectContaining({ action: 'delete', data: null, baseVersion: 7 })])
    expect(queue.counts()).toEqual({ creates: 0, updates: 0, deletes: 1, failed: 0 })
  })

  it('never touches an item that was sent: later writes append behind it', async () => {
    const { storage, queue, run } = await open()
    const created = await run(queue.enqueue(write('create', 'a', { id: 'a', n: 1 })))
    await run(queue.markSent([created.item!]))
    const sentItem = queue.get(created.item!.seq)
    const update = await run(queue.enqueue(write('update', 'a', { n: 2 })))
    expect(update.outcome).toBe('appended')
    const del = await run(queue.enqueue(write('delete', 'a', null)))
    expect(del.outcome).toBe('coalesced')
    expect(queue.get(created.item!.seq)).toBe(sentItem)
    expect(queue.pendingFor('contacts', 'a').map((i) => [i.action, i.sent])).toEqual([
      ['create', true],
      ['delete', false],
    ])
    await expectResumes(storage, queue)
  })

  it('only folds into the last item of the same record', async () => {
    const { queue, run } = await open()
    await run(queue.enqueue(write('delete', 'a', null)))
    const recreate = await run(queue.enqueue(write('create', 'a', { id: 'a' })))
    expect(recreate.outcome).toBe('appended')
    const other = await run(queue.enqueue(write('update', 'b', { n: 1 })))
    expect(other.outcome).toBe('appended')
    const update = await run(queue.enqueue(write('update', 'a', { n: 1 })))
    expect(update.outcome).toBe('coalesced')
    expect(queue.pending().map((i) => [i.recordId, i.action, i.data])).toEqual([
      ['a', 'delete', null],
      ['a', 'create', { id: 'a', n: 1 }],
      ['b', 'update', { n: 1 }],
    ])
  })

  it('keeps records of different tables apart', async () => {
    const { queue, run } = await open()
    await run(queue.enqueue(write('update', 'a', { n: 1 })))
    const other = await run(queue.enqueue({ ...write('update', 'a', { n: 2 }), entityType: 'images' }))
    expect(other.outcome).toBe('appended')
    expect(queue.pendingFor('images', 'a')).toHaveLength(1)
    expect(queue.pendingFor('contacts', 'a')).toHaveLength(1)
  })
})

describe('ordering', () => {
  it('orders records by priority then seq, and each record strictly FIFO', async () => {
    const { queue, run } = await open()
    const low1 = await run(queue.enqueue(write('create', 'l', {}, { priority: 'low' })))
    const norm = await run(queue.enqueue(write('create', 'n', {}, { priority: 'normal' })))
    const high = await run(queue.enqueue(write('create', 'h', {}, { priority: 'high' })))
    await run(queue.markSent([low1.item!]))
    const low2 = await run(queue.enqueue(write('update', 'l', { x: 1 }, { priority: 'low' })))
    const seqs = (items: { seq: number }[]): number[] => items.map((i) => i.seq)
    expect(seqs(queue.nextBatch({ limit: 10 }))).toEqual([high.item!.seq, norm.item!.seq, low1.item!.seq, low2.item!.seq])
    expect(seqs(queue.nextBatch({ limit: 2 }))).toEqual([high.item!.seq, norm.item!.seq])
    expect(seqs(queue.nextBatch({ limit: 10, minPriority: 'normal' }))).toEqual([high.item!.seq, norm.item!.seq])
    expect(seqs(queue.nextBatch({ limit: 10, minPriority: 'high' }))).toEqual([high.item!.seq])
    expect(queue.nextBatch({ limit: 0 })).toEqual([])
    expect(queue.pending()).toEqual(queue.nextBatch({ limit: Infinity }))
  })

  it('promotes a record whose queue holds a high item behind a low one, and demotes it once that item is gone', async () => {
    const { storage, queue, run } = await open()
    const low = await run(queue.enqueue(write('create', 'a', { id: 'a' }, { priority: 'low' })))
    await run(queue.markSent([low.item!]))
    const high = await run(queue.enqueue(write('update', 'a', { n: 1 }, { priority: 'high' })))
    const normal = await run(queue.enqueue(write('create', 'b', {}, { priority: 'normal' })))
    const order = (options: { limit: number; minPriority?: 'high' }): number[] => queue.nextBatch(options).map((i) => i.seq)
    // The low create must go first for the high update to go at all: both go as high work.
    expect(order({ limit: 10, minPriority: 'high' })).toEqual([low.item!.seq, high.item!.seq])
    expect(order({ limit: 10 })).toEqual([low.item!.seq, high.item!.seq, normal.item!.seq])
    await expectResumes(storage, queue)
    await run(queue.ack([low.item!.seq, high.item!.seq]))
    const lowAgain = await run(queue.enqueue(write('update', 'a', { n: 2 }, { priority: 'low' })))
    expect(order({ limit: 10 })).toEqual([normal.item!.seq, lowAgain.item!.seq])
    expect(order({ limit: 10, minPriority: 'high' })).toEqual([])
  })

  it('raises a coalesced item to the higher of the two priorities', async () => {
    const { queue, run } = await open()
    await run(queue.enqueue(write('update', 'a', { n: 1 }, { priority: 'low' })))
    await run(queue.enqueue(write('update', 'b', { n: 1 }, { priority: 'normal' })))
    await run(queue.enqueue(write('update', 'a', { n: 2 }, { priority: 'high' })))
    expect(queue.nextBatch({ limit: 10 }).map((i) => [i.recordId, i.priority])).toEqual([
      ['a', 'high'],
      ['b', 'normal'],
    ])
  })
})

describe('push results', () => {
  it('markSent freezes the base version on the first send only and counts attempts', async () => {
    const { storage, queue, run } = await open()
    const { item } = await run(queue.enqueue(write('update', 'a', { n: 1 }, { baseVersion: 1 })))
    const first = await run(queue.markSent([item!], { now: 50, baseVersions: new Map([[item!.seq, 5]]) }))
    expect(first.items).toEqual([expect.objectContaining({ seq: item!.seq, sent: true, attempts: 1, lastAttempt: 50, baseVersion: 5 })])
    const second = await run(queue.markSent([item!.seq, item!.seq, 999], { now: 60, baseVersions: new Map([[item!.seq, 9]]) }))
    expect(second.items).toEqual([expect.objectContaining({ attempts: 2, lastAttempt: 60, baseVersion: 5 })])
    // The second attempt's mark replaces the first, which counted for nothing else.
    expect(second.ops).toEqual([
      { type: 'set', key: seqKey('s/', 2), value: { at: 60, seqs: [item!.seq], attempts: [2], bases: [5] } },
      { type: 'delete', key: seqKey('s/', 1), value: undefined },
    ])
    await expectResumes(storage, queue)
  })

  it('markSent returns the stored items, even when the caller holds an older copy', async () => {
    const { queue, run } = await open()
    const picked = (await run(queue.enqueue(write('update', 'a', { n: 1 })))).item!
    await run(queue.enqueue(write('update', 'a', { m: 2 })))
    const plan = await run(queue.markSent([picked]))
    expect(plan.items[0]!.data).toEqual({ n: 1, m: 2 })
  })

  it('ack removes answered items and ignores unknown seqs', async () => {
    const { storage, queue, run } = await open()
    const a = await run(queue.enqueue(write('create', 'a', {})))
    const b = await run(queue.enqueue(write('create', 'b', {})))
    const plan = await run(queue.ack([a.item!.seq, a.item!.seq, 12345]))
    expect(plan.removed.map((i) => i.seq)).toEqual([a.item!.seq])
    expect(plan.ops).toEqual([{ type: 'delete', key: seqKey('q/', a.item!.seq) }])
    expect(queue.pending().map((i) => i.seq)).toEqual([b.item!.seq])
    expect(queue.ack([a.item!.seq]).ops).toEqual([])
    await expectResumes(storage, queue)
  })

  it('recordError keeps the item in place with the error, without counting another attempt', async () => {
    const { storage, queue, run } = await open()
    const { item } = await run(queue.enqueue(write('update', 'a', { n: 1 })))
    await run(queue.markSent([item!]))
    await run(queue.recordError(item!.seq, { kind: 'network', message: 'offline' }))
    expect(queue.get(item!.seq)).toMatchObject({ attempts: 1, error: { kind: 'network', message: 'offline' }, sent: true })
    expect(queue.nextBatch({ limit: 1 })[0]!.seq).toBe(item!.seq)
    expect(() => queue.recordError(item!.seq, { message: 'x' } as never)).toThrow(TypeError)
    await expectResumes(storage, queue)
  })

  it('fail moves the item to the dead-letter store with its reason; later items of the record go on', async () => {
    const { storage, queue, run } = await open()
    const create = await run(queue.enqueue(write('create', 'a', { id: 'a' })))
    await run(queue.markSent([create.item!]))
    const update = await run(queue.enqueue(write('update', 'a', { n: 1 })))
    clock = 5_000
    const plan = await run(queue.fail(create.item!.seq, { kind: 'permanent', code: '23514', message: 'check violation' }))
    expect(plan.item).toMatchObject({ seq: create.item!.seq, error: { kind: 'permanent', code: '23514', message: 'check violation' }, failedAt: 5_000 })
    expect(queue.failed()).toEqual([plan.item])
    expect(queue.counts()).toEqual({ creates: 0, updates: 1, deletes: 0, failed: 1 })
    expect(queue.pending().map((i) => i.seq)).toEqual([update.item!.seq])
    expect((await storage.scan('f/')).map((e) => e.key)).toEqual([seqKey('f/', create.item!.seq)])
    expect(queue.fail(424242, { kind: 'permanent', message: 'x' })).toMatchObject({ item: null, ops: [] })
    await expectResumes(storage, queue)
  })

  it('retryFailed puts items back with new seqs at the back of their record; discardFailed drops them', async () => {
    const { storage, queue, run } = await open()
    const a = await run(queue.enqueue(write('create', 'a', { id: 'a' })))
    const b = await run(queue.enqueue(write('create', 'b', { id: 'b' })))
    await run(queue.markSent([a.item!, b.item!]))
    await run(queue.fail(a.item!.seq, { kind: 'permanent', message: 'no' }))
    await run(queue.fail(b.item!.seq, { kind: 'permanent', message: 'no' }))
    const later = await run(queue.enqueue(write('update', 'a', { n: 1 })))
    const retry = await run(queue.retryFailed([a.item!.id, 'unknown']))
    expect(retry.retried).toEqual([
      expect.objectContaining({ id: a.item!.id, action: 'create', sent: false, attempts: 0, lastAttempt: null, error: null }),
    ])
    const retried = retry.retried[0]!
    expect(retried.seq).toBeGreaterThan(later.item!.seq)
    expect(queue.pendingFor('contacts', 'a').map((i) => i.seq)).toEqual([later.item!.seq, retried.seq])
    expect(queue.failed().map((i) => i.id)).toEqual([b.item!.id])
    await expectResumes(storage, queue)
    const discard = await run(queue.discardFailed())
    expect(discard.discarded.map((i) => i.id)).toEqual([b.item!.id])
    expect(queue.failed()).toEqual([])
    expect(await storage.scan('f/')).toEqual([])
    const next = await run(queue.enqueue(write('create', 'z', {})))
    expect(next.item!.seq).toBeGreaterThan(retried.seq)
    await expectResumes(storage, queue)
  })

  it('rebase moves unsent updates and deletes of the record to the new version only', async () => {
    const { storage, queue, run } = await open()
    const sent = await run(queue.enqueue(write('update', 'a', { n: 1 }, { baseVersion: 1 })))
    await run(queue.markSent([sent.item!]))
    const unsent = await run(queue.enqueue(write('update', 'a', { n: 2 }, { baseVersion: 1 })))
    const create = await run(queue.enqueue(write('create', 'b', { id: 'b' })))
    const other = await run(queue.enqueue(write('update', 'c', { n: 1 }, { baseVersion: 1 })))
    await run(queue.rebase('contacts', 'a', 2))
    await run(queue.rebase('contacts', 'b', 2))
    expect(queue.get(sent.item!.seq)!.baseVersion).toBe(1)
    expect(queue.get(unsent.item!.seq)!.baseVersion).toBe(2)
    expect(queue.get(create.item!.seq)!.baseVersion).toBeNull()
    expect(queue.get(other.item!.seq)!.baseVersion).toBe(1)
    expect(queue.rebase('contacts', 'a', 2).ops).toEqual([])
    await expectResumes(storage, queue)
  })

  it('remap gives the record its server id and re-keys its queue, dead letters included', async () => {
    const { storage, queue, run } = await open()
    const create = await run(queue.enqueue(write('create', 'local:1', { name: 'A' })))
    await run(queue.markSent([create.item!]))
    const update = await run(queue.enqueue(write('update', 'local:1', { name: 'B' })))
    await run(queue.markSent([update.item!]))
    await run(queue.fail(update.item!.seq, { kind: 'permanent', message: 'x' }))
    const del = await run(queue.enqueue(write('delete', 'local:1', null)))
    await run(queue.ack([create.item!.seq]))
    await run(queue.remap('contacts', 'local:1', '42'))
    expect(queue.pendingFor('contacts', 'local:1')).toEqual([])
    expect(queue.pendingFor('contacts', '42')).toEqual([expect.objectContaining({ seq: del.item!.seq, recordId: '42', localId: 'local:1', remoteId: '42' })])
    expect(queue.failed()).toEqual([expect.objectContaining({ recordId: '42', localId: 'local:1', remoteId: '42' })])
    // A later write under the server id lines up behind (and coalesces with) the remapped item.
    const after = await run(queue.enqueue(write('update', '42', { name: 'C' })))
    expect(after.outcome).toBe('appended')
    await run(queue.retryFailed())
    expect(queue.pendingFor('contacts', '42').map((i) => i.action)).toEqual(['delete', 'update', 'update'])
    await expectResumes(storage, queue)
  })

  it('clear discards unsent items and keeps sent ones unless asked', async () => {
    const { storage, queue, run } = await open()
    const a = await run(queue.enqueue(write('create', 'a', {})))
    await run(queue.markSent([a.item!]))
    const b = await run(queue.enqueue(write('update', 'a', { n: 1 })))
    const c = await run(queue.enqueue(write('create', 'c', {})))
    const plan = await run(queue.clear())
    expect(plan.discarded.map((i) => i.seq)).toEqual([b.item!.seq, c.item!.seq])
    expect(queue.pending().map((i) => i.seq)).toEqual([a.item!.seq])
    await expectResumes(storage, queue)
    const all = await run(queue.clear({ includeSent: true }))
    expect(all.discarded.map((i) => i.seq)).toEqual([a.item!.seq])
    expect(queue.size).toBe(0)
    expect(queue.counts()).toEqual({ creates: 0, updates: 0, deletes: 0, failed: 0 })
    await expectResumes(storage, queue)
  })

  it('optimize folds adjacent unsent items the way enqueue would have', async () => {
    const { storage, queue, run } = await open()
    const u1 = await run(queue.enqueue(write('update', 'a', { n: 1 })))
    await run(queue.markSent([u1.item!]))
    await run(queue.fail(u1.item!.seq, { kind: 'permanent', message: 'x' }))
    const u2 = await run(queue.enqueue(write('update', 'a', { m: 2 })))
    await run(queue.retryFailed())
    expect(queue.pendingFor('contacts', 'a')).toHaveLength(2)
    const plan = await run(queue.optimize())
    expect(plan.removed).toBe(1)
    expect(queue.pendingFor('contacts', 'a')).toEqual([expect.objectContaining({ seq: u2.item!.seq, data: { m: 2, n: 1 } })])
    expect(queue.optimize().ops).toEqual([])
    await expectResumes(storage, queue)
  })
})

describe('plans', () => {
  it('build every storage op with one shape (type, key, value), deletes included', async () => {
    // The storage's commit loop is compiled for the ops it has seen: an op of another shape (a
    // delete without `value`) arriving mid-sync sends it back to be compiled again.
    const { queue, run } = await open()
    const plans: QueuePlan[] = []
    const keep = async <P extends QueuePlan>(plan: P): Promise<P> => (plans.push(plan), run(plan))
    const a = await keep(queue.enqueue(write('create', 'a', { id: 'a' })))
    const b = await keep(queue.enqueue(write('create', 'b', { id: 'b' })))
    const c = await keep(queue.enqueue(write('create', 'c', { id: 'c' })))
    await keep(queue.markSent([a.item!, b.item!]))
    await keep(queue.ack([a.item!.seq]))
    await keep(queue.fail(b.item!.seq, { kind: 'permanent', message: 'no' }))
    await keep(queue.retryFailed())
    await keep(queue.enqueue(write('delete', 'c', null)))
    const ops = plans.flatMap((plan) => plan.ops)
    expect(new Set(ops.map((op) => op.type))).toEqual(new Set(['set', 'delete']))
    for (const op of ops) expect(Object.keys(op)).toEqual(['type', 'key', 'value'])
    expect(c.item).not.toBeNull()
  })

  it('leave the queue unchanged when the commit fails and apply is not called', async () => {
    const memory = createMemoryStorage()
    let failCommits = false
    const storage: Storage = {
      ...memory,
      commit: async (ops) => {
        if (failCommits) throw new StorageError('quota-exceeded', 'full')
        return memory.commit(ops)
      },
    }
    const { queue, run } = await open(storage)
    await run(queue.enqueue(write('create', 'a', { id: 'a' })))
    const before = queue.pending()
    failCommits = true
    await expect(run(queue.enqueue(write('update', 'a', { n: 1 })))).rejects.toThrow(StorageError)
    await expect(run(queue.enqueue(write('create', 'b', {})))).rejects.toThrow(StorageError)
    expect(queue.pending()).toEqual(before)
    failCommits = false
    await expectResumes(storage, queue)
  })

  it('refuse to apply once another plan has been applied; applying twice does nothing', async () => {
    const { queue } = await open()
    const first = queue.enqueue(write('create', 'a', {}))
    const second = queue.enqueue(write('create', 'b', {}))
    first.apply()
    first.apply()
    expect(queue.size).toBe(1)
    expect(() => second.apply()).toThrow(StaleQueuePlanError)
    expect(queue.size).toBe(1)
    const empty = queue.ack([999])
    queue.enqueue(write('create', 'c', {})).apply()
    expect(() => empty.apply()).not.toThrow()
  })

  it('made before a reload are stale', async () => {
    const { queue, run } = await open()
    await run(queue.enqueue(write('create', 'a', {})))
    const plan = queue.ack([1])
    await queue.load()
    expect(() => plan.apply()).toThrow(StaleQueuePlanError)
  })
})

describe('sent marks', () => {
  it('markSent writes one mark for the call and leaves the items\' entries as they were', async () => {
    const { storage, queue, run } = await open()
    const a = (await run(queue.enqueue(write('create', 'a', { id: 'a' })))).item!
    const b = (await run(queue.enqueue(write('update', 'b', { n: 1 }, { baseVersion: 3 })))).item!
    const plan = await run(queue.markSent([a, b], { now: 70, baseVersions: new Map([[b.seq, 4]]) }))
    expect(plan.ops).toEqual([{ type: 'set', key: seqKey('s/', 1), value: { at: 70, seqs: [a.seq, b.seq], attempts: [1, 1], bases: [null, 4] } }])
    expect(await storage.get(seqKey('q/', b.seq))).toEqual(b)
    expect(queue.get(b.seq)).toMatchObject({ sent: true, attempts: 1, lastAttempt: 70, baseVersion: 4 })
    await expectResumes(storage, queue)
    // Reloaded, the items are sent: a later write to the record is not folded into them.
    const fresh = createQueue({ storage, now })
    await fresh.load()
    expect(fresh.enqueue(write('update', 'b', { n: 2 })).outcome).toBe('appended')
  })

  it('a mark is deleted by the commit that removes or rewrites the last item it counts for', async () => {
    const { storage, queue, run } = await open()
    const items = []
    for (const id of ['a', 'b', 'c']) items.push((await run(queue.enqueue(write('create', id, { id })))).item!)
    const [a, b, c] = items as [typeof items[0], typeof items[0], typeof items[0]]
    await run(queue.markSent([a, b, c]))
    const marks = async () => (await storage.scan('s/')).map((e) => e.key)
    expect((await run(queue.ack([a.seq]))).ops).toEqual([{ type: 'delete', key: seqKey('q/', a.seq), value: undefined }])
    await run(queue.recordError(b.seq, { kind: 'network', message: 'offline' }))
    expect(await marks()).toEqual([seqKey('s/', 1)])
    // b's entry is whole now (attempts 1): the mark's entry for it no longer counts.
    expect(await storage.get(seqKey('q/', b.seq))).toMatchObject({ sent: true, attempts: 1 })
    await expectResumes(storage, queue)
    await run(queue.fail(c.seq, { kind: 'permanent', message: 'no' }))
    expect(await marks()).toEqual([])
    await expectResumes(storage, queue)
    // Sent again: a new mark; acked: gone with it.
    await run(queue.markSent([b]))
    expect(await marks()).toEqual([seqKey('s/', 2)])
    await run(queue.ack([b.seq]))
    expect(await marks()).toEqual([])
    expect(await storage.scan('q/')).toEqual([])
  })

  it('an unreadable mark makes every queued item count as sent; settle then writes them whole', async () => {
    const { storage, queue, run } = await open()
    const a = (await run(queue.enqueue(write('update', 'a', { n: 1 })))).item!
    const b = (await run(queue.enqueue(write('update', 'b', { n: 1 })))).item!
    await run(queue.markSent([a]))
    await run(queue.markSent([b]))
    await storage.commit([{ type: 'set', key: seqKey('s/', 1), value: { at: 'garbled' } }])
    const fresh = createQueue({ storage, now })
    const problems = await fresh.load()
    expect(problems).toEqual([expect.objectContaining({ key: seqKey('s/', 1), problem: expect.stringMatching(/invalid sent mark.*counts as sent/) })])
    expect(fresh.pending().map((i) => [i.seq, i.sent, i.attempts])).toEqual([
      [a.seq, true, 0],
      [b.seq, true, 1],
    ])
    expect(fresh.enqueue(write('update', 'a', { n: 2 })).outcome).toBe('appended')
    // What repair does: settle, then drop the damaged mark. Nothing sent looks unsent afterwards.
    const settle = fresh.settle()
    await storage.commit([...settle.ops, { type: 'delete', key: seqKey('s/', 1) }])
    settle.apply()
    expect(await storage.scan('s/')).toEqual([])
    await expectResumes(storage, fresh)
    expect(fresh.pending().every((i) => i.sent)).toBe(true)
    // A new mark is numbered after every mark ever found, readable or not.
    expect(fresh.markSent([a.seq]).ops[0]!.key).toBe(seqKey('s/', 3))
  })

  it('a mark under an unrecognised key is reported; a mark counting for nothing is dropped by settle', async () => {
    const { storage, queue, run } = await open()
    const a = (await run(queue.enqueue(write('create', 'a', { id: 'a' })))).item!
    await storage.commit([
      { type: 'set', key: seqKey('s/', 5), value: { at: 1, seqs: [999], attempts: [1], bases: [null] } },
      { type: 'set', key: 's/x', value: {} },
    ])
    const fresh = createQueue({ storage, now })
    expect((await fresh.load()).map((p) => [p.key, p.problem])).toEqual([['s/x', expect.stringMatching(/unrecognised key/)]])
    expect(fresh.get(a.seq)).toMatchObject({ sent: true, attempts: 0 })
    expect(fresh.settle().ops).toEqual([
      { type: 'set', key: seqKey('q/', a.seq), value: fresh.get(a.seq) },
      { type: 'delete', key: seqKey('s/', 5), value: undefined },
    ])
    expect(queue.settle().ops).toEqual([])
  })
})

describe('load', () => {
  it('reports unusable entries, leaves them in storage, and never hands out their seqs', async () => {
    const storage = createMemoryStorage()
    const { queue, run } = await open(storage)
    const good = await run(queue.enqueue(write('create', 'a', { id: 'a' })))
    const dup = { ...good.item!, seq: 3 }
    const bad = {
      [seqKey('q/', 2)]: { ...good.item!, seq: 2, id: 'x', action: 'upsert' },
      [seqKey('q/', 3)]: dup,
      [seqKey('q/', 4)]: { ...good.item!, seq: 5, id: 'y' },
      [seqKey('q/', 7)]: { ...good.item!, seq: 7, id: 'z', data: null },
      'q/garbage': 1,
      [seqKey('f/', 9)]: { ...good.item!, seq: 9, id: 'w' },
    }
    await storage.commit(Object.entries(bad).map(([key, value]) => ({ type: 'set' as const, key, value })))
    const fresh = createQueue({ storage, now })
    const problems = await fresh.load()
    expect(problems.map((p) => p.key).sort()).toEqual(Object.keys(bad).sort())
    for (const p of problems) expect(p.value).toEqual(bad[p.key as keyof typeof bad])
    expect(problems.find((p) => p.key === seqKey('q/', 3))!.problem).toMatch(/duplicate item id/)
    expect(problems.find((p) => p.key === seqKey('q/', 4))!.problem).toMatch(/does not match/)
    expect(problems.find((p) => p.key === seqKey('q/', 7))!.problem).toMatch(/data/)
    expect(problems.find((p) => p.key === seqKey('f/', 9))!.problem).toMatch(/dead-letter/)
    expect(fresh.pending()).toEqual([good.item])
    expect(await storage.get(seqKey('q/', 2))).toEqual(bad[seqKey('q/', 2)])
    expect(fresh.enqueue(write('create', 'b', {})).item!.seq).toBe(10)
  })

  it('resumes after a lost or unreadable counter from a clock-derived floor, not from the items left', async () => {
    const warnings: unknown[] = []
    const logger: Logger = { debug() {}, info() {}, error() {}, warn: (message, details) => void warnings.push({ message, details }) }
    for (const counter of [undefined, 'seven', -3]) {
      const storage = createMemoryStorage()
      const { queue, run } = await open(storage)
      await run(queue.enqueue(write('create', 'a', {})))
      await run(queue.enqueue(write('create', 'b', {})))
      await run(queue.ack([2]))
      await storage.commit([counter === undefined ? { type: 'delete', key: 'meta/nextSeq' } : { type: 'set', key: 'meta/nextSeq', value: counter }])
      clock = 1_700_000_000_000
      const fresh = createQueue({ storage, now, logger })
      expect(await fresh.load()).toEqual([])
      expect(fresh.enqueue(write('create', 'c', {})).item!.seq).toBeGreaterThanOrEqual(1_700_000_000_000_000)
      clock = 1_000
    }
    expect(warnings).toHaveLength(3)
  })

  it('starts a fresh store at seq 1 without warnings', async () => {
    const warnings: string[] = []
    const logger: Logger = { debug() {}, info() {}, error() {}, warn: (message) => void warnings.push(message) }
    const queue = createQueue({ storage: createMemoryStorage(), logger })
    expect(await queue.load()).toEqual([])
    expect(queue.enqueue(write('create', 'a', {})).item!.seq).toBe(1)
    expect(warnings).toEqual([])
  })

  it('uses the configured prefixes and counter key', async () => {
    const storage = createMemoryStorage()
    const queue = createQueue({ storage, prefix: 'outbox/', failedPrefix: 'dead/', counterKey: 'outbox-seq' })
    await queue.load()
    const plan = await commit(storage, queue.enqueue(write('create', 'a', {})))
    await commit(storage, queue.fail(plan.item!.seq, { kind: 'permanent', message: 'x' }))
    await commit(storage, queue.enqueue(write('create', 'b', {})))
    expect((await storage.scan('')).map((e) => e.key).sort()).toEqual(['dead/' + '1'.padStart(16, '0'), 'outbox-seq', 'outbox/' + '2'.padStart(16, '0')])
    expect(() => createQueue({ storage, prefix: 'q/', failedPrefix: 'q/f/' })).toThrow(TypeError)
    expect(() => createQueue({ storage, markPrefix: 'f/' })).toThrow(TypeError)
    expect(() => createQueue({ storage, counterKey: 'q/n' })).toThrow(TypeError)
  })
})
