/**
 * The engine end to end: local write latency as the queue grows (memory and file storage), time
 * from going online to fully synced for a 10,000-change offline backlog through the real stack
 * (against the protocol benchmark's push limit, one bulk-upsert RPC of the same rows, measured in
 * the same run), first in processes that have not synced before (V8 compiles the engine's code
 * while it syncs; the server's sessions have run the sync functions for another process, see
 * warmServer): in child processes (bench/freshSync.ts) and in this one, for the figure's spread;
 * then again in this process, then 10,000 offline updates of the first
 * device's rows, and the longest event-loop stall during a 10,000-change push and a 10,000-change
 * pull. Prints figures and one JSON line each; never passes or fails on time.
 *
 * The engine talks to PostgREST straight (see bench/direct.ts): the local stack's API gateway runs
 * inside this process, and an app's gateway does not, so its work would count as the engine's
 * stalls. Each stall figure is printed with the machine's scheduling noise over the same window:
 * the longest event-loop delay of an idle sibling Node process, which a small machine with the
 * database and PostgREST on its other core makes far from zero. On Linux each turn is also split
 * into the time the main thread waited for a CPU and the rest, the process's own (see
 * startTurnWatch). Some of the fresh processes run with their main thread at real-time priority
 * (see raiseMainThreadPriority): the stall a UI thread sees when it gets a core as soon as it is
 * ready, as on a device that does not also run the database and PostgREST.
 * `ENGINE_PARTS` (e.g. `backlog`) runs only some parts: `write`, `backlog`. `ENGINE_BATCH` sets the
 * push batch size (default: the orchestrator's, 1000, reached from a first batch of 200).
 * `ENGINE_STORAGE=file` gives the backlog part's devices the Node file storage, `ENGINE_STORAGE=web`
 * the Web Storage adapter over an in-memory `Storage` (the adapter's journal and encoding, without a
 * browser's own cost of storing strings); default: memory storage, which measures the engine
 * without its storage's encoding and writes.
 * `ENGINE_FRESH_RUNS` sets how many child processes sync a first backlog (and pull it into a second
 * device) before this process's own (default 4; 0 measures this process's alone), and
 * `ENGINE_PRIORITY_RUNS` how many more do so with their main thread at real-time priority (default
 * 4; Linux, as root or with `CAP_SYS_NICE`; elsewhere the line says why it was not measured).
 * `ENGINE_NOISE_PROBE=0` leaves the idle sibling process out (it competes for the same cores; its
 * figure then reads NaN).
 */
import { rmSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createSyncOrchestrator } from '../src/core/orchestrator.js'
import { createManualEnvironment } from '../src/env/manual.js'
import { startLocalStack, type LocalStack } from '../src/testing/index.js'
import { childArgument, directClient } from './direct.js'
import { N, backlog, makeDevice, newStorage, pct, r3, storageKindFromEnv, timedSync, turnFigures, turnText, type ChildFigures, type ChildSyncs, type SyncFigures } from './engineParts.js'
import type { Backend } from '../src/core/protocol.js'

const report = (text: string, figure: Record<string, unknown>): void => {
  console.log(text)
  console.log(JSON.stringify(figure))
}

/** A backend that never answers, so queued writes stay queued while latency is measured. */
const idleBackend: Backend = {
  push: () => new Promise(() => {}),
  pull: () => new Promise(() => {}),
  checksum: async () => [],
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

/**
 * The push limit as the protocol benchmark takes it: one bulk-upsert RPC of all the rows through
 * the same PostgREST, as the caller: the rates of 3 calls, fresh rows each.
 */
async function bulkRounds(stack: LocalStack, rows: number): Promise<number[]> {
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
  return rates
}

/**
 * Has another process sync a small backlog through the stack's PostgREST first (see
 * bench/warmServer.ts): the measured first sync then meets database sessions that have run the sync
 * functions, as a deployed project's do, while this process has still never run the engine's code.
 * The bulk limit is measured on warm sessions too.
 */
async function warmServer(stack: LocalStack): Promise<void> {
  await runChild('warmServer.ts', stack)
}

/** Runs `bench/<script>` in a child process, syncing as a new user of `stack`, with `env` added to its environment; resolves to its output. */
async function runChild(script: string, stack: LocalStack, env: Record<string, string> = {}): Promise<string> {
  const path = fileURLToPath(new URL(`./${script}`, import.meta.url))
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', path, childArgument(stack, randomUUID())], { env: { ...process.env, ...env } })
  return stdout
}

/**
 * Has a child process (bench/freshSync.ts) write a backlog offline and sync it as a process that has
 * never run the engine's code, then pull it into a second device, and returns what it measured. One
 * first sync per process: a run of several gives the figure's spread on a machine whose two cores
 * also run the server. `realtime`: the child's main thread first gets real-time priority.
 */
async function freshSync(stack: LocalStack, realtime: boolean): Promise<ChildFigures> {
  const stdout = await runChild('freshSync.ts', stack, realtime ? { ENGINE_CHILD_PRIORITY: 'realtime' } : {})
  return JSON.parse(stdout.trim().split('\n').pop()!) as ChildFigures
}

/** A non-negative integer from the environment variable `name`, else `fallback`. */
function runsFromEnv(name: string, fallback: number): number {
  const runs = Number(process.env[name] ?? fallback)
  return Number.isInteger(runs) && runs >= 0 ? runs : fallback
}

/** `median (min–max)` of `xs`, each to three decimals. */
const spread = (xs: number[]): string => `median ${r3(pct(xs, 50))} (${r3(Math.min(...xs))}–${r3(Math.max(...xs))})`

/** How many of `xs` are under 16 ms, as `k of n under 16 ms`. */
const underFrame = (xs: number[]): string => `${xs.filter((x) => x < 16).length} of ${xs.length} under 16 ms`

/** Stall figures of several syncs for a JSON line, each key prefixed with `prefix`. */
const stallSummary = (prefix: string, runs: SyncFigures[]): Record<string, number> => ({
  [`${prefix}MsMedian`]: r3(pct(runs.map((run) => run.maxMs), 50)),
  [`${prefix}MsMax`]: r3(Math.max(...runs.map((run) => run.maxMs))),
  [`${prefix}UnderFrame`]: runs.filter((run) => run.maxMs < 16).length,
  [`${prefix}MaxTurnOwnMsMedian`]: r3(pct(runs.map((run) => run.turns.maxOwnMs), 50)),
  [`${prefix}NoiseFloorMsMedian`]: r3(pct(runs.map((run) => run.noiseMs), 50)),
})

/** One sync's stall, for a report line: the longest, the idle sibling's, the longest own part of a turn. */
const stallText = (run: SyncFigures): string =>
  `longest stall ${r3(run.maxMs)} ms (idle sibling ${r3(run.noiseMs)} ms; the longest a turn took less its wait for a CPU ${r3(run.turns.maxOwnMs)} ms)`

async function backlogAndStalls(stack: LocalStack): Promise<void> {
  const rounds = await bulkRounds(stack, N)
  await warmServer(stack)
  const storageKind = storageKindFromEnv()
  const dirs: string[] = []
  const make = (user: string) => makeDevice(directClient(stack, user), newStorage(storageKind, dirs))
  // First syncs of fresh processes: the children's (sharing the cores as they are, and with the
  // main thread at real-time priority, taking turns), then this process's own.
  const children: ChildSyncs[] = []
  const realtime: ChildSyncs[] = []
  let realtimeUnavailable: string | undefined
  const [sharedRuns, realtimeRuns] = [runsFromEnv('ENGINE_FRESH_RUNS', 4), runsFromEnv('ENGINE_PRIORITY_RUNS', 4)]
  for (let run = 0; run < Math.max(sharedRuns, realtimeRuns); run++) {
    if (run < sharedRuns) {
      const figures = await freshSync(stack, false)
      if ('unavailable' in figures) throw new Error(figures.unavailable)
      children.push(figures)
    }
    if (run < realtimeRuns && realtimeUnavailable === undefined) {
      const figures = await freshSync(stack, true)
      if ('unavailable' in figures) realtimeUnavailable = figures.unavailable
      else realtime.push(figures)
    }
  }
  const fresh = children.map((child) => child.push)
  const user = randomUUID()
  const a = make(user)
  const own = await backlog(a, 'backlog sync')
  fresh.push(own)
  // The limit again after them (the table has grown by their rows): the median of all six calls.
  rounds.push(...(await bulkRounds(stack, N)))
  const limit = pct(rounds, 50)
  const { seconds, turns, noiseMs, cpuMs } = own
  const rate = N / seconds
  const [before, after] = [rounds.slice(0, rounds.length / 2), rounds.slice(rounds.length / 2)].map((xs) => xs.map(Math.round))
  report(`bulk-upsert RPC limit: ${Math.round(limit)} rows/s, the median of ${rounds.length} calls of ${N} rows (before the first syncs below: ${before!.join(', ')}; after them: ${after!.join(', ')})`, {
    bench: 'push-limit', method: 'bulk-rpc', rows: N, calls: rounds.length, opsPerSec: Math.round(limit), before, after,
  })
  const childLine = (child: ChildSyncs, label: string, extra: Record<string, unknown>): void => {
    const { push, pull } = child
    report(`  ${label}: synced in ${r3(push.seconds)} s, ratio ${r3(N / push.seconds / limit)}, client CPU ${push.cpuMs} ms; push ${stallText(push)}; pull ${r3(pull.seconds)} s, ${stallText(pull)}`, {
      bench: 'offline-backlog', storage: storageKind, process: 'fresh-child', ...extra, changes: N, seconds: r3(push.seconds), ratio: r3(N / push.seconds / limit), clientCpuMs: push.cpuMs,
      maxMs: r3(push.maxMs), p99Ms: r3(push.p99Ms), noiseFloorMs: r3(push.noiseMs), ...turnFigures(push.turns),
      pull: { seconds: r3(pull.seconds), maxMs: r3(pull.maxMs), p99Ms: r3(pull.p99Ms), noiseFloorMs: r3(pull.noiseMs), ...turnFigures(pull.turns) },
    })
  }
  children.forEach((child, i) => childLine(child, `fresh process ${i + 1}`, {}))
  realtime.forEach((child, i) => childLine(child, `fresh process ${i + 1}, main thread at real-time priority`, { mainThread: 'realtime' }))
  report(`offline backlog of ${N} (${storageKind} storage): synced in ${r3(seconds)} s = ${Math.round(rate)} changes/s; bulk-upsert RPC limit ${Math.round(limit)} rows/s; ratio ${r3(rate / limit)}; client CPU ${cpuMs} ms`, {
    bench: 'offline-backlog', storage: storageKind, changes: N, seconds: r3(seconds), changesPerSec: Math.round(rate), limitRowsPerSec: Math.round(limit), ratio: r3(rate / limit), clientCpuMs: cpuMs,
  })
  report(`longest event-loop stall during a ${N}-change push: ${r3(own.maxMs)} ms (p99 ${r3(own.p99Ms)} ms; idle sibling process ${r3(noiseMs)} ms); ${turnText(turns)}`, {
    bench: 'event-loop-stall', phase: 'push', changes: N, maxMs: r3(own.maxMs), p99Ms: r3(own.p99Ms), noiseFloorMs: r3(noiseMs), ...turnFigures(turns),
  })
  const ratios = fresh.map((run) => N / run.seconds / limit)
  const pulls = children.map((child) => child.pull)
  report(`first backlog of a fresh process, ${fresh.length} processes (${fresh.length - 1} ${fresh.length === 2 ? 'child' : 'children'} and this one): ratio ${spread(ratios)}, ${ratios.filter((x) => x >= 0.5).length} of ${fresh.length} at least 0.5; synced in ${spread(fresh.map((run) => run.seconds))} s; client CPU ${spread(fresh.map((run) => run.cpuMs))} ms; longest push stall ${spread(fresh.map((run) => run.maxMs))} ms, ${underFrame(fresh.map((run) => run.maxMs))}; the longest a turn took less its wait for a CPU ${spread(fresh.map((run) => run.turns.maxOwnMs))} ms; idle sibling ${spread(fresh.map((run) => run.noiseMs))} ms${pulls.length ? `; the children's pulls: longest stall ${spread(pulls.map((run) => run.maxMs))} ms, ${underFrame(pulls.map((run) => run.maxMs))}` : ''}`, {
    bench: 'offline-backlog', storage: storageKind, process: 'fresh', runs: fresh.length, changes: N, limitRowsPerSec: Math.round(limit),
    ratioMedian: r3(pct(ratios, 50)), ratioMin: r3(Math.min(...ratios)), ratioMax: r3(Math.max(...ratios)), atLeastHalf: ratios.filter((x) => x >= 0.5).length,
    secondsMedian: r3(pct(fresh.map((run) => run.seconds), 50)), clientCpuMsMedian: pct(fresh.map((run) => run.cpuMs), 50),
    ...stallSummary('stall', fresh), ...(pulls.length ? stallSummary('pullStall', pulls) : {}),
  })
  if (realtimeUnavailable !== undefined) {
    report(`first backlog with the main thread at real-time priority: not measured (${realtimeUnavailable})`, { bench: 'offline-backlog', process: 'fresh', mainThread: 'realtime', unavailable: realtimeUnavailable })
  } else if (realtime.length) {
    const pushes = realtime.map((child) => child.push)
    const rtPulls = realtime.map((child) => child.pull)
    const rtRatios = pushes.map((run) => N / run.seconds / limit)
    report(`first backlog of a fresh process with its main thread at real-time priority (a core whenever it is ready, as on a device that does not also run the server), ${realtime.length} ${realtime.length === 1 ? 'child' : 'children'}: ratio ${spread(rtRatios)}; longest push stall ${spread(pushes.map((run) => run.maxMs))} ms, ${underFrame(pushes.map((run) => run.maxMs))}; longest pull stall ${spread(rtPulls.map((run) => run.maxMs))} ms, ${underFrame(rtPulls.map((run) => run.maxMs))}; the longest a turn took less its wait for a CPU: push ${spread(pushes.map((run) => run.turns.maxOwnMs))} ms, pull ${spread(rtPulls.map((run) => run.turns.maxOwnMs))} ms`, {
      bench: 'offline-backlog', storage: storageKind, process: 'fresh', mainThread: 'realtime', runs: realtime.length, changes: N, limitRowsPerSec: Math.round(limit),
      ratioMedian: r3(pct(rtRatios, 50)), ratioMin: r3(Math.min(...rtRatios)), ratioMax: r3(Math.max(...rtRatios)),
      ...stallSummary('stall', pushes), ...stallSummary('pullStall', rtPulls),
    })
  }
  const b = make(user)
  await b.sync.ready
  b.env.setOnline(true)
  const { seconds: s2, maxMs: max2, p99Ms: p99_2, turns: turns2, noiseMs: noise2Ms } = await timedSync(b.sync, 'pull')
  report(`pull of ${b.contacts.list().length} changes into a fresh device (${storageKind} storage): ${r3(s2)} s; longest event-loop stall ${r3(max2)} ms (p99 ${r3(p99_2)} ms; idle sibling process ${r3(noise2Ms)} ms); ${turnText(turns2)}`, {
    bench: 'event-loop-stall', phase: 'pull', storage: storageKind, changes: b.contacts.list().length, seconds: r3(s2), maxMs: r3(max2), p99Ms: r3(p99_2), noiseFloorMs: r3(noise2Ms), ...turnFigures(turns2),
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
