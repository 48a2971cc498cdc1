/**
 * What the engine benchmark's parts share: its storages, the device it syncs, and how a sync is
 * timed and watched (event-loop stalls, the main thread's wait for a CPU, an idle sibling process as
 * the machine's noise floor, CPU). Used by engine.bench.ts and by bench/freshSync.ts, the child
 * process that syncs a backlog as a process that has never run the engine.
 */
import { closeSync, mkdtempSync, openSync, readSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { execFileSync, spawn } from 'node:child_process'
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

/**
 * Gives this process's main thread real-time priority (`SCHED_FIFO` through Linux's `chrt`): it then
 * gets a core whenever it is ready to run, ahead of the database and PostgREST on the same two
 * cores, as a device that does not run the server would give it one. Only that thread: V8's
 * compiler and GC threads and the server keep their priority, and the engine's work, GC pauses
 * included, still counts. Child processes started afterwards (the idle sibling) inherit it.
 * Returns why it could not (not Linux, no `chrt`, no permission), or undefined.
 */
export function raiseMainThreadPriority(): string | undefined {
  if (process.platform !== 'linux') return 'real-time priority is set here only on Linux'
  try {
    execFileSync('chrt', ['--fifo', '--pid', '10', String(process.pid)], { stdio: 'pipe' })
    return undefined
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim()
    return `chrt could not raise the main thread's priority: ${stderr || (error as Error).message}`
  }
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
  /** The longest delay of a 1 ms timer (its gap less the 1 ms): the longest turn. */
  longestMs: number
  /** Of that delay: the time the main thread was ready to run but waited for a CPU. */
  longestWaitMs: number
  /** Of that delay: the rest, the process's own (the engine, V8's work on that thread, GC). */
  longestOwnMs: number
  /** The most any one turn took less its wait for a CPU: the longest the process itself held the loop. */
  maxOwnMs: number
}

/**
 * Watches the event loop's turns with a 1 ms timer and, on Linux, how long the main thread waited
 * for a CPU in each: ready to run, but every core busy. The kernel keeps that wait per thread
 * (`/proc/self/task/<pid>/schedstat`, read with one `pread` a tick) and adds each wait as the
 * thread gets a core back, so a thread reading its own figure has every wait up to that moment
 * counted. (Its run time in the same file is not: the kernel brings a running thread's up to date
 * only at a scheduler tick, 4 ms here, so a turn's own time is taken as its delay less its wait.)
 * A stall is the two together; on a machine whose cores also run the database and PostgREST, the
 * wait is the machine's, not the engine's.
 */
export function startTurnWatch(): { stop: () => Turns } {
  let fd: number | undefined
  const buffer = Buffer.alloc(64)
  try {
    fd = openSync(`/proc/self/task/${process.pid}/schedstat`, 'r')
  } catch {
    fd = undefined
  }
  /** The main thread's wait for a CPU so far, in ms (NaN without schedstat). */
  const waited = (): number => {
    if (fd === undefined) return Number.NaN
    return Number(buffer.toString('latin1', 0, readSync(fd, buffer, 0, buffer.length, 0)).split(' ')[1]) / 1e6
  }
  const turns: Turns = { longestMs: 0, longestWaitMs: Number.NaN, longestOwnMs: Number.NaN, maxOwnMs: fd === undefined ? Number.NaN : 0 }
  let last = performance.now()
  let lastWait = waited()
  const timer = setInterval(() => {
    const now = performance.now()
    const wait = waited()
    const delay = Math.max(0, now - last - 1)
    const own = Math.max(0, delay - (wait - lastWait))
    if (delay > turns.longestMs) Object.assign(turns, { longestMs: delay, longestWaitMs: wait - lastWait, longestOwnMs: own })
    if (own > turns.maxOwnMs) turns.maxOwnMs = own
    last = now
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
  if (Number.isNaN(turns.maxOwnMs)) return 'per-thread wait times not available here'
  return `the longest turn (${r3(turns.longestMs)} ms) waited ${r3(turns.longestWaitMs)} ms of it for a CPU; the longest any turn took less its wait: ${r3(turns.maxOwnMs)} ms`
}

/** The longest turn's parts, for a JSON line. */
export function turnFigures(turns: Turns): Record<string, number> {
  return { longestTurnMs: r3(turns.longestMs), longestTurnWaitMs: r3(turns.longestWaitMs), longestTurnOwnMs: r3(turns.longestOwnMs), maxTurnOwnMs: r3(turns.maxOwnMs) }
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

/** A bench/freshSync.ts child's two syncs: its backlog's push, and the pull into a second device. */
export interface ChildSyncs {
  push: SyncFigures
  pull: SyncFigures
}

/** What a bench/freshSync.ts child prints: its syncs, or why it could not run as asked. */
export type ChildFigures = ChildSyncs | { unavailable: string }

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
