/**
 * Cost of the durable queue as it grows: enqueue latency (a new record's item, and an update folded
 * into a record's unsent item) with 0, 10,000 and 100,000 items queued, measured as plan + apply
 * (the queue's own work) and as plan + memory-storage commit + apply (a local write's queue share
 * over the fastest adapter). Also: `nextBatch` of 200, `markSent` + `ack` of that batch, and
 * `load()` of the whole queue.
 *
 * Target: a local write's p99 under 1 ms whatever the queue length. Prints a human-readable line
 * and one JSON line per figure; never passes or fails on time.
 */
import { createQueue, type EnqueueInput, type Queue, type QueuePlan } from '../src/core/queue.js'
import { createMemoryStorage } from '../src/storage/memory.js'
import type { Storage, StorageOp } from '../src/core/storage.js'
import type { Priority } from '../src/core/types.js'

const SIZES = [0, 10_000, 100_000]
const SAMPLES = 5_000
const WARMUP = 1_000
const BATCH = 200
const PRIORITIES: Priority[] = ['high', 'normal', 'normal', 'normal', 'low']

interface Figure {
  bench: string
  [key: string]: unknown
}

function report(text: string, figure: Figure): void {
  console.log(text)
  console.log(JSON.stringify(figure))
}

const round = (value: number, digits = 4): number => Number(value.toFixed(digits))

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

let counter = 0
function input(action: EnqueueInput['action'], recordId: string): EnqueueInput {
  counter++
  return {
    action,
    entityType: 'contacts',
    recordId,
    data: action === 'delete' ? null : { id: recordId, name: `Name ${counter}`, email: `n${counter}@example.com`, tags: ['a', 'b'], n: counter },
    baseVersion: action === 'create' ? null : 1,
    hlc: `0000000000000-${String(counter).padStart(6, '0')}-bench`,
    priority: PRIORITIES[counter % PRIORITIES.length]!,
  }
}

/** Fill a queue with `n` creates on distinct records, committed in chunks. */
async function filled(n: number): Promise<{ storage: Storage; queue: Queue }> {
  const storage = createMemoryStorage()
  const queue = createQueue({ storage })
  await queue.load()
  let ops: StorageOp[] = []
  for (let i = 0; i < n; i++) {
    const plan = queue.enqueue(input('create', `fill-${i}`))
    plan.apply()
    ops.push(...plan.ops)
    if (ops.length >= 2_000) {
      await storage.commit(ops)
      ops = []
    }
  }
  await storage.commit(ops)
  return { storage, queue }
}

/** Latencies (ms) of `samples` runs of `step(i)`, after `warmup` unrecorded runs. */
async function measure(samples: number, step: (i: number) => void | Promise<void>, warmup = WARMUP): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < warmup + samples; i++) {
    const started = performance.now()
    await step(i)
    const ms = performance.now() - started
    if (i >= warmup) times.push(ms)
  }
  return times.sort((a, b) => a - b)
}

function reportLatency(name: string, queued: number, path: string, times: number[]): void {
  const p50 = percentile(times, 50)
  const p99 = percentile(times, 99)
  const max = times[times.length - 1]!
  report(
    `${name.padEnd(22)} queued=${String(queued).padStart(6)} ${path.padEnd(18)} p50 ${(p50 * 1000).toFixed(1).padStart(6)} µs   p99 ${(p99 * 1000).toFixed(1).padStart(6)} µs   max ${(max * 1000).toFixed(0).padStart(6)} µs`,
    { bench: name, queued, path, samples: times.length, p50Ms: round(p50), p99Ms: round(p99), maxMs: round(max) },
  )
}

export default async function (): Promise<void> {
  for (const size of SIZES) {
    const { storage, queue } = await filled(size)
    const commitAndApply = async (plan: QueuePlan): Promise<void> => {
      await storage.commit(plan.ops)
      plan.apply()
    }

    let n = 0
    reportLatency('queue.enqueue', size, 'append', await measure(SAMPLES, () => queue.enqueue(input('create', `new-${n++}`)).apply()))
    reportLatency('queue.enqueue', size, 'append+commit', await measure(SAMPLES, () => commitAndApply(queue.enqueue(input('create', `newc-${n++}`)))))
    // Updates to records whose create is still unsent fold into it (one op, same seq).
    reportLatency('queue.enqueue', size, 'coalesce', await measure(SAMPLES, (i) => queue.enqueue(input('update', `new-${i % 1_000}`)).apply()))
    reportLatency('queue.enqueue', size, 'coalesce+commit', await measure(SAMPLES, (i) => commitAndApply(queue.enqueue(input('update', `newc-${i % 1_000}`)))))

    reportLatency('queue.nextBatch', queue.size, `limit ${BATCH}`, await measure(500, () => void queue.nextBatch({ limit: BATCH }), 100))
    reportLatency(
      'queue.push-bookkeeping',
      queue.size,
      `markSent+ack ${BATCH}`,
      await measure(
        40,
        async () => {
          const batch = queue.nextBatch({ limit: BATCH })
          await commitAndApply(queue.markSent(batch))
          await commitAndApply(queue.ack(batch.map((item) => item.seq)))
        },
        10,
      ),
    )

    const fresh = createQueue({ storage })
    const started = performance.now()
    await fresh.load()
    const loadMs = performance.now() - started
    report(`queue.load             queued=${String(fresh.size).padStart(6)} ${(loadMs).toFixed(1)} ms (scan + validate + index)`, {
      bench: 'queue.load',
      queued: fresh.size,
      ms: round(loadMs, 2),
    })
  }
}
