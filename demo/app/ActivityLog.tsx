/** What a device's engine did, from its `subscribe` events (and the network switch). */
import { useEffect, useState } from 'react'
import type { SyncEvent, SyncState } from '../../src/core/types.js'
import type { Device } from './device.js'
import { clockTime } from './format.js'

/** One line of the log. */
export interface ActivityEntry {
  seq: number
  at: number
  /** `at` as displayed, formatted once. */
  time: string
  kind: 'info' | 'ok' | 'warn' | 'bad'
  type: string
  text: string
}

const MAX_ENTRIES = 200

const STATE_TEXT: Record<SyncState, string> = {
  idle: 'Idle',
  syncing: 'Syncing',
  offline: 'Offline: changes wait in the queue',
  unauthenticated: 'Signed out: sync paused',
  backoff: 'Sync failed; retrying with backoff',
  stopped: 'Sync stopped',
}

function describe(event: SyncEvent, lastState: { value: SyncState | null }): Omit<ActivityEntry, 'seq' | 'at' | 'time'> | null {
  switch (event.type) {
    case 'status': {
      // Status events also carry progress ticks and the routine idle ⇄ syncing cycle of every pull;
      // only entering an unusual state is worth a line.
      const state = event.status.state
      const previous = lastState.value
      lastState.value = state
      if (state === previous || state === 'idle' || state === 'syncing') return null
      return { kind: state === 'offline' || state === 'stopped' ? 'info' : 'warn', type: 'state', text: STATE_TEXT[state] }
    }
    case 'change': {
      const n = event.ids.length
      const what = `${n} ${n === 1 ? 'change' : 'changes'} to ${event.collection}`
      return { kind: 'info', type: 'change', text: event.source === 'local' ? `Saved ${what} on this device` : `Applied ${what} from the server` }
    }
    case 'pushed':
      return {
        kind: event.rejected ? 'bad' : event.conflicts ? 'warn' : 'ok',
        type: 'pushed',
        text: `Pushed: ${event.applied} applied, ${event.conflicts} conflicts, ${event.rejected} rejected`,
      }
    case 'pulled':
      return { kind: 'ok', type: 'pulled', text: `Pulled ${event.changes} ${event.changes === 1 ? 'change' : 'changes'}` }
    case 'conflict':
      return { kind: 'warn', type: 'conflict', text: `Conflict on ${event.collection}/${event.id.slice(0, 8)} → ${event.strategy}` }
    case 'failed':
      return { kind: 'bad', type: 'failed', text: `Rejected ${event.collection}/${event.id.slice(0, 8)}: ${event.code} ${event.message}` }
    case 'error':
      return { kind: event.kind === 'network' ? 'warn' : 'bad', type: 'error', text: `${event.kind}: ${event.message}` }
  }
}

/** Collects a device's activity for as long as the device runs. */
export function useActivity(device: Device): ActivityEntry[] {
  const [entries, setEntries] = useState<ActivityEntry[]>([])
  useEffect(() => {
    let seq = 0
    const lastState = { value: null as SyncState | null }
    const add = (entry: Omit<ActivityEntry, 'seq' | 'at' | 'time'>) => {
      const at = Date.now()
      setEntries((list) => [{ ...entry, seq: ++seq, at, time: clockTime(at) }, ...list].slice(0, MAX_ENTRIES))
    }
    add({ kind: 'info', type: 'start', text: 'Device started' })
    const offEvents = device.orchestrator.subscribe((event) => {
      const entry = describe(event, lastState)
      if (entry) add(entry)
    })
    const offNetwork = device.network.subscribe((online) => add({ kind: online ? 'ok' : 'warn', type: 'network', text: online ? 'Back online' : 'Went offline' }))
    return () => {
      offEvents()
      offNetwork()
    }
  }, [device])
  return entries
}

/** The log view, newest first. */
export function ActivityLog({ entries }: { entries: ActivityEntry[] }) {
  return (
    <details className="activity" open>
      <summary>
        Activity <span className="count">{entries.length}</span>
      </summary>
      <ol className="log" data-testid="activity-log">
        {entries.map((e) => (
          <li key={e.seq} className={`log-${e.kind}`} data-testid="activity-item" data-type={e.type}>
            <time className="mono muted" dateTime={new Date(e.at).toISOString()}>{e.time}</time> {e.text}
          </li>
        ))}
      </ol>
    </details>
  )
}
