/**
 * The demo page: two devices of one user side by side, and the conflict strategy per collection.
 *
 * Changing a strategy recreates both orchestrators over the same storage: the old ones are closed
 * (releasing storage) before the new ones open it, so nothing queued is lost in the switch.
 */
import { useEffect, useMemo, useRef, useState } from 'react'
import { SyncProvider } from '../../src/react/index.js'
import type { DemoConfig } from './config.js'
import { createDevice, createTokenSource, STRATEGIES, PULL_INTERVAL_MS, type Device, type Strategies, type StrategyName } from './device.js'
import { createDeviceNetwork, type DeviceNetwork } from './network.js'
import { DevicePanel } from './DevicePanel.js'

const DEVICE_NAMES = ['A', 'B'] as const
const STRATEGY_KEY = 'demo:strategy:contacts'

const STRATEGY_HELP: Record<StrategyName, string> = {
  'newest-wins': 'The change with the later hybrid logical clock wins, on both devices.',
  'local-wins': "Each device's pending change overwrites the server's version.",
  'remote-wins': "The server's version replaces the pending local change.",
  merge: 'Field by field against the last synced version; tags are merged as a set.',
  'ask-user': 'Conflicts wait in the inbox of the device that found them.',
}

function loadStrategies(): Strategies {
  const stored = localStorage.getItem(STRATEGY_KEY)
  const contacts = (STRATEGIES as readonly string[]).includes(stored ?? '') ? (stored as StrategyName) : 'newest-wins'
  return { contacts }
}

/** What browser tests reach through `window.__demo` when the server enables test hooks. */
export interface DemoTestHooks {
  device(name: string): Device | undefined
}

/** The page. */
export function App({ config }: { config: DemoConfig }) {
  const tokens = useMemo(() => createTokenSource(config), [config])
  const networks = useMemo(
    () => Object.fromEntries(DEVICE_NAMES.map((name) => [name, createDeviceNetwork({ name })])) as Record<string, DeviceNetwork>,
    [],
  )
  const [strategies, setStrategies] = useState<Strategies>(loadStrategies)
  const [devices, setDevices] = useState<Device[] | null>(null)
  // Serialises close-then-open across strategy switches (and StrictMode's double effects).
  const lifecycle = useRef<Promise<void>>(Promise.resolve())

  useEffect(() => {
    let active = true
    let created: Device[] = []
    const opened = lifecycle.current.then(() => {
      if (!active) return
      created = DEVICE_NAMES.map((name) => createDevice({ name, config, network: networks[name]!, tokens, strategies }))
      setDevices(created)
    })
    lifecycle.current = opened
    return () => {
      active = false
      setDevices(null)
      lifecycle.current = opened.then(() => Promise.all(created.map((d) => d.close()))).then(
        () => undefined,
        () => undefined,
      )
    }
  }, [config, networks, tokens, strategies])

  useEffect(() => {
    if (!config.testHooks) return
    const hooks: DemoTestHooks = { device: (name) => devices?.find((d) => d.name === name) }
    ;(window as { __demo?: DemoTestHooks }).__demo = hooks
  }, [config.testHooks, devices])

  const changeStrategy = (value: StrategyName) => {
    localStorage.setItem(STRATEGY_KEY, value)
    setStrategies({ contacts: value })
  }

  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden>⇄</span>
          <div>
            <h1>Contacts</h1>
            <p className="subtitle">Offline-first sync demo · two devices, one account</p>
          </div>
        </div>
        <div className="topbar-meta">
          <span className="pill" title="Signed-in user">{config.user.email}</span>
          <span className="pill" title="Database behind the local stack">{config.database === 'postgres' ? 'PostgreSQL' : 'PGlite'}</span>
          <span className="pill" title="How often an active device pulls">pull every {PULL_INTERVAL_MS / 1000} s</span>
        </div>
      </header>

      <section className="settings card" aria-label="Conflict strategy">
        <label className="field inline">
          <span>Conflict strategy for <code>contacts</code></span>
          <select data-testid="strategy-contacts" value={strategies.contacts} onChange={(e) => changeStrategy(e.target.value as StrategyName)}>
            {STRATEGIES.map((s) => (
              <option key={s} value={s}>{s}</option>
            ))}
          </select>
        </label>
        <p className="help" data-testid="strategy-help">{STRATEGY_HELP[strategies.contacts]}</p>
      </section>

      <main className="devices" data-testid="devices" data-ready={devices ? 'true' : 'false'} data-strategy={devices?.[0]?.strategies.contacts ?? ''}>
        {devices
          ? devices.map((device) => (
              <SyncProvider key={device.name} orchestrator={device.orchestrator}>
                <DevicePanel device={device} />
              </SyncProvider>
            ))
          : DEVICE_NAMES.map((name) => <section key={name} className="device card loading">Starting device {name}…</section>)}
      </main>
    </div>
  )
}
