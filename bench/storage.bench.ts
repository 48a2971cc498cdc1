/**
 * Local-write latency of the storage adapters: how long one commit takes with 0, 10,000 and
 * 100,000 keys already stored. A commit is what one local write stores: the record and its queue
 * item (two new keys, ~300 bytes), each at a random place in key order.
 *
 * Target: p99 under 1 ms with 100,000 keys. The file adapter runs with its defaults (resolve once
 * the OS has the bytes, fsync every second, background compaction); a line with `fsync: "always"`
 * shows the cost of waiting for the disk on every commit.
 *
 * Prints one human-readable line and one JSON line per figure; never passes or fails on time.
 */
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Storage, StorageOp } from '../src/core/storage.js'
import { createFileStorage } from '../src/storage/file.js'
import type { FsyncMode } from '../src/storage/file.js'
import { createMemoryStorage } from '../src/storage/memory.js'

const SIZES = [0, 10_000, 100_000]
const COMMITS = Number(process.env.BENCH_STORAGE_COMMITS ?? 3000)
const FILL_BATCH = 1000

interface Figure {
  bench: 'storage-commit' | 'storage-open'
  adapter: string
  existing: number
  [figure: string]: string | number
}

function report(figure: Figure, text: string): void {
  console.log(text)
  console.log(JSON.stringify(figure))
}

/** The q-quantile of numbers (nearest rank); sorts a copy numerically. */
function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number
}

function localWrite(): StorageOp[] {
  const id = randomUUID()
  return [
    { type: 'set', key: `rec/contacts/${id}`, value: { id, name: 'Ada Lovelace', email: 'ada@example.com', tags: ['work', 'math'], version: 1 } },
    { type: 'set', key: `queue/${id}`, value: { id, action: 'create', table: 'contacts', localId: id, priority: 'normal', attempts: 0, at: Date.now() } },
  ]
}

async function fill(store: Storage, count: number): Promise<void> {
  for (let done = 0; done < count; done += FILL_BATCH) {
    const batch: StorageOp[] = []
    for (let i = done; i < Math.min(count, done + FILL_BATCH); i++) {
      batch.push({ type: 'set', key: `rec/contacts/${randomUUID()}`, value: { i, name: `contact ${i}`, email: `c${i}@example.com`, tags: ['seed'] } })
    }
    await store.commit(batch)
  }
}

async function measureCommits(store: Storage): Promise<number[]> {
  const ops = Array.from({ length: COMMITS }, localWrite)
  // Warm up the code paths first so the figures show steady state.
  for (let i = 0; i < 200; i++) await store.commit(localWrite())
  const times: number[] = []
  for (const commit of ops) {
    const started = performance.now()
    await store.commit(commit)
    times.push(performance.now() - started)
  }
  return times
}

function reportCommits(adapter: string, existing: number, times: readonly number[], extra: Record<string, string> = {}): void {
  const p50 = quantile(times, 0.5)
  const p99 = quantile(times, 0.99)
  const max = quantile(times, 1)
  const label = [adapter, ...Object.entries(extra).map(([k, v]) => `${k}=${v}`)].join(' ')
  report(
    { bench: 'storage-commit', adapter, existing, ...extra, commits: times.length, p50Ms: round(p50), p99Ms: round(p99), maxMs: round(max) },
    `${label.padEnd(22)} existing ${String(existing).padStart(7)}: commit p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, max ${max.toFixed(3)} ms (${times.length} commits)`,
  )
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000

/** Run the storage benchmarks. */
export default async function run(): Promise<void> {
  for (const existing of SIZES) {
    const store = createMemoryStorage()
    await fill(store, existing)
    reportCommits('memory', existing, await measureCommits(store))
    await store.close()
  }

  const dir = await mkdtemp(join(tmpdir(), 'storage-bench-'))
  try {
    const modes: FsyncMode[] = ['interval', 'always']
    for (const fsync of modes) {
      for (const existing of fsync === 'always' ? [100_000] : SIZES) {
        const path = join(dir, `${fsync}-${existing}.log`)
        const store = createFileStorage({ path, fsync })
        await fill(store, existing)
        reportCommits('file', existing, await measureCommits(store), { fsync })
        await store.close()

        if (fsync === 'interval' && existing === SIZES[SIZES.length - 1]) {
          // Commits while a compaction of the whole store runs in the background.
          const compacting = createFileStorage({ path })
          await compacting.open()
          const compaction = compacting.compact()
          const times = await measureCommits(compacting)
          await compaction
          reportCommits('file', existing, times, { fsync, during: 'compaction' })
          await compacting.close()

          const started = performance.now()
          const reopened = createFileStorage({ path })
          await reopened.open()
          const ms = performance.now() - started
          const { entries, logBytes } = reopened.stats()
          report(
            { bench: 'storage-open', adapter: 'file', existing: entries, openMs: round(ms), logBytes },
            `file open (replay)      existing ${String(entries).padStart(7)}: ${ms.toFixed(1)} ms for a ${(logBytes / 1e6).toFixed(1)} MB log`,
          )
          await reopened.close()
        }
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
