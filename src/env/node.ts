/**
 * The Node environment (services, CLIs, Electron main): always in the foreground, online unless told
 * otherwise, and no battery unless one is given.
 */
import type { BatteryState, Environment, TimerHandle, Unsubscribe } from '../core/env.js'

/** Options of {@link createNodeEnvironment}. */
export interface NodeEnvironmentOptions {
  /** Initial connectivity (default true). Change it later with `setOnline`. */
  online?: boolean
  /** A fixed battery reading (default none: unknown, never low). */
  battery?: BatteryState
  /**
   * Let the process exit while a sync timer is armed (default false). A CLI that syncs in the
   * background usually wants this; a service keeping a replica fresh does not.
   */
  unrefTimers?: boolean
  /** Wall clock (default `Date.now`). */
  now?: () => number
}

/** The Node {@link Environment}, whose connectivity the host may set. */
export interface NodeEnvironment extends Environment {
  /** Tell the engine connectivity changed (e.g. from the host's own health checks). */
  setOnline(online: boolean): void
}

/** Create the Node {@link Environment}. */
export function createNodeEnvironment(options: NodeEnvironmentOptions = {}): NodeEnvironment {
  const unrefTimers = options.unrefTimers ?? false
  const now = options.now ?? Date.now
  const battery = options.battery === undefined ? undefined : { ...options.battery }
  let online = options.online ?? true
  const onlineListeners = new Set<(online: boolean) => void>()
  const none: Unsubscribe = () => {}
  const host = globalThis as { setImmediate?: (callback: () => void) => unknown }

  return {
    now,
    setTimeout(callback, ms): TimerHandle {
      const handle = globalThis.setTimeout(callback, ms) as unknown as { unref?: () => void }
      if (unrefTimers) handle.unref?.()
      return handle
    },
    clearTimeout: (handle) => globalThis.clearTimeout(handle as Parameters<typeof globalThis.clearTimeout>[0]),
    isOnline: () => online,
    onOnlineChange(listener) {
      const entry = (value: boolean): void => listener(value)
      onlineListeners.add(entry)
      return () => {
        onlineListeners.delete(entry)
      }
    },
    appState: () => 'active',
    onAppStateChange: () => none,
    battery: () => (battery === undefined ? undefined : { ...battery }),
    onBatteryChange: () => none,
    yieldToHost: () =>
      new Promise<void>((resolve) => {
        if (typeof host.setImmediate === 'function') host.setImmediate(resolve)
        else globalThis.setTimeout(resolve, 0)
      }),
    setOnline(next) {
      if (next === online) return
      online = next
      for (const listener of [...onlineListeners]) listener(next)
    },
  }
}
