/**
 * What the engine benchmark's parts share: its storages, the device it syncs, and how a sync is
 * timed and watched (event-loop stalls, the main thread's run and wait, an idle sibling process as
 * the machine's noise floor, CPU). Used by engine.bench.ts and by bench/freshSync.ts, the child
 * process that syncs a backlog as a process that has never run the engine.
 */
import { closeSync, mkdtempSync, openSync, readSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { SupabaseClient } from '@supabase/supabase-js'
import { createSyncOrchestrator } from '../src/core/orchestrator.js'
import { createSupabaseBackend } from '../src/backends/supabase/index.js'
import { createMemoryStorage } from '../src/storage/memory.js'
import { createFileStorage } from '../src/storage/file.js'
import { createWebStorage, type WebStorageLike } from '../src/storage/webStorage.js'
import { createManualEnvironment } from '../src/env/manual.js'
import { yieldToNodeHost } from '../src/env/node.js'
import type { Storage } from '../src/core/storage.js'

/** The `p`th percentile of `xs` (nearest rank). */
export const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!
/** `x` to three decimals. */
export const r3 = (x: number): number => Number(x.toFixed(3))

/** Changes in a backlog, and rows pulled. */
export const N = 10_000

/** A `localStorage` stand-in: strings in a Map. */
export function mapWebStorage(): WebStorageLike {
  const data = new Map<string, string>()
  return {
    get length() {
      return data.size
    },
    key: (index) => [...data.keys()][index] ?? null,
    getItem: (key) => data.get(key) ?? null,
    setItem: (key, value) => void data.set(key, value),
    removeItem: (key) => void data.delete(key),
  }
}

/** The storages a benchmark device can have. */
export type StorageKind = 'memory' | 'file' | 'web'

/** A new storage of `kind`; a file storage's directory is added to `dirs`, for the caller to remove. */
export function newStorage(kind: StorageKind, dirs: string[]): Storage {
  if (kind === 'memory') return createMemoryStorage()
  if (kind === 'web') return createWebStorage({ namespace: 'bench', storage: mapWebStorage() })
  const dir = mkdtempSync(join(tmpdir(), 'so-bench-'))
  dirs.push(dir)
  return createFileStorage({ path: join(dir, 'db.log') })
}

/** The storage kind `ENGINE_STORAGE` names (default: memory). */
export function storageKindFromEnv(): StorageKind {
  const kind = process.env.ENGINE_STORAGE
  return kind === 'file' || kind === 'web' ? kind : 'memory'
}

/** A benchmark device: an orchestrator syncing `contacts` through `client`, offline at first. */
export function makeDevice(client: SupabaseClient, storage: Storage) {
  const env = createManualEnvironment({ now: Date.now(), online: false })
  // The manual environment's turn for the host is a resolved promise (tests run on virtual
  // time); here the host gets the turn the Node environment gives.
  env.yieldToHost = yieldToNodeHost
  const sync = createSyncOrchestrator({
    storage,
    backend: createSupabaseBackend({ client }),
    environment: env,
    collections: { contacts: {} },
    ...(process.env.ENGINE_BATCH ? { batchSize: Number(process.env.ENGINE_BATCH) } : {}),
  })
  return { sync, env, contacts: sync.collection('contacts') }
}

/** A device made by {@link makeDevice}. */
export type Device = ReturnType<typeof makeDevice>

/** Writes N changes offline on a device, then times its going online until synced. */
export async function backlog(device: Device, what: string): Promise<SyncFigures> {
  await device.sync.ready
  for (let i = 0; i < N; i++) await device.contacts.insert({ name: `c${i}` })
  device.env.setOnline(true)
  return timedSync(device.sync, what)
}

/** An idle sibling process measuring its own event-loop delay until stopped: the noise floor. */
export async function startNoiseProbe(): Promise<{ stop: () => Promise<number> }> {
  const code = `const { monitorEventLoopDelay } = require('node:perf_hooks')
const h = monitorEventLoopDelay({ resolution: 1 }); h.enable()
process.stdout.write('ready\\n')
process.stdin.on('data', () => {}).on('end', () => { h.disable(); process.stdout.write(String(h.max / 1e6) + '\\n'); process.exit(0) })`
  const child = spawn(process.execPath, ['-e', code], { stdio: ['pipe', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
  while (!out.includes('ready')) await once(child.stdout, 'data')
  return {
    stop: async () => {
      child.stdin.end()
      await once(child, 'exit')
      return Number(out.trim().split('\n').pop())
    },
  }
}

/** How the event loop's longest turn was spent (see startTurnWatch); NaN where it cannot be told. */
export interface Turns {
  /** The longest gap between two ticks of a 1 ms timer. */
  longestMs: number
  /** Of that gap: the time this process's main thread ran (the engine, V8's work on that thread, GC). */
  longestRunMs: number
  /** Of that gap: the time the main thread was ready to run but waited for a CPU. */
  longestWaitMs: number
  /** The most the main thread ran within any one gap: the longest the process itself held the loop. */
  maxRunMs: number
}

/**
 * Watches the event loop's turns with a 1 ms timer and, on Linux, how the main thread spent each
 * one: running, or ready to run but waiting for a CPU. The kernel keeps both per thread
 * (`/proc/self/task/<pid>/schedstat`, read with one `pread` a tick). A stall is the sum of the
 * two; on a machine whose cores also run the database and PostgREST, the second is the machine's,
 * not the engine's.
 */
export function startTurnWatch(): { stop: () => Turns } {
  let fd: number | undefined
  const buffer = Buffer.alloc(64)
  try {
    fd = openSync(`/proc/self/task/${process.pid}/schedstat`, 'r')
  } catch {
    fd = undefined
  }
  /** The main thread's run and run-queue wait times so far, in ms (NaN without schedstat). */
  const sched = (): [number, number] => {
    if (fd === undefined) return [Number.NaN, Number.NaN]
    const [run, wait] = buffer.toString('latin1', 0, readSync(fd, buffer, 0, buffer.length, 0)).split(' ')
    return [Number(run) / 1e6, Number(wait) / 1e6]
  }
  const turns: Turns = { longestMs: 0, longestRunMs: Number.NaN, longestWaitMs: Number.NaN, maxRunMs: fd === undefined ? Number.NaN : 0 }
  let last = performance.now()
  let [lastRun, lastWait] = sched()
  const timer = setInterval(() => {
    const now = performance.now()
    const [run, wait] = sched()
    if (now - last > turns.longestMs) Object.assign(turns, { longestMs: now - last, longestRunMs: run - lastRun, longestWaitMs: wait - lastWait })
    if (run - lastRun > turns.maxRunMs) turns.maxRunMs = run - lastRun
    last = now
    lastRun = run
    lastWait = wait
  }, 1)
  return {
    stop: () => {
      clearInterval(timer)
      if (fd !== undefined) closeSync(fd)
      return turns
    },
  }
}

/** The longest turn's parts, for a report line. */
export function turnText(turns: Turns): string {
  if (Number.isNaN(turns.maxRunMs)) return 'per-thread CPU times not available here'
  return `in the longest turn (${r3(turns.longestMs)} ms) this thread ran ${r3(turns.longestRunMs)} ms and waited ${r3(turns.longestWaitMs)} ms for a CPU; the most it ran in one turn: ${r3(turns.maxRunMs)} ms`
}

/** The longest turn's parts, for a JSON line. */
export function turnFigures(turns: Turns): Record<string, number> {
  return { longestTurnMs: r3(turns.longestMs), longestTurnRunMs: r3(turns.longestRunMs), longestTurnWaitMs: r3(turns.longestWaitMs), maxTurnRunMs: r3(turns.maxRunMs) }
}

/** What {@link timedSync} measured. */
export interface SyncFigures {
  seconds: number
  /** The longest event-loop delay (monitorEventLoopDelay, 1 ms resolution), and its 99th percentile. */
  maxMs: number
  p99Ms: number
  turns: Turns
  /** The idle sibling process's longest event-loop delay over the same window (NaN when left out). */
  noiseMs: number
  /** CPU this process used meanwhile, every thread. */
  cpuMs: number
}

/**
 * Runs one forceSyncAll, watching the event loop (and an idle sibling process's, as the noise
 * floor) and the CPU this process used meanwhile (every thread: the engine, V8's compiler and
 * GC; the server runs in other processes); throws if the sync fails.
 */
export async function timedSync(sync: { forceSyncAll(): Promise<{ ok: boolean; message?: string }> }, what: string): Promise<SyncFigures> {
  const noise = process.env.ENGINE_NOISE_PROBE === '0' ? { stop: async () => Number.NaN } : await startNoiseProbe()
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  const watch = startTurnWatch()
  const cpu = process.cpuUsage()
  const t = performance.now()
  const result = await sync.forceSyncAll()
  const seconds = (performance.now() - t) / 1000
  const used = process.cpuUsage(cpu)
  const turns = watch.stop()
  h.disable()
  const noiseMs = await noise.stop()
  if (!result.ok) throw new Error(`${what} failed: ${result.message}`)
  return { seconds, maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6, turns, noiseMs, cpuMs: Math.round((used.user + used.system) / 1000) }
}
