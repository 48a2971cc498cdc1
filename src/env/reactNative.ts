/**
 * The React Native environment, over modules the app passes in: `@react-native-community/netinfo`,
 * React Native's `AppState`, and optionally `expo-battery`. Nothing here imports them; the shapes
 * below are the parts used, so any compatible module (or a fake in tests) fits.
 */
import type { AppState, BatteryState, Environment, TimerHandle, Unsubscribe } from '../core/env.js'
import type { Logger } from '../core/logger.js'
import { createSilentLogger } from '../core/logger.js'

/** The part of NetInfo's state the adapter reads; `null` means not known yet. */
export interface NetInfoStateLike {
  isConnected: boolean | null
  isInternetReachable?: boolean | null
}

/** The part of the NetInfo module the adapter uses. */
export interface NetInfoLike {
  /** Calls `listener` soon after subscribing and on every change; returns the unsubscribe function. */
  addEventListener(listener: (state: NetInfoStateLike) => void): () => void
  fetch(): Promise<NetInfoStateLike>
}

/** A native event subscription. */
export interface SubscriptionLike {
  remove(): void
}

/** The part of React Native's `AppState` the adapter uses. */
export interface AppStateLike {
  /** `active`, `background`, `inactive` (iOS, during transitions), `unknown`, `extension`. */
  readonly currentState: string | null
  addEventListener(type: 'change', listener: (state: string) => void): SubscriptionLike
}

/** The part of `expo-battery` the adapter uses. */
export interface ExpoBatteryLike {
  /** 0..1, or -1 where unknown (iOS simulator). */
  getBatteryLevelAsync(): Promise<number>
  /** expo-battery's `BatteryState`: 0 unknown, 1 unplugged, 2 charging, 3 full. */
  getBatteryStateAsync(): Promise<number>
  addBatteryLevelListener(listener: (event: { batteryLevel: number }) => void): SubscriptionLike
  addBatteryStateListener?(listener: (event: { batteryState: number }) => void): SubscriptionLike
}

/** Options of {@link createReactNativeEnvironment}. */
export interface ReactNativeEnvironmentOptions {
  netInfo: NetInfoLike
  appState: AppStateLike
  /** Without it the battery is unknown and never low. */
  battery?: ExpoBatteryLike
  logger?: Logger
  /** Wall clock (default `Date.now`). */
  now?: () => number
}

/** expo-battery's `BatteryState.CHARGING` and `BatteryState.FULL`: plugged in. */
const PLUGGED_IN: ReadonlySet<number> = new Set([2, 3])

/** Offline only when NetInfo says so; unknown (`null`) counts as online, and a failed request then acts as the probe. */
function isOnlineState(state: NetInfoStateLike): boolean {
  return state.isConnected !== false && state.isInternetReachable !== false
}

/** iOS reports `inactive` during transitions (app switcher, control centre): that is still the foreground. */
function toAppState(state: string | null): AppState {
  return state === 'background' ? 'background' : 'active'
}

/** Listeners that share one source subscription, attached while any listener remains. */
function createFanout<T>(attach: (emit: (value: T) => void) => Unsubscribe) {
  const listeners = new Set<(value: T) => void>()
  let detach: Unsubscribe | undefined
  const emit = (value: T): void => {
    for (const listener of [...listeners]) listener(value)
  }
  return {
    emit,
    subscribe(listener: (value: T) => void): Unsubscribe {
      const entry = (value: T): void => listener(value)
      listeners.add(entry)
      if (listeners.size === 1) detach = attach(emit)
      return () => {
        if (!listeners.delete(entry) || listeners.size > 0) return
        detach?.()
        detach = undefined
      }
    },
  }
}

/** Create the React Native {@link Environment}. */
export function createReactNativeEnvironment(options: ReactNativeEnvironmentOptions): Environment {
  const { netInfo, appState: appStateModule, battery: batteryModule } = options
  const logger = options.logger ?? createSilentLogger()
  const now = options.now ?? Date.now

  let online = true
  const onlineFanout = createFanout<boolean>((emit) =>
    netInfo.addEventListener((state) => {
      const next = isOnlineState(state)
      if (next === online) return
      online = next
      emit(next)
    }),
  )
  netInfo.fetch().then(
    (state) => {
      const next = isOnlineState(state)
      if (next === online) return
      online = next
      onlineFanout.emit(next)
    },
    (error: unknown) => logger.warn('NetInfo.fetch failed; assuming online', { error }),
  )

  let appState = toAppState(appStateModule.currentState)
  const appStateFanout = createFanout<AppState>((emit) => {
    appState = toAppState(appStateModule.currentState)
    const subscription = appStateModule.addEventListener('change', (state) => {
      const next = toAppState(state)
      if (next === appState) return
      appState = next
      emit(next)
    })
    return () => subscription.remove()
  })

  let level: number | undefined
  let charging = false
  let reported: BatteryState | undefined
  const readBattery = (): BatteryState | undefined => (level === undefined ? undefined : { level, charging })
  /** Emits the reading when it is known and differs from the last one emitted. */
  const reportBattery = (emit: (reading: BatteryState) => void): void => {
    const reading = readBattery()
    if (reading === undefined || (reported !== undefined && reported.level === reading.level && reported.charging === reading.charging)) return
    reported = reading
    emit(reading)
  }
  const setLevel = (value: number): void => {
    level = Number.isFinite(value) && value >= 0 ? Math.min(value, 1) : undefined
  }
  const batteryFanout = createFanout<BatteryState>((emit) => {
    if (batteryModule === undefined) return () => {}
    const report = (): void => reportBattery(emit)
    const subscriptions = [
      batteryModule.addBatteryLevelListener(({ batteryLevel }) => {
        setLevel(batteryLevel)
        report()
      }),
    ]
    if (typeof batteryModule.addBatteryStateListener === 'function') {
      subscriptions.push(
        batteryModule.addBatteryStateListener(({ batteryState }) => {
          charging = PLUGGED_IN.has(batteryState)
          report()
        }),
      )
    }
    return () => {
      for (const subscription of subscriptions) subscription.remove()
    }
  })
  if (batteryModule !== undefined) {
    Promise.all([batteryModule.getBatteryLevelAsync(), batteryModule.getBatteryStateAsync()]).then(
      ([value, state]) => {
        setLevel(value)
        charging = PLUGGED_IN.has(state)
        reportBattery(batteryFanout.emit)
      },
      (error: unknown) => logger.warn('reading the battery failed; treated as unknown', { error }),
    )
  }

  return {
    now,
    setTimeout: (callback, ms): TimerHandle => globalThis.setTimeout(callback, ms),
    clearTimeout: (handle) => globalThis.clearTimeout(handle as Parameters<typeof globalThis.clearTimeout>[0]),
    isOnline: () => online,
    onOnlineChange: (listener) => onlineFanout.subscribe(listener),
    appState: () => toAppState(appStateModule.currentState),
    onAppStateChange: (listener) => appStateFanout.subscribe(listener),
    battery: readBattery,
    onBatteryChange: (listener) => batteryFanout.subscribe(listener),
    yieldToHost: () => new Promise<void>((resolve) => globalThis.setTimeout(resolve, 0)),
  }
}
