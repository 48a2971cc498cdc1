/**
 * Scheduler cost at rest: runs (requests to the backend) and timer wake-ups per hour with nothing to
 * do, for each device state, on the manual environment's virtual clock; and the same while every run
 * fails with a network error (backoff with the default 5 min cap). Figures, not pass/fail.
 */
import type { BatteryState, AppState } from '../src/core/env.js'
import { SyncError } from '../src/core/errors.js'
import { createScheduler } from '../src/core/scheduler.js'
import type { SyncRunResult } from '../src/core/scheduler.js'
import { createManualEnvironment } from '../src/env/manual.js'

const HOUR = 60 * 60_000

/** mulberry32: a seeded uniform source, so the backoff figure is the same on every run. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface Scenario {
  state: string
  online: boolean
  appState: AppState
  battery?: BatteryState
  /** Every run fails with a network error although the OS says online (e.g. the server is unreachable). */
  unreachable?: boolean
}

const scenarios: Scenario[] = [
  { state: 'active', online: true, appState: 'active' },
  { state: 'background', online: true, appState: 'background' },
  { state: 'low-battery', online: true, appState: 'active', battery: { level: 0.1, charging: false } },
  { state: 'offline', online: false, appState: 'active' },
  { state: 'unreachable', online: true, appState: 'active', unreachable: true },
]

async function idleHour(scenario: Scenario): Promise<{ requestsPerHour: number; wakeupsPerHour: number }> {
  const env = createManualEnvironment({ online: scenario.online, appState: scenario.appState, battery: scenario.battery })
  let requests = 0
  const scheduler = createScheduler({
    env,
    runSync: async (): Promise<SyncRunResult> => {
      requests += 1
      return scenario.unreachable === true ? { ok: false, error: new SyncError('network', 'unreachable') } : { ok: true, didWork: false }
    },
    hasPendingWork: () => false,
    hasHighPriorityWork: () => false,
    random: seededRandom(1),
  })
  scheduler.start()
  // Let the start-up run happen first: the figure is the steady state, not the launch.
  await env.advance(1000)
  const requestsBefore = requests
  const wakeupsBefore = env.wakeups
  await env.advance(HOUR)
  await scheduler.stop()
  return { requestsPerHour: requests - requestsBefore, wakeupsPerHour: env.wakeups - wakeupsBefore }
}

/** Prints runs and wake-ups per idle hour for each state, then one JSON line per state. */
export default async function main(): Promise<void> {
  console.log('scheduler, idle for one hour (virtual time, default intervals)')
  const lines: string[] = []
  for (const scenario of scenarios) {
    const { requestsPerHour, wakeupsPerHour } = await idleHour(scenario)
    console.log(`  ${scenario.state.padEnd(12)} requests/h ${String(requestsPerHour).padStart(4)}   wake-ups/h ${String(wakeupsPerHour).padStart(4)}`)
    lines.push(JSON.stringify({ bench: 'idle', state: scenario.state, requestsPerHour, wakeupsPerHour }))
  }
  for (const line of lines) console.log(line)
}
