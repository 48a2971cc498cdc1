import type { Environment } from './env.js'

/**
 * The environment used when none is given: wall clock and host timers, always online and active,
 * battery unknown. Platform adapters (`sync-orchestrator/env/*`) supply the real signals.
 */
export function createDefaultEnvironment(): Environment {
  const none = (): (() => void) => () => {}
  return {
    now: () => Date.now(),
    setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
    clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
    isOnline: () => true,
    onOnlineChange: none,
    appState: () => 'active',
    onAppStateChange: none,
    battery: () => undefined,
    onBatteryChange: none,
  }
}
