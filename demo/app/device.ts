/**
 * One demo device: its own Web Storage namespace (so its own client id, records and queue), its own
 * supabase-js client behind its network switch, and an orchestrator over both. Devices share the
 * signed-in user.
 */
import { createClient } from '@supabase/supabase-js'
import { createSyncOrchestrator } from '../../src/core/orchestrator.js'
import type { Environment } from '../../src/core/env.js'
import type { SyncOrchestrator } from '../../src/core/types.js'
import { createSupabaseBackend, createResponseRecorder } from '../../src/backends/supabase/index.js'
import { createWebStorage } from '../../src/storage/webStorage.js'
import { createBrowserEnvironment } from '../../src/env/browser.js'
import type { DeviceNetwork } from './network.js'
import type { DemoConfig } from './config.js'

/** The conflict strategies the demo offers (the built-in ones). */
export const STRATEGIES = ['newest-wins', 'local-wins', 'remote-wins', 'merge', 'ask-user'] as const

/** One of {@link STRATEGIES}. */
export type StrategyName = (typeof STRATEGIES)[number]

/** The synced collections of the demo and their strategy. */
export type Strategies = Record<'contacts', StrategyName>

/** A contact as the app stores it. `localNotes` stays on the device. */
export interface Contact extends Record<string, unknown> {
  id: string
  name: string
  phone?: string | null
  email?: string | null
  address?: string | null
  tags?: string[]
  localNotes?: string
  updated_at?: string
}

/** How often a device pulls while active: short, so the other device's changes show up quickly. */
export const PULL_INTERVAL_MS = 3_000

/**
 * What each strategy name means here. `merge` is field-level against the last synced version, with
 * tags merged as a set (both devices' additions kept) and other fields taking the newer change.
 */
function conflictConfig(name: StrategyName): unknown {
  return name === 'merge' ? { merge: { fields: { tags: 'union' }, default: 'newest' } } : name
}

/** A running device. */
export interface Device {
  readonly name: string
  readonly network: DeviceNetwork
  readonly orchestrator: SyncOrchestrator
  /** The strategies this device's orchestrator was created with. */
  readonly strategies: Strategies
  /** Stops sync and releases storage. */
  close(): Promise<void>
}

/** Issues the bearer token both devices use, refreshed from the demo server when it expires. */
export interface TokenSource {
  current(): string
  refresh(): Promise<boolean>
}

/** Creates the token source from the page config. */
export function createTokenSource(config: DemoConfig): TokenSource {
  let token = config.accessToken
  return {
    current: () => token,
    async refresh() {
      try {
        const response = await fetch(config.tokenUrl)
        if (!response.ok) return false
        token = ((await response.json()) as { accessToken: string }).accessToken
        return true
      } catch {
        return false
      }
    },
  }
}

/** Options of {@link createDevice}. */
export interface DeviceOptions {
  name: string
  config: DemoConfig
  network: DeviceNetwork
  tokens: TokenSource
  strategies: Strategies
}

/** Starts a device over its persisted storage. */
export function createDevice(options: DeviceOptions): Device {
  const { name, config, network, tokens, strategies } = options
  const responses = createResponseRecorder({ fetch: network.fetch })
  const client = createClient(config.supabaseUrl, config.anonKey, {
    accessToken: async () => tokens.current(),
    global: { fetch: responses.fetch },
  })
  const environment = withDeviceNetwork(createBrowserEnvironment(), network)
  const orchestrator = createSyncOrchestrator({
    storage: createWebStorage({ namespace: `demo-device-${name}` }),
    backend: createSupabaseBackend({ client, responses }),
    environment,
    collections: {
      contacts: { conflict: conflictConfig(strategies.contacts), localOnly: ['localNotes'] },
    },
    schedule: { activeMs: PULL_INTERVAL_MS },
    pullLimit: 250,
    refreshAuth: () => tokens.refresh(),
  })
  return {
    name,
    network,
    orchestrator,
    strategies,
    close: () => orchestrator.close(),
  }
}

/**
 * The browser's environment, with connectivity narrowed by the device's switch: the device is
 * online when the browser is and its switch is on.
 */
function withDeviceNetwork(base: Environment, network: DeviceNetwork): Environment {
  const isOnline = () => base.isOnline() && network.isOnline()
  return {
    now: () => base.now(),
    setTimeout: (callback, ms) => base.setTimeout(callback, ms),
    clearTimeout: (handle) => base.clearTimeout(handle),
    appState: () => base.appState(),
    onAppStateChange: (listener) => base.onAppStateChange(listener),
    battery: () => base.battery(),
    onBatteryChange: (listener) => base.onBatteryChange(listener),
    yieldToHost: base.yieldToHost ? () => base.yieldToHost!() : undefined,
    isOnline,
    onOnlineChange(listener) {
      let last = isOnline()
      const check = () => {
        const now = isOnline()
        if (now !== last) {
          last = now
          listener(now)
        }
      }
      const offBase = base.onOnlineChange(check)
      const offSwitch = network.subscribe(check)
      return () => {
        offBase()
        offSwitch()
      }
    },
  }
}
