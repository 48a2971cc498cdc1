/**
 * The engine end to end: local write latency as the queue grows (memory and file storage), time
 * from going online to fully synced for a 10,000-change offline backlog through the real stack
 * (against the protocol benchmark's push limit, one bulk-upsert RPC of the same rows, measured in
 * the same run), first in a process that has not synced before (V8 compiles the engine's code
 * while it syncs; the server's sessions have run the sync functions for another process, see
 * warmServer) and then again in the same process, then 10,000 offline updates of the first
 * device's rows, and the longest event-loop stall during a 10,000-change push and a 10,000-change
 * pull. Prints figures and one JSON line each; never passes or fails on time.
 *
 * The engine talks to PostgREST straight (see bench/direct.ts): the local stack's API gateway runs
 * inside this process, and an app's gateway does not, so its work would count as the engine's
 * stalls. Each stall figure is printed with the machine's scheduling noise over the same window:
 * the longest event-loop delay of an idle sibling Node process, which a small machine with the
 * database and PostgREST on its other core makes far from zero. On Linux the longest stall is also
 * split into the time the main thread ran and the time it waited for a CPU (see startTurnWatch).
 * `ENGINE_PARTS` (e.g. `backlog`) runs only some parts: `write`, `backlog`. `ENGINE_BATCH` sets the
 * push batch size (default: the orchestrator's, 1000, reached from a first batch of 200).
 * `ENGINE_STORAGE=file` gives the backlog part's devices the Node file storage, `ENGINE_STORAGE=web`
 * the Web Storage adapter over an in-memory `Storage` (the adapter's journal and encoding, without a
 * browser's own cost of storing strings); default: memory storage, which measures the engine
 * without its storage's encoding and writes.
 * `ENGINE_NOISE_PROBE=0` leaves the idle sibling process out (it competes for the same cores; its
 * figure then reads NaN).
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { randomUUID } from 'node:crypto'
import { execFile, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { once } from 'node:events'
import { createSyncOrchestrator } from '../src/core/orchestrator.js'
import { createSupabaseBackend } from '../src/backends/supabase/index.js'
import { createMemoryStorage } from '../src/storage/memory.js'
import { createFileStorage } from '../src/storage/file.js'
import { createWebStorage, type WebStorageLike } from '../src/storage/webStorage.js'
import { createManualEnvironment } from '../src/env/manual.js'
import { startLocalStack, type LocalStack } from '../src/testing/index.js'
import { directClient } from './direct.js'
import type { Backend } from '../src/core/protocol.js'
import type { Storage } from '../src/core/storage.js'

const report = (text: string, figure: Record<string, unknown>): void => {
  console.log(text)
  console.log(JSON.stringify(figure))
}
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!
const r3 = (x: number): number => Number(x.toFixed(3))

/** A backend that never answers, so queued writes stay queued while latency is measured. */
const idleBackend: Backend = {
  push: () => new Promise(() => {}),
  pull: () => new Promise(() => {}),
  checksum: async () => [],
}

/** A `localStorage` stand-in: strings in a Map. */
function mapWebStorage(): WebStorageLike {
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

type StorageKind = 'memory' | 'file' | 'web'

/** A new storage of `kind`; a file storage's directory is added to `dirs`, for the caller to remove. */
function newStorage(kind: StorageKind, dirs: string[]): Storage {
  if (kind === 'memory') return createMemoryStorage()
  if (kind === 'web') return createWebStorage({ namespace: 'bench', storage: mapWebStorage() })
  const dir = mkdtempSync(join(tmpdir(), 'so-bench-'))
  dirs.push(dir)
  return createFileStorage({ path: join(dir, 'db.log') })
}

async function writeLatency(kind: 'memory' | 'file', queued: number): Promise<void> {
  const dirs: string[] = []
  const storage = newStorage(kind, dirs)
  const env = createManualEnvironment({ now: Date.now(), online: false })
  const sync = createSyncOrchestrator({ storage, backend: idleBackend, environment: env, collections: { contacts: {} } })
  const contacts = sync.collection('contacts')
  await sync.ready
  for (let i = 0; i < queued; i++) await contacts.insert({ name: `q${i}` })
  const samples: number[] = []
  for (let i = 0; i < 3000; i++) {
    const t = performance.now()
    await contacts.insert({ name: `w${i}`, phone: '1' })
    samples.push(performance.now() - t)
  }
  const measured = samples.slice(500)
  report(`local write, ${kind} storage, ${queued} queued: p50 ${r3(pct(measured, 50))} ms, p99 ${r3(pct(measured, 99))} ms`, {
    bench: 'local-write', storage: kind, queued, p50Ms: r3(pct(measured, 50)), p99Ms: r3(pct(measured, 99)),
  })
  await sync.close()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
}

/** An idle sibling process measuring its own event-loop delay until stopped: the noise floor. */
async function startNoiseProbe(): Promise<{ stop: () => Promise<number> }> {
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
interface Turns {
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
function startTurnWatch(): { stop: () => Turns } {
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
function turnText(turns: Turns): string {
  if (Number.isNaN(turns.maxRunMs)) return 'per-thread CPU times not available here'
  return `in the longest turn (${r3(turns.longestMs)} ms) this thread ran ${r3(turns.longestRunMs)} ms and waited ${r3(turns.longestWaitMs)} ms for a CPU; the most it ran in one turn: ${r3(turns.maxRunMs)} ms`
}

/** The longest turn's parts, for a JSON line. */
function turnFigures(turns: Turns): Record<string, number> {
  return { longestTurnMs: r3(turns.longestMs), longestTurnRunMs: r3(turns.longestRunMs), longestTurnWaitMs: r3(turns.longestWaitMs), maxTurnRunMs: r3(turns.maxRunMs) }
}

/**
 * The push limit as the protocol benchmark takes it: one bulk-upsert RPC of all the rows through
 * the same PostgREST, as the caller. Median of 3 calls, fresh rows each.
 */
async function bulkLimit(stack: LocalStack, rows: number): Promise<number> {
  const user = randomUUID()
  await stack.query(`create or replace function public.bench_bulk_upsert(p_rows jsonb) returns int language sql security invoker as $$
    with written as (
      insert into public.contacts as t (id, name)
      select r.id, r.name from jsonb_to_recordset(p_rows) as r(id uuid, name text)
      on conflict (id) do update set name = excluded.name
      returning 1)
    select count(*)::int from written $$`)
  await stack.query('grant execute on function public.bench_bulk_upsert(jsonb) to authenticated')
  await stack.reloadSchema()
  const client = directClient(stack, user)
  // The schema cache reloads in the background: wait until PostgREST knows the function.
  for (let i = 0; i < 50; i++) {
    const { error } = await client.rpc('bench_bulk_upsert', { p_rows: [] })
    if (!error) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const rates: number[] = []
  for (let round = 0; round < 3; round++) {
    const payload = Array.from({ length: rows }, (_, i) => ({ id: randomUUID(), name: `b${i}` }))
    const t = performance.now()
    const { error } = await client.rpc('bench_bulk_upsert', { p_rows: payload })
    if (error) throw new Error(`bulk upsert failed: ${error.message}`)
    rates.push(rows / ((performance.now() - t) / 1000))
  }
  return pct(rates, 50)
}

/**
 * Has another process sync a small backlog through the stack's PostgREST first (see
 * bench/warmServer.ts): the measured first sync then meets database sessions that have run the sync
 * functions, as a deployed project's do, while this process has still never run the engine's code.
 * The bulk limit is measured on warm sessions too.
 */
async function warmServer(stack: LocalStack): Promise<void> {
  const script = fileURLToPath(new URL('./warmServer.ts', import.meta.url))
  const arg = JSON.stringify({ url: stack.url, postgrestUrl: stack.postgrestUrl, anonKey: stack.anonKey, token: stack.signJwt(randomUUID()) })
  await promisify(execFile)(process.execPath, ['--import', 'tsx', script, arg])
}

/**
 * Runs one forceSyncAll, watching the event loop (and an idle sibling process's, as the noise
 * floor) and the CPU this process used meanwhile (every thread: the engine, V8's compiler and
 * GC; the server runs in other processes); throws if the sync fails.
 */
async function timedSync(sync: { forceSyncAll(): Promise<{ ok: boolean; message?: string }> }, what: string) {
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
  return { seconds, h, turns, noiseMs, cpuMs: Math.round((used.user + used.system) / 1000) }
}

/** Changes in a backlog, and rows pulled. */
const N = 10_000

async function backlogAndStalls(stack: LocalStack): Promise<void> {
  const limit = await bulkLimit(stack, N)
  await warmServer(stack)
  const storageKind: StorageKind = process.env.ENGINE_STORAGE === 'file' || process.env.ENGINE_STORAGE === 'web' ? process.env.ENGINE_STORAGE : 'memory'
  const dirs: string[] = []
  const make = (user: string) => {
    const env = createManualEnvironment({ now: Date.now(), online: false })
    // The manual environment's turn for the host is a resolved promise (tests run on virtual
    // time); here the host gets the turn the Node environment gives: a macrotask (setImmediate).
    env.yieldToHost = () => new Promise((resolve) => setImmediate(resolve))
    const sync = createSyncOrchestrator({
      storage: newStorage(storageKind, dirs),
      backend: createSupabaseBackend({ client: directClient(stack, user) }),
      environment: env,
      collections: { contacts: {} },
      ...(process.env.ENGINE_BATCH ? { batchSize: Number(process.env.ENGINE_BATCH) } : {}),
    })
    return { sync, env, contacts: sync.collection('contacts') }
  }
  /** Writes N changes offline on a device, then times its going online until synced. */
  const backlog = async (device: ReturnType<typeof make>, what: string) => {
    await device.sync.ready
    for (let i = 0; i < N; i++) await device.contacts.insert({ name: `c${i}` })
    device.env.setOnline(true)
    return timedSync(device.sync, what)
  }
  const user = randomUUID()
  const a = make(user)
  const { seconds, h, turns, noiseMs, cpuMs } = await backlog(a, 'backlog sync')
  const rate = N / seconds
  report(`offline backlog of ${N} (${storageKind} storage): synced in ${r3(seconds)} s = ${Math.round(rate)} changes/s; bulk-upsert RPC limit ${Math.round(limit)} rows/s; ratio ${r3(rate / limit)}; client CPU ${cpuMs} ms`, {
    bench: 'offline-backlog', storage: storageKind, changes: N, seconds: r3(seconds), changesPerSec: Math.round(rate), limitRowsPerSec: Math.round(limit), ratio: r3(rate / limit), clientCpuMs: cpuMs,
  })
  report(`longest event-loop stall during a ${N}-change push: ${r3(h.max / 1e6)} ms (p99 ${r3(h.percentile(99) / 1e6)} ms; idle sibling process ${r3(noiseMs)} ms); ${turnText(turns)}`, {
    bench: 'event-loop-stall', phase: 'push', changes: N, maxMs: r3(h.max / 1e6), p99Ms: r3(h.percentile(99) / 1e6), noiseFloorMs: r3(noiseMs), ...turnFigures(turns),
  })
  const b = make(user)
  await b.sync.ready
  b.env.setOnline(true)
  const { seconds: s2, h: h2, turns: turns2, noiseMs: noise2Ms } = await timedSync(b.sync, 'pull')
  report(`pull of ${b.contacts.list().length} changes into a fresh device (${storageKind} storage): ${r3(s2)} s; longest event-loop stall ${r3(h2.max / 1e6)} ms (p99 ${r3(h2.percentile(99) / 1e6)} ms; idle sibling process ${r3(noise2Ms)} ms); ${turnText(turns2)}`, {
    bench: 'event-loop-stall', phase: 'pull', storage: storageKind, changes: b.contacts.list().length, seconds: r3(s2), maxMs: r3(h2.max / 1e6), p99Ms: r3(h2.percentile(99) / 1e6), noiseFloorMs: r3(noise2Ms), ...turnFigures(turns2),
  })
  // The same again, for another user, in this process: the engine's code is now compiled and
  // optimized (the figure above includes V8 compiling it while it syncs), as in an app that has
  // synced before.
  const c = make(randomUUID())
  const warm = await backlog(c, 'second backlog sync')
  const warmRate = N / warm.seconds
  report(`offline backlog of ${N} (${storageKind} storage), the second in this process: synced in ${r3(warm.seconds)} s = ${Math.round(warmRate)} changes/s; ratio ${r3(warmRate / limit)}; client CPU ${warm.cpuMs} ms`, {
    bench: 'offline-backlog', storage: storageKind, process: 'warm', changes: N, seconds: r3(warm.seconds), changesPerSec: Math.round(warmRate), limitRowsPerSec: Math.round(limit), ratio: r3(warmRate / limit), clientCpuMs: warm.cpuMs,
  })
  // Updates: every row of the first device changed offline, then synced (each a base-version
  // check and a write of an existing row among the user's 10k).
  a.env.setOnline(false)
  for (const row of a.contacts.list()) await a.contacts.update(String(row.id), { name: `u${String(row.name)}` })
  a.env.setOnline(true)
  const updates = await timedSync(a.sync, 'update backlog sync')
  const updateRate = N / updates.seconds
  report(`offline backlog of ${N} updates (the first device's rows, ${storageKind} storage): synced in ${r3(updates.seconds)} s = ${Math.round(updateRate)} changes/s; ratio ${r3(updateRate / limit)}; client CPU ${updates.cpuMs} ms`, {
    bench: 'offline-backlog', storage: storageKind, kind: 'update', changes: N, seconds: r3(updates.seconds), changesPerSec: Math.round(updateRate), limitRowsPerSec: Math.round(limit), ratio: r3(updateRate / limit), clientCpuMs: updates.cpuMs,
  })
  await a.sync.close()
  await b.sync.close()
  await c.sync.close()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
}

export default async function engineBench(): Promise<void> {
  const parts = new Set((process.env.ENGINE_PARTS ?? 'write,backlog').split(',').map((part) => part.trim()))
  if (parts.has('write')) for (const kind of ['memory', 'file'] as const) for (const queued of [0, 10_000, 100_000]) await writeLatency(kind, queued)
  if (!parts.has('backlog')) return
  const stack = await startLocalStack()
  try {
    await backlogAndStalls(stack)
  } finally {
    await stack.stop()
  }
}
