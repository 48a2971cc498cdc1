import { readFile } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { BatteryState } from '../../src/core/env.js'
import { isAbortError } from '../../src/core/errors.js'
import { sleep } from '../../src/core/sleep.js'
import { createBrowserEnvironment } from '../../src/env/browser.js'
import type { BatteryManagerLike } from '../../src/env/browser.js'
import { createManualEnvironment } from '../../src/env/manual.js'
import { createNodeEnvironment } from '../../src/env/node.js'
import { createReactNativeEnvironment } from '../../src/env/reactNative.js'
import type { NetInfoStateLike } from '../../src/env/reactNative.js'

/** A minimal EventTarget that can tell how many listeners it holds. */
class FakeTarget {
  private readonly listeners = new Map<string, Set<() => void>>()
  addEventListener(type: string, listener: () => void): void {
    const set = this.listeners.get(type) ?? new Set()
    set.add(listener)
    this.listeners.set(type, set)
  }
  removeEventListener(type: string, listener: () => void): void {
    this.listeners.get(type)?.delete(listener)
  }
  dispatch(type: string): void {
    for (const listener of [...(this.listeners.get(type) ?? [])]) listener()
  }
  count(type?: string): number {
    if (type !== undefined) return this.listeners.get(type)?.size ?? 0
    let total = 0
    for (const set of this.listeners.values()) total += set.size
    return total
  }
}

class FakeBatteryManager extends FakeTarget implements BatteryManagerLike {
  constructor(
    public level: number,
    public charging: boolean,
  ) {
    super()
  }
}

/** Lets pending promise callbacks run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

function fakeBrowser(options: { onLine?: boolean; visibilityState?: string; battery?: FakeBatteryManager | 'refused' } = {}) {
  const window = Object.assign(new FakeTarget(), { timers: 0, setTimeout: (callback: () => void, ms: number) => {
    window.timers += 1
    return globalThis.setTimeout(callback, ms)
  }, clearTimeout: (handle: ReturnType<typeof setTimeout>) => globalThis.clearTimeout(handle) })
  const navigator: { onLine: boolean; getBattery?: () => Promise<BatteryManagerLike> } = { onLine: options.onLine ?? true }
  const battery = options.battery
  if (battery === 'refused') navigator.getBattery = () => Promise.reject(new Error('NotAllowedError'))
  else if (battery !== undefined) navigator.getBattery = () => Promise.resolve(battery)
  const document = Object.assign(new FakeTarget(), { visibilityState: options.visibilityState ?? 'visible' })
  return { window, navigator, document }
}

describe('browser environment', () => {
  afterEach(() => {
    vi.unstubAllGlobals()
  })

  it('yields to the host with scheduler.yield, else with a message (no clamped timer), else a zero timer', async () => {
    const withScheduler = fakeBrowser()
    let yields = 0
    const scheduler = { yield: () => ((yields += 1), Promise.resolve()) }
    await createBrowserEnvironment({ ...withScheduler, window: Object.assign(withScheduler.window, { scheduler }) }).yieldToHost?.()
    expect(yields).toBe(1)

    // Chained zero-delay timers are clamped to 4 ms by browsers; a message is not.
    const plain = fakeBrowser()
    const order: string[] = []
    const turn = createBrowserEnvironment(plain).yieldToHost!().then(() => order.push('yielded'))
    await Promise.resolve()
    order.push('same task')
    await turn
    expect(order).toEqual(['same task', 'yielded'])
    expect(plain.window.timers).toBe(0)

    vi.stubGlobal('MessageChannel', undefined)
    const old = fakeBrowser()
    await createBrowserEnvironment(old).yieldToHost?.()
    expect(old.window.timers).toBe(1)
  })

  it('reports online/offline events as changes only, and removes its listeners on unsubscribe', () => {
    const fake = fakeBrowser({ onLine: false })
    const env = createBrowserEnvironment(fake)
    expect(env.isOnline()).toBe(false)
    expect(fake.window.count()).toBe(0)
    const heard: boolean[] = []
    const unsubscribe = env.onOnlineChange((online) => heard.push(online))
    expect(fake.window.count('online')).toBe(1)
    expect(fake.window.count('offline')).toBe(1)

    fake.navigator.onLine = true
    fake.window.dispatch('online')
    fake.window.dispatch('online')
    fake.navigator.onLine = false
    fake.window.dispatch('offline')
    expect(heard).toEqual([true, false])
    expect(env.isOnline()).toBe(false)

    unsubscribe()
    expect(fake.window.count()).toBe(0)
  })

  it('maps page visibility to the app state', () => {
    const fake = fakeBrowser({ visibilityState: 'hidden' })
    const env = createBrowserEnvironment(fake)
    expect(env.appState()).toBe('background')
    const heard: string[] = []
    const first = env.onAppStateChange((state) => heard.push(state))
    const second = env.onAppStateChange(() => {})
    expect(fake.document.count('visibilitychange')).toBe(1)
    fake.document.visibilityState = 'visible'
    fake.document.dispatch('visibilitychange')
    expect(heard).toEqual(['active'])
    first()
    expect(fake.document.count()).toBe(1)
    second()
    expect(fake.document.count()).toBe(0)
  })

  it('reads the battery once the Battery Status API answers, and follows its events while listened to', async () => {
    const manager = new FakeBatteryManager(0.5, false)
    const fake = fakeBrowser({ battery: manager })
    const env = createBrowserEnvironment(fake)
    const heard: BatteryState[] = []
    const unsubscribe = env.onBatteryChange((battery) => heard.push(battery))
    expect(env.battery()).toBeUndefined()
    await settle()
    expect(env.battery()).toEqual({ level: 0.5, charging: false })
    expect(heard).toEqual([{ level: 0.5, charging: false }])

    manager.level = 0.1
    manager.dispatch('levelchange')
    manager.charging = true
    manager.dispatch('chargingchange')
    expect(heard.slice(1)).toEqual([
      { level: 0.1, charging: false },
      { level: 0.1, charging: true },
    ])
    unsubscribe()
    expect(manager.count()).toBe(0)
  })

  it('treats a refused or missing Battery Status API as unknown', async () => {
    for (const battery of ['refused', undefined] as const) {
      const env = createBrowserEnvironment(fakeBrowser({ battery }))
      const heard: unknown[] = []
      env.onBatteryChange((reading) => heard.push(reading))
      await settle()
      expect(env.battery()).toBeUndefined()
      expect(heard).toEqual([])
    }
  })

  it('falls back to fixed values when a global is absent', async () => {
    const env = createBrowserEnvironment({ window: null, navigator: null, document: null })
    expect(env.isOnline()).toBe(true)
    expect(env.appState()).toBe('active')
    expect(env.battery()).toBeUndefined()
    env.onOnlineChange(() => {})()
    env.onAppStateChange(() => {})()
    env.onBatteryChange(() => {})()
    await new Promise<void>((resolve) => env.setTimeout(resolve, 1))
  })

  it('uses the window timers when there is a window', async () => {
    const fake = fakeBrowser()
    const env = createBrowserEnvironment(fake)
    await new Promise<void>((resolve) => env.setTimeout(resolve, 1))
    env.clearTimeout(env.setTimeout(() => {}, 10_000))
    expect(fake.window.timers).toBe(2)
  })

  it('defaults to the real globals', () => {
    const fake = fakeBrowser({ onLine: false, visibilityState: 'hidden' })
    vi.stubGlobal('window', fake.window)
    vi.stubGlobal('navigator', fake.navigator)
    vi.stubGlobal('document', fake.document)
    const env = createBrowserEnvironment()
    expect(env.isOnline()).toBe(false)
    expect(env.appState()).toBe('background')
    const unsubscribe = env.onOnlineChange(() => {})
    expect(fake.window.count()).toBe(2)
    unsubscribe()
  })
})

function fakeNetInfo(initial: NetInfoStateLike) {
  const listeners = new Set<(state: NetInfoStateLike) => void>()
  let current = initial
  return {
    listeners,
    addEventListener(listener: (state: NetInfoStateLike) => void) {
      listeners.add(listener)
      // NetInfo calls a new listener with the current state soon after subscribing.
      queueMicrotask(() => listener(current))
      return () => {
        listeners.delete(listener)
      }
    },
    fetch: () => Promise.resolve(current),
    set(state: NetInfoStateLike) {
      current = state
      for (const listener of [...listeners]) listener(state)
    },
  }
}

function fakeAppState(initial: string) {
  const listeners = new Set<(state: string) => void>()
  return {
    currentState: initial as string | null,
    listeners,
    addEventListener(_type: 'change', listener: (state: string) => void) {
      listeners.add(listener)
      return { remove: () => listeners.delete(listener) }
    },
    set(state: string) {
      this.currentState = state
      for (const listener of [...listeners]) listener(state)
    },
  }
}

function fakeExpoBattery(level: number, state: number, withStateListener = true) {
  const levelListeners = new Set<(event: { batteryLevel: number }) => void>()
  const stateListeners = new Set<(event: { batteryState: number }) => void>()
  const module = {
    levelListeners,
    stateListeners,
    getBatteryLevelAsync: () => Promise.resolve(level),
    getBatteryStateAsync: () => Promise.resolve(state),
    addBatteryLevelListener(listener: (event: { batteryLevel: number }) => void) {
      levelListeners.add(listener)
      return { remove: () => levelListeners.delete(listener) }
    },
    addBatteryStateListener: withStateListener
      ? (listener: (event: { batteryState: number }) => void) => {
          stateListeners.add(listener)
          return { remove: () => stateListeners.delete(listener) }
        }
      : undefined,
  }
  return module
}

describe('React Native environment', () => {
  it('takes connectivity from NetInfo: offline only when it says so', async () => {
    const netInfo = fakeNetInfo({ isConnected: false, isInternetReachable: false })
    const env = createReactNativeEnvironment({ netInfo, appState: fakeAppState('active') })
    // Unknown until NetInfo answers: assumed online, so a request can act as the probe.
    expect(env.isOnline()).toBe(true)
    await settle()
    expect(env.isOnline()).toBe(false)

    const heard: boolean[] = []
    const unsubscribe = env.onOnlineChange((online) => heard.push(online))
    const also = env.onOnlineChange(() => {})
    expect(netInfo.listeners.size).toBe(1)
    netInfo.set({ isConnected: true, isInternetReachable: null })
    netInfo.set({ isConnected: true, isInternetReachable: true })
    netInfo.set({ isConnected: true, isInternetReachable: false })
    netInfo.set({ isConnected: null, isInternetReachable: null })
    expect(heard).toEqual([true, false, true])
    unsubscribe()
    also()
    expect(netInfo.listeners.size).toBe(0)
  })

  it('tells subscribers when the first NetInfo answer differs from the assumption', async () => {
    const netInfo = fakeNetInfo({ isConnected: false })
    const env = createReactNativeEnvironment({ netInfo, appState: fakeAppState('active') })
    const heard: boolean[] = []
    env.onOnlineChange((online) => heard.push(online))
    await settle()
    expect(heard).toEqual([false])
  })

  it('maps AppState, keeping iOS "inactive" as the foreground', () => {
    const appState = fakeAppState('background')
    const env = createReactNativeEnvironment({ netInfo: fakeNetInfo({ isConnected: true }), appState })
    expect(env.appState()).toBe('background')
    const heard: string[] = []
    const unsubscribe = env.onAppStateChange((state) => heard.push(state))
    appState.set('active')
    appState.set('inactive')
    appState.set('active')
    appState.set('background')
    expect(heard).toEqual(['active', 'background'])
    unsubscribe()
    expect(appState.listeners.size).toBe(0)
  })

  it('reads expo-battery, treating charging and full as plugged in and -1 as unknown', async () => {
    const battery = fakeExpoBattery(0.12, 1)
    const env = createReactNativeEnvironment({ netInfo: fakeNetInfo({ isConnected: true }), appState: fakeAppState('active'), battery })
    const heard: BatteryState[] = []
    const unsubscribe = env.onBatteryChange((reading) => heard.push(reading))
    await settle()
    expect(env.battery()).toEqual({ level: 0.12, charging: false })
    for (const listener of battery.stateListeners) listener({ batteryState: 2 })
    for (const listener of battery.levelListeners) listener({ batteryLevel: 0.13 })
    for (const listener of battery.stateListeners) listener({ batteryState: 3 })
    expect(heard).toEqual([
      { level: 0.12, charging: false },
      { level: 0.12, charging: true },
      { level: 0.13, charging: true },
    ])
    unsubscribe()
    expect(battery.levelListeners.size + battery.stateListeners.size).toBe(0)

    const simulator = createReactNativeEnvironment({ netInfo: fakeNetInfo({ isConnected: true }), appState: fakeAppState('active'), battery: fakeExpoBattery(-1, 0, false) })
    simulator.onBatteryChange(() => {})()
    await settle()
    expect(simulator.battery()).toBeUndefined()
  })

  it('has no battery without the module', () => {
    const env = createReactNativeEnvironment({ netInfo: fakeNetInfo({ isConnected: true }), appState: fakeAppState('active') })
    expect(env.battery()).toBeUndefined()
    env.onBatteryChange(() => {})()
  })

  it('logs and assumes online when NetInfo.fetch fails', async () => {
    const warnings: string[] = []
    const netInfo = { addEventListener: () => () => {}, fetch: () => Promise.reject(new Error('native module missing')) }
    const logger = { debug() {}, info() {}, warn: (message: string) => warnings.push(message), error() {} }
    const env = createReactNativeEnvironment({ netInfo, appState: fakeAppState('active'), logger })
    await settle()
    expect(env.isOnline()).toBe(true)
    expect(warnings).toHaveLength(1)
  })
})

describe('node environment', () => {
  it('is always active, online unless told, and has the battery it is given', () => {
    const env = createNodeEnvironment({ battery: { level: 0.5, charging: true } })
    expect(env.appState()).toBe('active')
    expect(env.battery()).toEqual({ level: 0.5, charging: true })
    expect(env.isOnline()).toBe(true)
    const heard: boolean[] = []
    const unsubscribe = env.onOnlineChange((online) => heard.push(online))
    env.setOnline(false)
    env.setOnline(false)
    env.setOnline(true)
    unsubscribe()
    env.setOnline(false)
    expect(heard).toEqual([false, true])
    expect(createNodeEnvironment().battery()).toBeUndefined()
  })

  it('runs timers, unref-ed when asked', async () => {
    const env = createNodeEnvironment({ unrefTimers: true })
    const handle = env.setTimeout(() => {}, 60_000) as { hasRef(): boolean }
    expect(handle.hasRef()).toBe(false)
    env.clearTimeout(handle)
    await new Promise<void>((resolve) => env.setTimeout(resolve, 1))
    await env.yieldToHost?.()
  })

  it('yields past due timers and I/O even when asked from an I/O callback', async () => {
    const env = createNodeEnvironment()
    // From an I/O callback (the poll phase) a single setImmediate would resume before the due timer.
    const order = await new Promise<string[]>((done, fail) => {
      readFile(fileURLToPath(import.meta.url), (error) => {
        if (error) return fail(error)
        const seen: string[] = []
        setTimeout(() => seen.push('timer'), 0)
        const start = performance.now()
        while (performance.now() - start < 3) {
          // Let the timer fall due while this callback still holds the loop.
        }
        void env.yieldToHost!().then(() => {
          seen.push('resumed')
          done(seen)
        })
      })
    })
    expect(order).toEqual(['timer', 'resumed'])
  })
})

describe('manual environment', () => {
  it('fires due timers in time order, ties in set order, with the clock at each due time', async () => {
    const env = createManualEnvironment({ now: 1000 })
    const fired: Array<[string, number]> = []
    env.setTimeout(() => fired.push(['c', env.now()]), 300)
    env.setTimeout(() => fired.push(['a', env.now()]), 100)
    env.setTimeout(() => fired.push(['b', env.now()]), 100)
    const cancelled = env.setTimeout(() => fired.push(['x', env.now()]), 200)
    env.clearTimeout(cancelled)
    env.setTimeout(() => fired.push(['late', env.now()]), 1000)
    await env.advance(300)
    expect(fired).toEqual([
      ['a', 1100],
      ['b', 1100],
      ['c', 1300],
    ])
    expect(env.now()).toBe(1300)
    expect(env.wakeups).toBe(3)
    expect(env.pendingTimers()).toBe(1)
    expect(env.nextTimerAt()).toBe(2000)
  })

  it('runs timers set by timers and by async work within the same advance', async () => {
    const env = createManualEnvironment()
    const fired: number[] = []
    env.setTimeout(async () => {
      await Promise.resolve()
      await Promise.resolve()
      env.setTimeout(() => fired.push(env.now()), 50)
    }, 10)
    await env.advance(60)
    expect(fired).toEqual([60])
  })

  it('tells listeners about changes only, until they unsubscribe', () => {
    const env = createManualEnvironment()
    const heard: unknown[] = []
    const offs = [
      env.onOnlineChange((value) => heard.push(value)),
      env.onAppStateChange((value) => heard.push(value)),
      env.onBatteryChange((value) => heard.push(value)),
    ]
    expect(env.listenerCount()).toEqual({ online: 1, appState: 1, battery: 1 })
    env.setOnline(true)
    env.setOnline(false)
    env.setAppState('active')
    env.setAppState('background')
    env.setBattery({ level: 0.5, charging: false })
    env.setBattery({ level: 0.5, charging: false })
    env.setBattery(undefined)
    for (const off of offs) off()
    env.setOnline(true)
    expect(heard).toEqual([false, 'background', { level: 0.5, charging: false }])
    expect(env.battery()).toBeUndefined()
    expect(env.listenerCount()).toEqual({ online: 0, appState: 0, battery: 0 })
  })

  it('rethrows a timer callback error after running the other due timers', async () => {
    const env = createManualEnvironment()
    let ran = false
    env.setTimeout(() => {
      throw new Error('boom')
    }, 1)
    env.setTimeout(() => {
      ran = true
    }, 2)
    await expect(env.advance(5)).rejects.toThrow('boom')
    expect(ran).toBe(true)
    expect(env.now()).toBe(5)
  })
})

describe('sleep', () => {
  it('resolves after the given time on the environment clock', async () => {
    const env = createManualEnvironment()
    let done = false
    const waiting = sleep(env, 100).then(() => {
      done = true
    })
    await env.advance(99)
    expect(done).toBe(false)
    await env.advance(1)
    await waiting
    expect(done).toBe(true)
  })

  it('rejects with an AbortError on abort and leaves no timer behind', async () => {
    const env = createManualEnvironment()
    const controller = new AbortController()
    const waiting = sleep(env, 100, controller.signal)
    controller.abort()
    const error = await waiting.catch((e: unknown) => e)
    expect(isAbortError(error)).toBe(true)
    expect(env.pendingTimers()).toBe(0)
    expect(isAbortError(await sleep(env, 1, controller.signal).catch((e: unknown) => e))).toBe(true)
  })
})
