/** Live sync status of a device: state, queue, pending work, last/next sync, verified in-sync. */
import { useEffect, useState } from 'react'
import { useSyncOrchestrator, useSyncStatus } from '../../src/react/index.js'
import type { SyncMetrics } from '../../src/core/types.js'
import { clockTime, fromNow } from './format.js'

const STATE_LABEL: Record<string, string> = {
  idle: 'Idle',
  syncing: 'Syncing',
  offline: 'Offline',
  unauthenticated: 'Signed out',
  backoff: 'Retrying soon',
  stopped: 'Stopped',
}

/**
 * `getMetrics()` verifies with the server (checksums), so it is read after sync activity and on a
 * slow timer rather than on every status change.
 */
function useMetrics(): SyncMetrics | null {
  const orchestrator = useSyncOrchestrator()
  const [metrics, setMetrics] = useState<SyncMetrics | null>(null)
  useEffect(() => {
    let active = true
    let timer: ReturnType<typeof setTimeout> | undefined
    let running = false
    let again = false
    const read = async () => {
      if (running) {
        again = true
        return
      }
      running = true
      try {
        const next = await orchestrator.getMetrics()
        if (active) setMetrics(next)
      } catch {
        // Metrics are informative; a failed read leaves the last figures up.
      } finally {
        running = false
        if (again && active) {
          again = false
          void read()
        }
      }
    }
    const soon = () => {
      clearTimeout(timer)
      timer = setTimeout(() => void read(), 300)
    }
    void orchestrator.ready.then(read, () => undefined)
    const interval = setInterval(() => void read(), 5_000)
    const off = orchestrator.subscribe((event) => {
      if (event.type === 'pushed' || event.type === 'pulled' || event.type === 'change' || event.type === 'conflict') soon()
      else if (event.type === 'status' && event.status.state !== 'syncing') soon()
    })
    return () => {
      active = false
      clearTimeout(timer)
      clearInterval(interval)
      off()
    }
  }, [orchestrator])
  return metrics
}

/** Re-renders every second, for "next sync in …". */
function useNow(): number {
  const [now, setNow] = useState(() => Date.now())
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000)
    return () => clearInterval(timer)
  }, [])
  return now
}

/** The status block of a device. */
export function StatusPanel() {
  const orchestrator = useSyncOrchestrator()
  const status = useSyncStatus()
  const metrics = useMetrics()
  const now = useNow()
  const [forcing, setForcing] = useState(false)
  const [lastForce, setLastForce] = useState<string | null>(null)

  const inSync = metrics?.dataInSync
  const inSyncLabel = status.queueLength > 0 ? 'Changes pending' : inSync === true ? 'In sync' : inSync === false ? 'Out of sync' : 'Not verified'
  const inSyncClass = status.queueLength > 0 ? 'warn' : inSync === true ? 'ok' : inSync === false ? 'bad' : 'muted'

  const syncNow = async () => {
    setForcing(true)
    const result = await orchestrator.forceSyncAll()
    setForcing(false)
    setLastForce(result.ok ? `Pushed ${result.pushed}, pulled ${result.pulled}` : `Not synced: ${result.reason}`)
  }

  const progress = status.progress
  const percent = progress && progress.total ? Math.min(100, Math.round((progress.done / progress.total) * 100)) : null

  return (
    <div className="status" data-testid="status" data-state={status.state}>
      <div className="status-head">
        <span className={`badge state-${status.state}`} data-testid="sync-state">{STATE_LABEL[status.state] ?? status.state}</span>
        <span className={`badge ${inSyncClass}`} data-testid="in-sync" data-in-sync={String(inSync ?? 'unknown')}>{inSyncLabel}</span>
        <button type="button" className="ghost small" data-testid="sync-now" onClick={() => void syncNow()} disabled={forcing}>
          {forcing ? 'Syncing…' : 'Sync now'}
        </button>
      </div>

      <dl className="stats">
        <div><dt>Queue</dt><dd data-testid="queue-length">{status.queueLength}</dd></div>
        <div><dt>Creates</dt><dd data-testid="pending-creates">{status.pending.creates}</dd></div>
        <div><dt>Updates</dt><dd data-testid="pending-updates">{status.pending.updates}</dd></div>
        <div><dt>Deletes</dt><dd data-testid="pending-deletes">{status.pending.deletes}</dd></div>
        <div><dt>Failed</dt><dd data-testid="failed-count" className={status.failed ? 'bad-text' : ''}>{status.failed}</dd></div>
        <div><dt>Conflicts</dt><dd data-testid="conflict-count" className={status.conflicts ? 'warn-text' : ''}>{status.conflicts}</dd></div>
      </dl>
      <div className="times">
        <span>Last sync <strong data-testid="last-sync">{clockTime(status.lastSyncAt)}</strong></span>
        <span>Next <strong data-testid="next-sync">{status.state === 'offline' ? 'when online' : fromNow(status.nextSyncAt, now)}</strong></span>
        {metrics && metrics.averageSyncMs !== null && (
          <span title="Successful runs over recent runs; mean run time">
            Success {Math.round(metrics.successRate * 100)}% · avg {Math.round(metrics.averageSyncMs)} ms
          </span>
        )}
      </div>

      <div className={`progress ${progress ? 'active' : ''}`} data-testid="sync-progress" data-phase={progress?.phase ?? ''} aria-hidden={!progress}>
        <div className={`bar ${percent === null ? 'indeterminate' : ''}`} style={percent === null ? undefined : { width: `${percent}%` }} />
        {progress && (
          <span className="progress-label">
            {progress.phase === 'push' ? 'Sending' : 'Receiving'} {progress.done}
            {progress.total !== null ? ` / ${progress.total}` : ''}
          </span>
        )}
      </div>

      {status.lastError && (
        <p className="notice" data-testid="last-error">
          {status.lastError.kind}: {status.lastError.message}
        </p>
      )}
      {lastForce && <p className="muted small-text" data-testid="sync-now-result">{lastForce}</p>}
    </div>
  )
}
