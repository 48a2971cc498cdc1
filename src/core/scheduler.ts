/**
 * The background scheduler: decides when a sync run starts, from time, local writes and the device
 * signals of the {@link Environment}, and what to do after a run fails.
 *
 * States (`SchedulerState.status`):
 * ```
 *             start()            timer due                failure to retry
 *   stopped ─────────► idle ─────────────────► syncing ─────────────────► backoff
 *      ▲                │ ▲ ◄── ok / give up ──── │  ▲                       │
 *      │                │ │                       │  └──── retry due ────────┘
 *   stop() from any     │ │ OS online /           │
 *   state: timers       ▼ │ notifyAuthChange()    │ auth failure, no session to be had
 *   cleared, run   offline / unauthenticated ◄────┘
 *   aborted        (no timers armed at all)
 *
 *   from             on                                          to
 *   idle             a timer: interval or a debounced trigger    syncing
 *   syncing          ok; or conflict / permanent (give up)       idle
 *   syncing          network, server, rate-limit; or auth again  backoff
 *                    right after a session refresh
 *   syncing          auth, and refreshAuth cannot give a session unauthenticated
 *   backoff          retry due; or reconnect, foreground,        syncing (never before Retry-After)
 *                    sign-in, requestSync() cutting it short
 *   idle / backoff   OS offline / signed out                     offline / unauthenticated
 *   offline          OS online                                   idle, a run after debounceMs
 *   unauthenticated  notifyAuthChange() with a session           idle, a run after debounceMs
 * ```
 *
 * Invariants:
 * 1. Runs never overlap: `running` holds the only run. A trigger during a run only records `pending`,
 *    which becomes one run after the current one ends (however many triggers arrived).
 * 2. At most one timer is armed, and only while started, not running, online and authenticated:
 *    offline, signed out or stopped, the scheduler costs zero wake-ups.
 * 3. No run starts before `notBefore` (a server's Retry-After), whoever asks for it.
 * 4. A run covers every trigger recorded before it started: it takes `pending` with it, so a write
 *    notified before a run is never followed by a second run just for that write.
 * 5. Every `requestSync` promise settles exactly once: with the result of the run that covered it,
 *    or as skipped when stopped, offline or signed out. None rejects.
 * 6. `runSync` failures (returned or thrown) become state and log lines, never exceptions.
 *
 * Failures (see `decideRetry` in `retry.ts`): a network or server failure starts a jittered,
 * capped exponential backoff that only a success resets (a retry never comes sooner than
 * `debounceMs`, whatever the jitter draws). A network failure counts as evidence of
 * being offline even while the platform says online: writes and the periodic pull wait for the
 * retry, which is the probe. New evidence cuts the wait short — the platform reporting a reconnect,
 * the app returning to the foreground, a sign-in, an explicit `requestSync()` — but nothing cuts a
 * rate limit short: no run starts before `max(Retry-After, backoff)`. On `auth` the session is
 * refreshed through `refreshAuth` and the run retried at once; if it fails with `auth` again the
 * scheduler backs off; if no session can be had it waits, with no timer, for `notifyAuthChange()`.
 * `conflict` and `permanent` are not retried: the run has dealt with those items, pulls go on.
 * A `runSync` that throws or returns something malformed is logged and treated as a server failure,
 * so a bug cannot stop background sync nor make it spin.
 *
 * Battery rule: below `lowBatteryThreshold` and not charging, periodic pulls slow to
 * `intervals.lowBatteryMs` and background runs pass `highPriorityOnly: true`, so only high-priority
 * queue items are pushed. Event triggers (writes, reconnect, foreground) then start a run only when
 * high-priority work is pending; otherwise their changes wait for the next low-battery pull or for the
 * battery to recover (which triggers a run if work is pending). An explicit `requestSync()` is the
 * app asking: it runs with `highPriorityOnly: false` whatever the battery.
 */
import type { AppState, BatteryState, Environment, TimerHandle, Unsubscribe } from './env.js'
import { SyncError, isAbortError } from './errors.js'
import type { Logger } from './logger.js'
import { createSilentLogger } from './logger.js'
import type { BackoffOptions } from './retry.js'
import { createBackoff, decideRetry } from './retry.js'

/** Why a run was started. */
export type SyncReason =
  /** The first run after `start()`. */
  | 'start'
  /** The periodic pull came due. */
  | 'interval'
  /** Local writes (debounced). */
  | 'write'
  /** The platform reported a reconnect. */
  | 'online'
  /** The app came back to the foreground. */
  | 'foreground'
  /** The session changed (`notifyAuthChange()`). */
  | 'auth'
  /** The battery left the low state with work pending. */
  | 'battery'
  /** A backoff wait ended. */
  | 'retry'
  /** The app asked (`requestSync()`). */
  | 'manual'

/** What a run is told. */
export interface SyncContext {
  reason: SyncReason
  /** Push only high-priority queue items (battery low). Pulls still run. */
  highPriorityOnly: boolean
  /** Aborted by `stop()`; the run must stop early and lose nothing. */
  signal: AbortSignal
}

/** What a run reports. `runSync` resolves to this and is not expected to throw. */
export type SyncRunResult = { ok: true; didWork: boolean } | { ok: false; error: SyncError }

/** Why a requested sync did not run. */
export type SyncSkipReason = 'offline' | 'unauthenticated' | 'stopped'

/** Settles a `requestSync()` call: the covering run's result, or why no run happened. */
export type SyncRequestResult = SyncRunResult | { ok: false; skipped: SyncSkipReason }

/** What the scheduler is doing. */
export type SchedulerStatus = 'idle' | 'syncing' | 'offline' | 'unauthenticated' | 'backoff' | 'stopped'

/** A snapshot of the scheduler; a new object only when something in it changed. */
export interface SchedulerState {
  status: SchedulerStatus
  /** When the armed timer will start a run (virtual or wall clock of the environment), or `null`. */
  nextSyncAt: number | null
  /** End of the last successful run, or `null`. */
  lastSyncAt: number | null
  /** Failed runs since the last success. */
  consecutiveFailures: number
  /** The error of the last failed run, cleared by a success. */
  lastError: SyncError | null
}

/** Periodic pull intervals, ms. */
export interface SchedulerIntervals {
  /** App in the foreground (default 30 s). */
  activeMs: number
  /** App in the background (default 5 min). */
  backgroundMs: number
  /** Battery low and not charging, either app state (default 15 min). */
  lowBatteryMs: number
}

/** Options of {@link createScheduler}. */
export interface SchedulerOptions {
  env: Environment
  /** Performs one sync run (push then pull). Expected to resolve, never to throw. */
  runSync: (context: SyncContext) => Promise<SyncRunResult>
  /** Whether any queue item waits to be pushed. */
  hasPendingWork: () => boolean
  /** Whether a high-priority queue item waits to be pushed. */
  hasHighPriorityWork: () => boolean
  /** Whether a session exists (default: always). Re-read on every decision and on `notifyAuthChange()`. */
  isAuthenticated?: () => boolean
  /** Called after an `auth` failure; resolve `true` once a fresh session is in place. */
  refreshAuth?: () => Promise<boolean>
  intervals?: Partial<SchedulerIntervals>
  /** Battery level (0..1) below which the device counts as low when not charging (default 0.15). */
  lowBatteryThreshold?: number
  /** Delay that gathers a burst of writes or signals into one run, ms (default 250). */
  debounceMs?: number
  /** Backoff after transient failures (defaults of `createBackoff`; `random` defaults to `options.random`). */
  backoff?: BackoffOptions
  logger?: Logger
  /** Uniform source in [0, 1) for jitter (default `Math.random`). */
  random?: () => number
}

/** {@link SchedulerOptions} with defaults applied. */
export interface ResolvedSchedulerOptions {
  env: Environment
  runSync: SchedulerOptions['runSync']
  hasPendingWork: () => boolean
  hasHighPriorityWork: () => boolean
  isAuthenticated: () => boolean
  refreshAuth: (() => Promise<boolean>) | undefined
  intervals: SchedulerIntervals
  lowBatteryThreshold: number
  debounceMs: number
  backoff: BackoffOptions
  logger: Logger
}

/** The scheduler. Every method is safe in any state; none throws a sync failure. */
export interface Scheduler {
  /** Subscribe to the environment and plan the first (debounced) run. Idempotent. */
  start(): void
  /** Clear every timer, unsubscribe, abort an in-flight run; resolves once that run has settled. */
  stop(): Promise<void>
  /**
   * Ask for a run now (after any Retry-After). During a run, the request is covered by one run after
   * it. Resolves with that run's result, or as skipped when it cannot run.
   */
  requestSync(reason?: SyncReason): Promise<SyncRequestResult>
  /** Local writes happened: a run follows within `debounceMs` of the first of a burst. */
  notifyWrite(): void
  /** The session may have changed (sign-in, sign-out, refresh): re-read `isAuthenticated`. */
  notifyAuthChange(): void
  getState(): SchedulerState
  subscribe(listener: (state: SchedulerState) => void): Unsubscribe
}

/** Defaults of {@link createScheduler}, resolved in one place. */
export function resolveSchedulerOptions(options: SchedulerOptions): ResolvedSchedulerOptions {
  const random = options.random ?? Math.random
  return {
    env: options.env,
    runSync: options.runSync,
    hasPendingWork: options.hasPendingWork,
    hasHighPriorityWork: options.hasHighPriorityWork,
    isAuthenticated: options.isAuthenticated ?? (() => true),
    refreshAuth: options.refreshAuth,
    intervals: {
      activeMs: options.intervals?.activeMs ?? 30_000,
      backgroundMs: options.intervals?.backgroundMs ?? 300_000,
      lowBatteryMs: options.intervals?.lowBatteryMs ?? 900_000,
    },
    lowBatteryThreshold: options.lowBatteryThreshold ?? 0.15,
    debounceMs: Math.max(0, options.debounceMs ?? 250),
    backoff: { random, ...options.backoff },
    logger: options.logger ?? createSilentLogger(),
  }
}

/** Triggers that may cut a network/server backoff short: each is new evidence, not a repeat. */
const BYPASSES_BACKOFF: ReadonlySet<SyncReason> = new Set(['start', 'online', 'foreground', 'auth', 'manual'])

/** When several triggers merge into one run, the run is named after the first in this list. */
const REASON_RANK: readonly SyncReason[] = ['manual', 'start', 'auth', 'online', 'foreground', 'retry', 'battery', 'write', 'interval']

interface Pending {
  reasons: Set<SyncReason>
  dueAt: number
  /** Asked for by the app: runs whatever the battery and queue say. */
  forced: boolean
  waiters: Array<(result: SyncRequestResult) => void>
}

interface Run {
  controller: AbortController
  promise: Promise<void>
}

interface Plan {
  at: number
  /** When the periodic pull (or the backoff retry) falls due. */
  periodicAt: number
}

/** Create a {@link Scheduler}. Nothing happens until `start()`. */
export function createScheduler(options: SchedulerOptions): Scheduler {
  const o = resolveSchedulerOptions(options)
  const { env, logger } = o
  const backoff = createBackoff(o.backoff)

  let started = false
  let online = true
  let appState: AppState = 'active'
  let battery: BatteryState | undefined
  /** Set when no session could be had; only `notifyAuthChange()` clears it. */
  let authBlocked = false
  let wasAuthenticated = true
  let running: Run | null = null
  let pending: Pending | null = null
  let timer: { handle: TimerHandle; at: number } | null = null
  let unsubscribes: Unsubscribe[] = []
  /** Periodic pulls fall due one interval after this (end of the last run, or start). */
  let anchor = 0
  /**
   * Last wake-up of the gates (start, reconnect, foreground, sign-in, battery change): a pull that came
   * due while gated waits one debounce after it, so it joins the wake trigger's run instead of racing it.
   */
  let wokeAt = 0
  /** Next attempt after a transient failure; `null` when not backing off. */
  let retryAt: number | null = null
  /** Rate-limit floor: no run starts before it. */
  let notBefore = 0
  let lastSyncAt: number | null = null
  let consecutiveFailures = 0
  let lastError: SyncError | null = null
  let state: SchedulerState = { status: 'stopped', nextSyncAt: null, lastSyncAt: null, consecutiveFailures: 0, lastError: null }
  const listeners = new Set<(state: SchedulerState) => void>()

  const safely = <T>(what: string, fn: () => T, fallback: T): T => {
    try {
      return fn()
    } catch (error) {
      logger.error(`${what} threw`, { error })
      return fallback
    }
  }
  const isAuthenticated = (): boolean => !authBlocked && safely('isAuthenticated', o.isAuthenticated, false)
  const isLowBattery = (): boolean => battery !== undefined && !battery.charging && battery.level < o.lowBatteryThreshold
  const interval = (): number => {
    const base = appState === 'active' ? o.intervals.activeMs : o.intervals.backgroundMs
    // Low battery never makes pulls more frequent than the app state alone would.
    return isLowBattery() ? Math.max(base, o.intervals.lowBatteryMs) : base
  }

  const addPending = (reason: SyncReason, dueAt: number, forced: boolean, waiter?: (result: SyncRequestResult) => void): void => {
    if (pending === null) pending = { reasons: new Set(), dueAt, forced: false, waiters: [] }
    pending.reasons.add(reason)
    // Fixed window: the first trigger of a burst sets the time; later ones never push it out.
    pending.dueAt = Math.min(pending.dueAt, dueAt)
    pending.forced ||= forced
    if (waiter !== undefined) pending.waiters.push(waiter)
  }

  const settleWaiters = (waiters: Pending['waiters'], result: SyncRequestResult): void => {
    for (const waiter of waiters) waiter(result)
  }

  const plan = (): Plan | null => {
    if (!started || running !== null || !online || !isAuthenticated()) return null
    const periodicAt = retryAt ?? Math.max(anchor + interval(), wokeAt + o.debounceMs)
    let at = periodicAt
    if (pending !== null) {
      const bypass = pending.forced || [...pending.reasons].some((reason) => BYPASSES_BACKOFF.has(reason))
      at = Math.min(at, retryAt !== null && !bypass ? Math.max(pending.dueAt, retryAt) : pending.dueAt)
    }
    return { at: Math.max(at, notBefore), periodicAt }
  }

  const publish = (): void => {
    const now = env.now()
    const status: SchedulerStatus = !started
      ? 'stopped'
      : running !== null
        ? 'syncing'
        : !online
          ? 'offline'
          : !isAuthenticated()
            ? 'unauthenticated'
            : retryAt !== null || notBefore > now
              ? 'backoff'
              : 'idle'
    const next: SchedulerState = { status, nextSyncAt: timer?.at ?? null, lastSyncAt, consecutiveFailures, lastError }
    if (
      next.status === state.status &&
      next.nextSyncAt === state.nextSyncAt &&
      next.lastSyncAt === state.lastSyncAt &&
      next.consecutiveFailures === state.consecutiveFailures &&
      next.lastError === state.lastError
    ) {
      return
    }
    state = next
    for (const listener of [...listeners]) safely('scheduler listener', () => listener(next), undefined)
  }

  /** Bring the single timer in line with the plan; settle requests that can no longer run. */
  const reschedule = (): void => {
    wasAuthenticated = isAuthenticated()
    if (started && running === null && pending !== null && (!online || !wasAuthenticated)) {
      // Gated: drop the trigger. Reconnect / sign-in brings its own trigger, so nothing is forgotten.
      const { waiters } = pending
      pending = null
      settleWaiters(waiters, { ok: false, skipped: online ? 'unauthenticated' : 'offline' })
    }
    const next = plan()
    if (timer !== null && (next === null || next.at !== timer.at)) {
      env.clearTimeout(timer.handle)
      timer = null
    }
    if (next !== null && timer === null) {
      timer = { handle: env.setTimeout(onTimer, Math.max(0, next.at - env.now())), at: next.at }
    }
    publish()
  }

  const shouldRun = (reasons: Iterable<SyncReason>, lowBattery: boolean): boolean => {
    for (const reason of reasons) {
      switch (reason) {
        case 'write':
          if (lowBattery ? o.hasHighPriorityWork() : o.hasPendingWork()) return true
          break
        case 'battery':
          if (o.hasPendingWork()) return true
          break
        case 'online':
        case 'foreground':
          if (!lowBattery || o.hasHighPriorityWork()) return true
          break
        default:
          return true
      }
    }
    return false
  }

  function onTimer(): void {
    timer = null
    fire()
  }

  /** Start the planned run if it is due; otherwise re-plan. */
  const fire = (): void => {
    const next = plan()
    if (next === null || next.at > env.now()) {
      reschedule()
      return
    }
    const lowBattery = isLowBattery()
    const taken = pending
    const reasons = new Set<SyncReason>(taken?.reasons ?? [])
    if (next.periodicAt <= env.now()) reasons.add(retryAt !== null ? 'retry' : 'interval')
    const forced = taken?.forced ?? false
    if (taken === null && reasons.size === 0) {
      // Due, yet neither the pull nor a trigger: cannot happen while plan() and this agree; re-plan.
      reschedule()
      return
    }
    if (!forced && !safely('hasPendingWork', () => shouldRun(reasons, lowBattery), true)) {
      pending = null
      reschedule()
      return
    }
    // Invariant 4: the run takes every trigger recorded so far.
    pending = null
    const reason = REASON_RANK.find((candidate) => reasons.has(candidate)) ?? 'interval'
    startRun(reason, lowBattery && !forced, taken?.waiters ?? [])
  }

  const attempt = async (context: SyncContext): Promise<SyncRunResult> => {
    try {
      const result: unknown = await o.runSync(context)
      if (typeof result === 'object' && result !== null && 'ok' in result) {
        if (result.ok === true) return result as SyncRunResult
        if (result.ok === false && 'error' in result && result.error instanceof SyncError) return result as SyncRunResult
      }
      logger.error('runSync resolved to something that is not a SyncRunResult; treated as a server failure', { result })
      return { ok: false, error: new SyncError('server', 'runSync returned an invalid result') }
    } catch (error) {
      if (context.signal.aborted && isAbortError(error)) return { ok: false, error: new SyncError('network', 'sync aborted', { cause: error }) }
      // A bug in the run must not stop background sync, nor loop hot: back off like a server fault.
      logger.error('runSync threw; treated as a server failure', { error })
      return { ok: false, error: new SyncError('server', 'runSync threw', { cause: error }) }
    }
  }

  const refresh = async (): Promise<boolean> => {
    if (o.refreshAuth === undefined) return false
    try {
      return (await o.refreshAuth()) === true
    } catch (error) {
      logger.warn('refreshAuth threw; treated as no session', { error })
      return false
    }
  }

  /** One run, with at most one immediate retry after a session refresh. */
  const cycle = async (context: SyncContext): Promise<{ result: SyncRunResult; authRefreshed: boolean; noSession: boolean }> => {
    const first = await attempt(context)
    if (first.ok || first.error.kind !== 'auth' || context.signal.aborted) return { result: first, authRefreshed: false, noSession: false }
    if (!(await refresh())) return { result: first, authRefreshed: false, noSession: true }
    if (context.signal.aborted) return { result: first, authRefreshed: true, noSession: false }
    return { result: await attempt(context), authRefreshed: true, noSession: false }
  }

  const startRun = (reason: SyncReason, highPriorityOnly: boolean, waiters: Pending['waiters']): void => {
    const controller = new AbortController()
    const run: Run = { controller, promise: Promise.resolve() }
    running = run
    publish()
    run.promise = cycle({ reason, highPriorityOnly, signal: controller.signal }).then(
      (outcome) => finish(run, outcome, waiters),
      (error: unknown) => {
        // cycle() catches everything it calls; this is a last line of defence for invariant 5.
        logger.error('sync cycle failed unexpectedly', { error })
        finish(run, { result: { ok: false, error: new SyncError('server', 'sync cycle failed', { cause: error }) }, authRefreshed: false, noSession: false }, waiters)
      },
    )
  }

  const finish = (run: Run, outcome: { result: SyncRunResult; authRefreshed: boolean; noSession: boolean }, waiters: Pending['waiters']): void => {
    const { result } = outcome
    const now = env.now()
    running = null
    anchor = now
    const aborted = run.controller.signal.aborted
    if (result.ok) {
      lastSyncAt = now
      consecutiveFailures = 0
      lastError = null
      retryAt = null
      notBefore = 0
      backoff.reset()
    } else if (!aborted) {
      consecutiveFailures += 1
      lastError = result.error
      if (outcome.noSession) {
        authBlocked = true
        retryAt = null
        logger.warn('sync needs a session; waiting for sign-in', { kind: result.error.kind, message: result.error.message })
      } else {
        const decision = decideRetry({ error: result.error, backoff, authRefreshed: outcome.authRefreshed })
        if (decision.action === 'backoff' || decision.action === 'rate-limit') {
          // Full jitter may draw ~0: the floor keeps a failing run from retrying in a tight loop.
          retryAt = now + Math.max(decision.delayMs, o.debounceMs, 1)
          if (decision.action === 'rate-limit') notBefore = retryAt
        } else {
          // give-up: the failing items were resolved or dead-lettered by the run; periodic pulls go on.
          retryAt = null
        }
        logger.warn('sync failed', { kind: result.error.kind, message: result.error.message, action: decision.action, retryAt })
      }
    }
    settleWaiters(waiters, aborted && !result.ok ? { ok: false, skipped: 'stopped' } : result)
    reschedule()
  }

  const wake = (reason: SyncReason): void => {
    const now = env.now()
    wokeAt = now
    addPending(reason, now + o.debounceMs, false)
  }

  const listen = (): void => {
    unsubscribes = [
      env.onOnlineChange((next) => {
        if (next === online) return
        online = next
        if (online) wake('online')
        reschedule()
      }),
      env.onAppStateChange((next) => {
        const previous = appState
        appState = next
        if (next === 'active' && previous !== 'active') wake('foreground')
        reschedule()
      }),
      env.onBatteryChange((next) => {
        const wasLow = isLowBattery()
        battery = next
        if (wasLow && !isLowBattery()) {
          wokeAt = env.now()
          if (safely('hasPendingWork', o.hasPendingWork, false)) addPending('battery', env.now() + o.debounceMs, false)
        }
        reschedule()
      }),
    ]
  }

  return {
    start() {
      if (started) return
      started = true
      online = env.isOnline()
      appState = env.appState()
      battery = env.battery()
      anchor = env.now()
      listen()
      wake('start')
      reschedule()
    },

    async stop() {
      if (started) {
        started = false
        for (const unsubscribe of unsubscribes) safely('unsubscribe', unsubscribe, undefined)
        unsubscribes = []
        if (timer !== null) env.clearTimeout(timer.handle)
        timer = null
        const waiters = pending?.waiters ?? []
        pending = null
        settleWaiters(waiters, { ok: false, skipped: 'stopped' })
        running?.controller.abort()
        publish()
      }
      await running?.promise
    },

    requestSync(reason = 'manual') {
      if (!started) return Promise.resolve({ ok: false, skipped: 'stopped' })
      if (!online) return Promise.resolve({ ok: false, skipped: 'offline' })
      if (!isAuthenticated()) return Promise.resolve({ ok: false, skipped: 'unauthenticated' })
      return new Promise<SyncRequestResult>((resolve) => {
        addPending(reason, env.now(), true, resolve)
        const next = plan()
        // Due now (idle, no Retry-After): start at once rather than through a 0 ms timer wake-up.
        if (next !== null && next.at <= env.now()) {
          if (timer !== null) env.clearTimeout(timer.handle)
          timer = null
          fire()
        } else {
          reschedule()
        }
      })
    },

    notifyWrite() {
      if (!started) return
      addPending('write', env.now() + o.debounceMs, false)
      reschedule()
    },

    notifyAuthChange() {
      const before = wasAuthenticated
      authBlocked = false
      if (started && isAuthenticated() && (!before || lastError?.kind === 'auth')) {
        // A new session is new evidence: an auth backoff no longer applies.
        if (lastError?.kind === 'auth') retryAt = null
        wake('auth')
      }
      reschedule()
    },

    getState: () => state,

    subscribe(listener) {
      const entry = (next: SchedulerState): void => listener(next)
      listeners.add(entry)
      return () => {
        listeners.delete(entry)
      }
    },
  }
}
