/**
 * The browser environment: `navigator.onLine` with `online`/`offline` events, page visibility as the
 * app state, and the Battery Status API where the browser has one. Each global may be absent (a worker,
 * SSR, an old browser): the matching signal then falls back to a fixed value and never fires.
 */
import type { AppState, BatteryState, Environment, TimerHandle, Unsubscribe } from '../core/env.js'

/** The part of `EventTarget` the adapter uses. */
export interface EventTargetLike {
  addEventListener(type: string, listener: () => void): void
  removeEventListener(type: string, listener: () => void): void
}

/** The part of `window` the adapter uses: connectivity events, timers, and `scheduler.yield` if any. */
export interface BrowserWindowLike extends EventTargetLike {
  setTimeout?(callback: () => void, ms: number): unknown
  clearTimeout?(handle: any): void
  scheduler?: { yield?: () => Promise<void> }
}

/** The Battery Status API's `BatteryManager` (Chromium only). */
export interface BatteryManagerLike extends EventTargetLike {
  readonly level: number
  readonly charging: boolean
}

/** The part of `navigator` the adapter uses. */
export interface BrowserNavigatorLike {
  readonly onLine?: boolean
  getBattery?(): Promise<BatteryManagerLike>
}

/** The part of `document` the adapter uses. */
export interface BrowserDocumentLike extends EventTargetLike {
  readonly visibilityState?: string
}

/** Options of {@link createBrowserEnvironment}. Each global defaults to the real one; `null` means absent. */
export interface BrowserEnvironmentOptions {
  window?: BrowserWindowLike | null
  navigator?: BrowserNavigatorLike | null
  document?: BrowserDocumentLike | null
  /** Wall clock (default `Date.now`). */
  now?: () => number
}

interface ResolvedBrowserEnvironmentOptions {
  window: BrowserWindowLike | undefined
  navigator: BrowserNavigatorLike | undefined
  document: BrowserDocumentLike | undefined
  now: () => number
}

function resolveOptions(options: BrowserEnvironmentOptions): ResolvedBrowserEnvironmentOptions {
  const host = globalThis as { window?: unknown; navigator?: unknown; document?: unknown }
  const pick = <T>(given: T | null | undefined, global: unknown): T | undefined =>
    given === null ? undefined : given !== undefined ? given : ((global ?? undefined) as T | undefined)
  return {
    window: pick(options.window, host.window),
    navigator: pick(options.navigator, host.navigator),
    document: pick(options.document, host.document),
    now: options.now ?? Date.now,
  }
}

/**
 * A signal whose source is attached only while it has listeners (an unused signal holds no host
 * listener), telling listeners about changes of value only.
 */
function createSignal<T>(attach: (update: () => void) => Unsubscribe, read: () => T, same: (a: T, b: T) => boolean) {
  const listeners = new Set<(value: T) => void>()
  let detach: Unsubscribe | undefined
  let last = read()
  const update = (): void => {
    const value = read()
    if (same(value, last)) return
    last = value
    for (const listener of [...listeners]) listener(value)
  }
  return {
    subscribe(listener: (value: T) => void): Unsubscribe {
      const entry = (value: T): void => listener(value)
      if (listeners.size === 0) {
        last = read()
        detach = attach(update)
      }
      listeners.add(entry)
      return () => {
        if (!listeners.delete(entry) || listeners.size > 0) return
        detach?.()
        detach = undefined
      }
    },
  }
}

const sameBattery = (a: BatteryState | undefined, b: BatteryState | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.level === b.level && a.charging === b.charging)

function listenTo(target: EventTargetLike | undefined, types: readonly string[], update: () => void): Unsubscribe {
  if (target === undefined) return () => {}
  for (const type of types) target.addEventListener(type, update)
  return () => {
    for (const type of types) target.removeEventListener(type, update)
  }
}

/** Create the browser {@link Environment}. */
export function createBrowserEnvironment(options: BrowserEnvironmentOptions = {}): Environment {
  const { window: win, navigator: nav, document: doc, now } = resolveOptions(options)

  const isOnline = (): boolean => nav?.onLine ?? true
  const appState = (): AppState => (doc?.visibilityState === 'hidden' ? 'background' : 'active')
  const online = createSignal((update) => listenTo(win, ['online', 'offline'], update), isOnline, (a, b) => a === b)
  const visibility = createSignal((update) => listenTo(doc, ['visibilitychange'], update), appState, (a, b) => a === b)

  // The Battery Status API answers asynchronously; until it has, the battery is unknown. Its events
  // are wired while someone listens and the manager is known, whichever comes last.
  let manager: BatteryManagerLike | undefined
  let requested = false
  let batteryUpdate: (() => void) | undefined
  let detachManager: Unsubscribe | undefined
  const readBattery = (): BatteryState | undefined =>
    manager === undefined || !Number.isFinite(manager.level) ? undefined : { level: manager.level, charging: manager.charging }
  const wireManager = (): void => {
    if (manager !== undefined && batteryUpdate !== undefined && detachManager === undefined) {
      detachManager = listenTo(manager, ['levelchange', 'chargingchange'], batteryUpdate)
    }
  }
  const battery = createSignal<BatteryState | undefined>(
    (update) => {
      batteryUpdate = update
      wireManager()
      return () => {
        batteryUpdate = undefined
        detachManager?.()
        detachManager = undefined
      }
    },
    readBattery,
    sameBattery,
  )
  const requestBattery = (): void => {
    if (requested || typeof nav?.getBattery !== 'function') return
    requested = true
    nav.getBattery().then(
      (found) => {
        manager = found
        wireManager()
        // Report the first reading to whoever subscribed before the answer came.
        batteryUpdate?.()
      },
      () => {
        // Refused (permissions policy, insecure context): the battery stays unknown.
      },
    )
  }

  const setTimer = (callback: () => void, ms: number): TimerHandle =>
    typeof win?.setTimeout === 'function' ? win.setTimeout(callback, ms) : globalThis.setTimeout(callback, ms)
  const clearTimer = (handle: TimerHandle): void => {
    if (typeof win?.clearTimeout === 'function') win.clearTimeout(handle)
    else globalThis.clearTimeout(handle as Parameters<typeof globalThis.clearTimeout>[0])
  }

  return {
    now,
    setTimeout: setTimer,
    clearTimeout: clearTimer,
    isOnline,
    onOnlineChange: (listener) => online.subscribe(listener),
    appState,
    onAppStateChange: (listener) => visibility.subscribe(listener),
    battery() {
      requestBattery()
      return readBattery()
    },
    onBatteryChange(listener) {
      requestBattery()
      return battery.subscribe((value) => {
        if (value !== undefined) listener(value)
      })
    },
    yieldToHost() {
      const scheduler = win?.scheduler
      if (typeof scheduler?.yield === 'function') return scheduler.yield()
      // A message is a task without the 4 ms clamp browsers put on chained zero-delay timers.
      if (typeof MessageChannel === 'function') {
        return new Promise<void>((resolve) => {
          const channel = new MessageChannel()
          channel.port1.onmessage = () => {
            channel.port1.close()
            resolve()
          }
          channel.port2.postMessage(null)
        })
      }
      return new Promise<void>((resolve) => setTimer(resolve, 0))
    },
  }
}
