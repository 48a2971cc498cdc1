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

/**
 * A turn for the host in Node: resolves once the event loop has been through its timers and I/O
 * (poll) phases, so the host's due timers and waiting I/O callbacks run first. One `setImmediate`
 * is not enough when called from an I/O callback: it runs in the check phase of the same loop
 * iteration, before any timer. A second one, queued from that check phase, runs only after the
 * next iteration's timers and poll phases. The cost is one more pass of the loop (microseconds).
 * Without `setImmediate`, a zero-delay timer.
 */
export function yieldToNodeHost(): Promise<void> {
  const host = globalThis as { setImmediate?: (callback: () => void) => unknown }
  const immediate = host.setImmediate
  if (typeof immediate !== 'function') return new Promise<void>((resolve) => globalThis.setTimeout(resolve, 0))
  return new Promise<void>((resolve) => immediate(() => immediate(resolve)))
}

/** Create the Node {@link Environment}. */
export function createNodeEnvironment(options: NodeEnvironmentOptions = {}): NodeEnvironment {
  const unrefTimers = options.unrefTimers ?? false
  const now = options.now ?? Date.now
  const battery = options.battery === undefined ? undefined : { ...options.battery }
  let online = options.online ?? true
  const onlineListeners = new Set<(online: boolean) => void>()
  const none: Unsubscribe = () => {}

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
    yieldToHost: yieldToNodeHost,
    setOnline(next) {
      if (next === online) return
      online = next
      for (const listener of [...onlineListeners]) listener(next)
    },
  }
}
