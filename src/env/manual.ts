/**
 * A hand-driven environment for tests and benchmarks: a virtual clock that only moves when told,
 * timers that fire in order as it moves, and device signals set by the caller.
 */
import type { AppState, BatteryState, Environment, TimerHandle, Unsubscribe } from '../core/env.js'

/** Options of {@link createManualEnvironment}. */
export interface ManualEnvironmentOptions {
  /** Initial virtual time, ms since epoch (default 0). */
  now?: number
  /** Default true. */
  online?: boolean
  /** Default `active`. */
  appState?: AppState
  /** Default `undefined` (the platform cannot tell). */
  battery?: BatteryState
}

/** Listener counts per signal, to check that subscribers clean up after themselves. */
export interface ManualListenerCounts {
  online: number
  appState: number
  battery: number
}

/** An {@link Environment} whose clock and signals are driven by the caller. */
export interface ManualEnvironment extends Environment {
  /**
   * Move the clock forward by `ms`, firing every timer that falls due on the way in due-time order
   * (ties in the order they were set), with the clock set to each timer's due time as it fires.
   * Pending promise callbacks are settled after each timer, so async work a timer starts (and timers
   * that work sets) happens inside the same advance. Rethrows the first error a timer callback threw.
   */
  advance(ms: number): Promise<void>
  /** Settle pending promise callbacks without moving the clock. */
  flush(): Promise<void>
  /** Set connectivity; listeners hear about changes only. */
  setOnline(online: boolean): void
  /** Set the app state; listeners hear about changes only. */
  setAppState(state: AppState): void
  /** Set the battery reading (`undefined`: unknown); listeners hear about changes to a known reading. */
  setBattery(battery: BatteryState | undefined): void
  /** Timer callbacks fired so far: each one is a wake-up of the host. */
  readonly wakeups: number
  /** Timers currently armed. */
  pendingTimers(): number
  /** Due time of the earliest armed timer, or `null`. */
  nextTimerAt(): number | null
  /** Listeners currently subscribed, per signal. */
  listenerCount(): ManualListenerCounts
}

interface ManualTimer {
  readonly id: number
  readonly at: number
  readonly callback: () => void
}

/** Resolves once the host has run its pending microtasks: one macrotask turn. */
function macrotask(): Promise<void> {
  const host = globalThis as { setImmediate?: (callback: () => void) => unknown }
  return new Promise((resolve) => {
    if (typeof host.setImmediate === 'function') host.setImmediate(resolve)
    else globalThis.setTimeout(resolve, 0)
  })
}

/** Create a {@link ManualEnvironment}. Nothing moves until `advance` is called. */
export function createManualEnvironment(options: ManualEnvironmentOptions = {}): ManualEnvironment {
  let clock = options.now ?? 0
  let online = options.online ?? true
  let appState: AppState = options.appState ?? 'active'
  let battery: BatteryState | undefined = options.battery === undefined ? undefined : { ...options.battery }
  let wakeups = 0
  let nextId = 1
  // Ordered by (at, id); ids grow, so set order breaks ties.
  const timers: ManualTimer[] = []
  const onlineListeners = new Set<(online: boolean) => void>()
  const appStateListeners = new Set<(state: AppState) => void>()
  const batteryListeners = new Set<(battery: BatteryState) => void>()

  const listen = <T>(set: Set<T>, listener: T): Unsubscribe => {
    // Wrap so subscribing the same function twice gives two independent subscriptions.
    const entry = ((...args: unknown[]) => (listener as (...a: unknown[]) => void)(...args)) as T
    set.add(entry)
    return () => {
      set.delete(entry)
    }
  }
  const emit = <A>(set: Set<(arg: A) => void>, arg: A): void => {
    for (const listener of [...set]) listener(arg)
  }

  const takeDue = (limit: number): ManualTimer | undefined => {
    const first = timers[0]
    if (first === undefined || first.at > limit) return undefined
    timers.shift()
    return first
  }

  return {
    now: () => clock,
    setTimeout(callback, ms) {
      const delay = Number.isFinite(ms) && ms > 0 ? ms : 0
      const timer: ManualTimer = { id: nextId++, at: clock + delay, callback }
      let index = timers.length
      while (index > 0 && (timers[index - 1] as ManualTimer).at > timer.at) index -= 1
      timers.splice(index, 0, timer)
      return timer.id
    },
    clearTimeout(handle: TimerHandle) {
      const index = timers.findIndex((timer) => timer.id === handle)
      if (index >= 0) timers.splice(index, 1)
    },
    isOnline: () => online,
    onOnlineChange: (listener) => listen(onlineListeners, listener),
    appState: () => appState,
    onAppStateChange: (listener) => listen(appStateListeners, listener),
    battery: () => (battery === undefined ? undefined : { ...battery }),
    onBatteryChange: (listener) => listen(batteryListeners, listener),
    yieldToHost: () => Promise.resolve(),

    async advance(ms) {
      if (!(ms >= 0)) throw new RangeError(`advance(ms) needs ms >= 0, got ${ms}`)
      const target = clock + ms
      let firstError: unknown
      let failed = false
      await macrotask()
      for (let timer = takeDue(target); timer !== undefined; timer = takeDue(target)) {
        clock = Math.max(clock, timer.at)
        wakeups += 1
        try {
          timer.callback()
        } catch (error) {
          if (!failed) firstError = error
          failed = true
        }
        await macrotask()
      }
      clock = target
      if (failed) throw firstError
    },
    flush: macrotask,
    setOnline(next) {
      if (next === online) return
      online = next
      emit(onlineListeners, next)
    },
    setAppState(next) {
      if (next === appState) return
      appState = next
      emit(appStateListeners, next)
    },
    setBattery(next) {
      const same = next === undefined ? battery === undefined : battery !== undefined && battery.level === next.level && battery.charging === next.charging
      if (same) return
      battery = next === undefined ? undefined : { ...next }
      if (next !== undefined) emit(batteryListeners, { ...next })
    },
    get wakeups() {
      return wakeups
    },
    pendingTimers: () => timers.length,
    nextTimerAt: () => timers[0]?.at ?? null,
    listenerCount: () => ({ online: onlineListeners.size, appState: appStateListeners.size, battery: batteryListeners.size }),
  }
}
