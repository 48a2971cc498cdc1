import fc from 'fast-check'
import { describe, expect, it, vi } from 'vitest'
import { SyncError } from '../../src/core/errors.js'
import type { Logger } from '../../src/core/logger.js'
import { createScheduler } from '../../src/core/scheduler.js'
import { sleep } from '../../src/core/sleep.js'
import type { SchedulerOptions, SchedulerState, SyncContext, SyncRunResult } from '../../src/core/scheduler.js'
import { createManualEnvironment } from '../../src/env/manual.js'
import type { ManualEnvironmentOptions } from '../../src/env/manual.js'

const fcSeed = process.env.FC_SEED === undefined ? {} : { seed: Number(process.env.FC_SEED) }

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DEBOUNCE = 250
const INTERVALS = { activeMs: 30 * SECOND, backgroundMs: 5 * MINUTE, lowBatteryMs: 15 * MINUTE }

interface RunRecord extends SyncContext {
  at: number
}

interface HarnessOptions extends Partial<Omit<SchedulerOptions, 'env' | 'runSync'>> {
  env?: ManualEnvironmentOptions
  /** Decides each run's result; default: success without work. */
  result?: (context: SyncContext, index: number) => Promise<SyncRunResult> | SyncRunResult
}

function recordingLogger(): Logger & { lines: Array<{ level: string; message: string }> } {
  const lines: Array<{ level: string; message: string }> = []
  const log = (level: string) => (message: string): void => {
    lines.push({ level, message })
  }
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }
}

function harness(options: HarnessOptions = {}) {
  const { env: envOptions, result, ...rest } = options
  const env = createManualEnvironment(envOptions)
  const runs: RunRecord[] = []
  const work = { pending: false, high: false }
  const auth = { ok: true }
  let active = 0
  let maxActive = 0
  const logger = recordingLogger()
  const scheduler = createScheduler({
    env,
    intervals: INTERVALS,
    debounceMs: DEBOUNCE,
    hasPendingWork: () => work.pending,
    hasHighPriorityWork: () => work.high,
    isAuthenticated: () => auth.ok,
    logger,
    ...rest,
    async runSync(context) {
      const index = runs.length
      runs.push({ ...context, at: env.now() })
      active += 1
      maxActive = Math.max(maxActive, active)
      try {
        return result === undefined ? { ok: true, didWork: false } : await result(context, index)
      } finally {
        active -= 1
      }
    },
  })
  const states: SchedulerState[] = []
  scheduler.subscribe((state) => states.push(state))
  return { env, scheduler, runs, work, auth, logger, states, maxActive: () => maxActive }
}

function gaps(times: readonly number[]): number[] {
  return times.slice(1).map((time, i) => time - (times[i] as number))
}

function deferred<T>() {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

describe('scheduler: periodic pulls by state', () => {
  it('runs once after start (debounced), then every activeMs while active', async () => {
    const h = harness()
    h.scheduler.start()
    await h.env.advance(DEBOUNCE - 1)
    expect(h.runs).toHaveLength(0)
    await h.env.advance(1)
    expect(h.runs.map((r) => r.reason)).toEqual(['start'])
    await h.env.advance(HOUR)
    const periodic = h.runs.slice(1)
    expect(periodic.every((r) => r.reason === 'interval' && !r.highPriorityOnly)).toBe(true)
    expect(periodic.length).toBe(Math.floor(HOUR / INTERVALS.activeMs))
    expect(new Set(gaps(h.runs.map((r) => r.at)))).toEqual(new Set([INTERVALS.activeMs]))
    expect(h.scheduler.getState()).toMatchObject({ status: 'idle', consecutiveFailures: 0, lastSyncAt: h.runs.at(-1)?.at })
  })

  it('slows to backgroundMs in the background, and back on return with an immediate debounced run', async () => {
    const h = harness()
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    h.env.setAppState('background')
    const from = h.env.now()
    await h.env.advance(HOUR)
    const background = h.runs.filter((r) => r.at > from)
    expect(background.length).toBe(Math.floor((HOUR + DEBOUNCE) / INTERVALS.backgroundMs))
    expect(new Set(gaps(h.runs.map((r) => r.at)))).toEqual(new Set([INTERVALS.backgroundMs]))

    const before = h.runs.length
    const returnedAt = h.env.now()
    h.env.setAppState('active')
    await h.env.advance(DEBOUNCE)
    expect(h.runs.slice(before).map((r) => [r.reason, r.at])).toEqual([['foreground', returnedAt + DEBOUNCE]])
    await h.env.advance(INTERVALS.activeMs)
    expect(h.runs.at(-1)).toMatchObject({ reason: 'interval', at: returnedAt + DEBOUNCE + INTERVALS.activeMs })
  })

  it('slows to lowBatteryMs below the threshold when not charging, in either app state', async () => {
    for (const appState of ['active', 'background'] as const) {
      const h = harness({ env: { appState, battery: { level: 0.1, charging: false } } })
      h.scheduler.start()
      await h.env.advance(DEBOUNCE)
      await h.env.advance(HOUR)
      const periodic = h.runs.filter((r) => r.reason === 'interval')
      expect(periodic.length).toBe(Math.floor(HOUR / INTERVALS.lowBatteryMs))
      expect(periodic.every((r) => r.highPriorityOnly)).toBe(true)
      expect(new Set(gaps(h.runs.map((r) => r.at)))).toEqual(new Set([INTERVALS.lowBatteryMs]))
    }
  })

  it('does not count a low level as low battery while charging', async () => {
    const h = harness({ env: { battery: { level: 0.05, charging: true } } })
    h.scheduler.start()
    await h.env.advance(10 * INTERVALS.activeMs)
    expect(new Set(gaps(h.runs.map((r) => r.at)))).toEqual(new Set([INTERVALS.activeMs]))
    expect(h.runs.every((r) => !r.highPriorityOnly)).toBe(true)
  })
})

describe('scheduler: gating', () => {
  it('arms no timer and wakes zero times while offline, then syncs once, debounced, on reconnect', async () => {
    const h = harness({ env: { online: false } })
    h.scheduler.start()
    h.scheduler.notifyWrite()
    await h.env.advance(HOUR)
    expect(h.runs).toHaveLength(0)
    expect(h.env.wakeups).toBe(0)
    expect(h.env.pendingTimers()).toBe(0)
    expect(h.scheduler.getState()).toMatchObject({ status: 'offline', nextSyncAt: null })

    const at = h.env.now()
    h.env.setOnline(true)
    await h.env.advance(INTERVALS.activeMs - 1)
    expect(h.runs.map((r) => [r.reason, r.at])).toEqual([['online', at + DEBOUNCE]])
  })

  it('clears its timer when going offline, and a catch-up pull joins the reconnect run', async () => {
    const h = harness()
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    h.env.setOnline(false)
    expect(h.env.pendingTimers()).toBe(0)
    const wakeups = h.env.wakeups
    await h.env.advance(HOUR)
    expect(h.env.wakeups).toBe(wakeups)
    const runs = h.runs.length
    h.env.setOnline(true)
    await h.env.advance(INTERVALS.activeMs - 1)
    // The pull that fell due while offline does not race the reconnect trigger: one run, not two.
    expect(h.runs.slice(runs).map((r) => r.reason)).toEqual(['online'])
  })

  it('arms nothing while unauthenticated and syncs after notifyAuthChange() with a session', async () => {
    const h = harness()
    h.auth.ok = false
    h.scheduler.start()
    await h.env.advance(HOUR)
    expect(h.runs).toHaveLength(0)
    expect(h.env.wakeups).toBe(0)
    expect(h.scheduler.getState().status).toBe('unauthenticated')
    await expect(h.scheduler.requestSync()).resolves.toEqual({ ok: false, skipped: 'unauthenticated' })

    h.auth.ok = true
    h.scheduler.notifyAuthChange()
    await h.env.advance(DEBOUNCE)
    expect(h.runs.map((r) => r.reason)).toEqual(['auth'])
  })

  it('stops arming timers on sign-out once told', async () => {
    const h = harness()
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    h.auth.ok = false
    h.scheduler.notifyAuthChange()
    expect(h.env.pendingTimers()).toBe(0)
    expect(h.scheduler.getState().status).toBe('unauthenticated')
  })

  it('does nothing before start and after stop', async () => {
    const h = harness()
    h.scheduler.notifyWrite()
    await expect(h.scheduler.requestSync()).resolves.toEqual({ ok: false, skipped: 'stopped' })
    await h.env.advance(HOUR)
    expect(h.env.wakeups).toBe(0)
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    await h.scheduler.stop()
    expect(h.env.pendingTimers()).toBe(0)
    expect(h.env.listenerCount()).toEqual({ online: 0, appState: 0, battery: 0 })
    const runs = h.runs.length
    await h.env.advance(HOUR)
    expect(h.runs).toHaveLength(runs)
    expect(h.scheduler.getState().status).toBe('stopped')
  })
})

describe('scheduler: writes', () => {
  it('turns a burst of writes within debounceMs into one run', async () => {
    const h = harness()
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    h.work.pending = true
    const first = h.env.now()
    for (let i = 0; i < 5; i++) {
      h.scheduler.notifyWrite()
      await h.env.advance(DEBOUNCE / 5 - 1)
    }
    await h.env.advance(DEBOUNCE)
    expect(h.runs.slice(1).map((r) => [r.reason, r.at])).toEqual([['write', first + DEBOUNCE]])
  })

  it('skips the write run when the queue turned out empty', async () => {
    const h = harness()
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    h.scheduler.notifyWrite()
    await h.env.advance(DEBOUNCE)
    expect(h.runs.map((r) => r.reason)).toEqual(['start'])
  })

  it('on low battery, lets only high-priority writes start a run, with highPriorityOnly', async () => {
    const h = harness({ env: { battery: { level: 0.1, charging: false } } })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    h.work.pending = true
    h.scheduler.notifyWrite()
    await h.env.advance(DEBOUNCE)
    expect(h.runs.map((r) => r.reason)).toEqual(['start'])

    h.work.high = true
    h.scheduler.notifyWrite()
    await h.env.advance(DEBOUNCE)
    expect(h.runs.at(-1)).toMatchObject({ reason: 'write', highPriorityOnly: true })
  })

  it('runs the held-back work when the battery recovers, and an explicit request pushes everything', async () => {
    const h = harness({ env: { battery: { level: 0.1, charging: false } } })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    h.work.pending = true
    await expect(h.scheduler.requestSync()).resolves.toEqual({ ok: true, didWork: false })
    expect(h.runs.at(-1)).toMatchObject({ reason: 'manual', highPriorityOnly: false })

    h.env.setBattery({ level: 0.1, charging: true })
    await h.env.advance(DEBOUNCE)
    expect(h.runs.at(-1)).toMatchObject({ reason: 'battery', highPriorityOnly: false })
  })
})

describe('scheduler: one run at a time', () => {
  it('coalesces requests during a run into exactly one run after it', async () => {
    const gate = deferred<SyncRunResult>()
    const h = harness({ result: (_context, index) => (index === 0 ? gate.promise : { ok: true, didWork: true }) })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    expect(h.scheduler.getState().status).toBe('syncing')
    h.work.pending = true
    const requests = [h.scheduler.requestSync(), h.scheduler.requestSync('manual'), h.scheduler.requestSync()]
    h.scheduler.notifyWrite()
    await h.env.advance(INTERVALS.activeMs * 3)
    expect(h.runs).toHaveLength(1)
    expect(h.env.pendingTimers()).toBe(0)

    gate.resolve({ ok: true, didWork: false })
    await h.env.advance(0)
    expect(h.maxActive()).toBe(1)
    expect(h.runs.map((r) => r.reason)).toEqual(['start', 'manual'])
    // Each request resolves with the run after the one in flight: it may hold writes made before the call.
    expect(await Promise.all(requests)).toEqual([
      { ok: true, didWork: true },
      { ok: true, didWork: true },
      { ok: true, didWork: true },
    ])
  })

  it('never overlaps runs whatever the interleaving of triggers and run lengths', async () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('write' as const) }),
      fc.record({ kind: fc.constant('request' as const) }),
      fc.record({ kind: fc.constant('online' as const), value: fc.boolean() }),
      fc.record({ kind: fc.constant('app' as const), value: fc.constantFrom('active' as const, 'background' as const) }),
      fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 2 * INTERVALS.activeMs }) }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 30 }), fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1 }), async (steps, durations) => {
        const h: ReturnType<typeof harness> = harness({
          result: async (context, index) => {
            // A run that takes virtual time and gives up when aborted, as a real one must.
            await sleep(h.env, durations[index % durations.length] as number, context.signal)
            return { ok: true, didWork: true }
          },
        })
        h.work.pending = true
        h.scheduler.start()
        const requests: Array<Promise<unknown>> = []
        for (const s of steps) {
          if (s.kind === 'write') h.scheduler.notifyWrite()
          else if (s.kind === 'request') requests.push(h.scheduler.requestSync())
          else if (s.kind === 'online') h.env.setOnline(s.value)
          else if (s.kind === 'app') h.env.setAppState(s.value)
          else await h.env.advance(s.ms)
        }
        h.env.setOnline(true)
        await h.env.advance(HOUR)
        expect(h.maxActive()).toBeLessThanOrEqual(1)
        // Every request settled (none left hanging, none rejected).
        await Promise.all(requests)
        await h.scheduler.stop()
        expect(h.env.pendingTimers()).toBe(0)
      }),
      { ...fcSeed, numRuns: 40 },
    )
  })
})

describe('scheduler: failures', () => {
  const networkError = (): SyncRunResult => ({ ok: false, error: new SyncError('network', 'fetch failed') })

  it('backs off with jittered exponential delays under the cap, whatever the random source', async () => {
    const backoff = { baseMs: 1000, maxMs: 60_000, factor: 2 }
    await fc.assert(
      fc.asyncProperty(fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 1, maxLength: 20 }), async (draws) => {
        let i = 0
        const h = harness({ result: networkError, backoff, random: () => draws[i++ % draws.length] as number })
        h.scheduler.start()
        await h.env.advance(DEBOUNCE)
        for (let n = 1; n <= 12; n++) {
          const state = h.scheduler.getState()
          expect(state).toMatchObject({ status: 'backoff', consecutiveFailures: n })
          await h.env.advance((state.nextSyncAt as number) - h.env.now())
        }
        const delays = gaps(h.runs.map((r) => r.at))
        delays.forEach((delay, k) => {
          const ceiling = Math.min(backoff.maxMs, backoff.baseMs * backoff.factor ** k)
          // A retry never comes sooner than debounceMs, even when the jitter draws ~0.
          expect(delay).toBeGreaterThanOrEqual(DEBOUNCE)
          expect(delay).toBeLessThanOrEqual(Math.max(ceiling, DEBOUNCE))
        })
        expect(h.runs.slice(1).every((r) => r.reason === 'retry')).toBe(true)
      }),
      { ...fcSeed, numRuns: 50 },
    )
  })

  it('resets the backoff after a success', async () => {
    const outcomes: Array<'fail' | 'ok'> = ['fail', 'fail', 'fail', 'fail', 'ok', 'fail']
    const h = harness({
      result: (_context, index) => ((outcomes[index] ?? 'ok') === 'fail' ? networkError() : { ok: true, didWork: true }),
      backoff: { baseMs: 1000, jitter: 'none' },
    })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    while (h.runs.length < 5) await h.env.advance((h.scheduler.getState().nextSyncAt as number) - h.env.now())
    expect(h.scheduler.getState()).toMatchObject({ status: 'idle', consecutiveFailures: 0, lastError: null })
    expect(gaps(h.runs.map((r) => r.at))).toEqual([0, 1, 2, 3].map((k) => 1000 * 2 ** k))
    // Next failure starts again from the first step.
    await h.env.advance(INTERVALS.activeMs)
    const failedAt = h.env.now()
    expect(h.scheduler.getState()).toMatchObject({ status: 'backoff', consecutiveFailures: 1, nextSyncAt: failedAt + 1000 })
  })

  it('treats a network failure as a sign of being offline: writes wait for the probe', async () => {
    let fail = true
    const h = harness({ result: () => (fail ? networkError() : { ok: true, didWork: true }), backoff: { baseMs: 10_000, jitter: 'none' } })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    const retryAt = h.scheduler.getState().nextSyncAt as number
    h.work.pending = true
    h.scheduler.notifyWrite()
    await h.env.advance(retryAt - h.env.now() - 1)
    expect(h.runs).toHaveLength(1)
    fail = false
    await h.env.advance(1)
    expect(h.runs.map((r) => r.reason)).toEqual(['start', 'retry'])
    expect(h.scheduler.getState().status).toBe('idle')
  })

  it('lets a reconnect cut a network backoff short', async () => {
    const h = harness({ result: networkError, backoff: { baseMs: 60_000, jitter: 'none' } })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    h.env.setOnline(false)
    h.env.setOnline(true)
    await h.env.advance(DEBOUNCE)
    expect(h.runs.map((r) => r.reason)).toEqual(['start', 'online'])
  })

  it('honours Retry-After against every trigger, and a request waits for it', async () => {
    const retryAfterMs = 90_000
    const h = harness({
      result: (_context, index) => (index === 0 ? { ok: false, error: new SyncError('rate-limit', 'slow down', { status: 429, retryAfterMs }) } : { ok: true, didWork: true }),
      backoff: { baseMs: 1000, jitter: 'none' },
    })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    const limitedAt = h.env.now()
    expect(h.scheduler.getState()).toMatchObject({ status: 'backoff', nextSyncAt: limitedAt + retryAfterMs })
    h.work.pending = true
    h.scheduler.notifyWrite()
    h.env.setAppState('background')
    h.env.setAppState('active')
    h.env.setOnline(false)
    h.env.setOnline(true)
    let settled = false
    const request = h.scheduler.requestSync().then((result) => {
      settled = true
      return result
    })
    await h.env.advance(retryAfterMs - 1)
    expect(h.runs).toHaveLength(1)
    expect(settled).toBe(false)
    await h.env.advance(1)
    expect(h.runs).toHaveLength(2)
    expect(h.runs[1]?.at).toBe(limitedAt + retryAfterMs)
    await expect(request).resolves.toEqual({ ok: true, didWork: true })
  })

  it('refreshes the session on an auth failure and retries at once', async () => {
    const refreshAuth = vi.fn(async () => true)
    const h = harness({
      refreshAuth,
      result: (_context, index) => (index === 0 ? { ok: false, error: new SyncError('auth', 'jwt expired', { status: 401 }) } : { ok: true, didWork: true }),
    })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    expect(refreshAuth).toHaveBeenCalledTimes(1)
    expect(h.runs.map((r) => r.at)).toEqual([DEBOUNCE, DEBOUNCE])
    expect(h.scheduler.getState()).toMatchObject({ status: 'idle', consecutiveFailures: 0 })
  })

  it('backs off when the retry after a refresh fails with auth again', async () => {
    const h = harness({ refreshAuth: async () => true, result: () => ({ ok: false, error: new SyncError('auth', 'invalid jwt', { status: 401 }) }) })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    expect(h.runs).toHaveLength(2)
    expect(h.scheduler.getState()).toMatchObject({ status: 'backoff', consecutiveFailures: 1 })
  })

  it('goes unauthenticated with no timers when no session can be had, until notifyAuthChange()', async () => {
    for (const refreshAuth of [undefined, async () => false, async () => Promise.reject(new Error('refresh endpoint down'))]) {
      let signedIn = false
      const h = harness({ refreshAuth, result: () => (signedIn ? { ok: true, didWork: true } : { ok: false, error: new SyncError('auth', 'jwt expired', { status: 401 }) }) })
      h.scheduler.start()
      await h.env.advance(DEBOUNCE)
      expect(h.scheduler.getState()).toMatchObject({ status: 'unauthenticated', nextSyncAt: null })
      const wakeups = h.env.wakeups
      await h.env.advance(HOUR)
      expect(h.env.wakeups).toBe(wakeups)
      expect(h.runs).toHaveLength(1)

      signedIn = true
      h.scheduler.notifyAuthChange()
      await h.env.advance(DEBOUNCE)
      expect(h.runs.at(-1)?.reason).toBe('auth')
      expect(h.scheduler.getState().status).toBe('idle')
    }
  })

  it('does not retry conflict or permanent failures, and keeps pulling at the interval', async () => {
    for (const kind of ['conflict', 'permanent'] as const) {
      const h = harness({ result: (_context, index) => (index === 0 ? { ok: false, error: new SyncError(kind, 'no') } : { ok: true, didWork: false }) })
      h.scheduler.start()
      await h.env.advance(DEBOUNCE)
      expect(h.scheduler.getState()).toMatchObject({ status: 'idle', consecutiveFailures: 1, nextSyncAt: DEBOUNCE + INTERVALS.activeMs })
      expect(h.scheduler.getState().lastError?.kind).toBe(kind)
    }
  })

  it('treats a throwing or malformed runSync as a server failure and logs it', async () => {
    const results: Array<() => unknown> = [
      () => {
        throw new TypeError('bug')
      },
      () => ({ nonsense: true }),
    ]
    for (const make of results) {
      const h = harness({ result: () => make() as SyncRunResult })
      h.scheduler.start()
      await h.env.advance(DEBOUNCE)
      const state = h.scheduler.getState()
      expect(state).toMatchObject({ status: 'backoff', consecutiveFailures: 1 })
      expect(state.lastError?.kind).toBe('server')
      expect(h.logger.lines.some((line) => line.level === 'error')).toBe(true)
    }
  })
})

describe('scheduler: stop, requests and state', () => {
  it('stop() aborts the run in flight and settles its requests as stopped', async () => {
    let seen: AbortSignal | undefined
    const h = harness({
      result: (context) =>
        new Promise<SyncRunResult>((resolve) => {
          seen = context.signal
          context.signal.addEventListener('abort', () => resolve({ ok: false, error: new SyncError('network', 'aborted') }))
        }),
    })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    const request = h.scheduler.requestSync()
    await h.scheduler.stop()
    expect(seen?.aborted).toBe(true)
    await expect(request).resolves.toEqual({ ok: false, skipped: 'stopped' })
    expect(h.scheduler.getState()).toMatchObject({ status: 'stopped', consecutiveFailures: 0, nextSyncAt: null })
    expect(h.env.pendingTimers()).toBe(0)
  })

  it('settles a pending request as offline when the connection drops before it runs', async () => {
    const gate = deferred<SyncRunResult>()
    const h = harness({ result: (_context, index) => (index === 0 ? gate.promise : { ok: true, didWork: false }) })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE)
    const request = h.scheduler.requestSync()
    h.env.setOnline(false)
    gate.resolve({ ok: true, didWork: false })
    await expect(request).resolves.toEqual({ ok: false, skipped: 'offline' })
    expect(h.runs).toHaveLength(1)
  })

  it('publishes each state change once, with the planned next sync time', async () => {
    const h = harness()
    h.scheduler.start()
    expect(h.states.at(-1)).toMatchObject({ status: 'idle', nextSyncAt: DEBOUNCE })
    await h.env.advance(DEBOUNCE)
    expect(h.states.map((s) => s.status)).toEqual(['idle', 'syncing', 'idle'])
    expect(h.states.at(-1)).toMatchObject({ lastSyncAt: DEBOUNCE, nextSyncAt: DEBOUNCE + INTERVALS.activeMs })
    expect(h.scheduler.getState()).toBe(h.states.at(-1))
    h.env.setOnline(false)
    expect(h.states.at(-1)).toMatchObject({ status: 'offline', nextSyncAt: null })
  })

  it('keeps going when a state listener throws', async () => {
    const h = harness()
    h.scheduler.subscribe(() => {
      throw new Error('listener bug')
    })
    h.scheduler.start()
    await h.env.advance(DEBOUNCE + INTERVALS.activeMs)
    expect(h.runs).toHaveLength(2)
  })
})
