/**
 * The conflict inbox (strategy `ask-user`): each conflict side by side, field by field, resolved as
 * "keep mine", "keep theirs" or a merge the user composes per field.
 */
import { useState } from 'react'
import { useConflicts, useSyncOrchestrator } from '../../src/react/index.js'
import type { PendingConflict } from '../../src/core/types.js'
import type { Row } from '../../src/core/protocol.js'
import { showValue } from './format.js'

/** Fields shown and merged: server bookkeeping columns and the device-only note are left out. */
const HIDDEN = new Set(['id', 'user_id', 'created_at', 'updated_at', 'photo_url', 'localNotes'])

type Pick = 'local' | 'remote' | 'both'

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null)

/** The pick a field starts with: the side that changed it since the base; both lists when both did. */
function defaultPick(field: string, c: PendingConflict): Pick {
  const local = c.local?.[field]
  const remote = c.remote?.[field]
  const base = c.base?.[field]
  if (same(local, remote) || same(remote, base)) return 'local'
  if (same(local, base)) return 'remote'
  return Array.isArray(local) && Array.isArray(remote) ? 'both' : 'local'
}

function mergedValue(c: PendingConflict, fields: string[], picks: Record<string, Pick>): Row {
  const out: Row = { ...(c.remote ?? {}), ...(c.local ?? {}) }
  for (const f of fields) {
    const pick = picks[f] ?? defaultPick(f, c)
    const local = c.local?.[f]
    const remote = c.remote?.[f]
    out[f] = pick === 'local' ? local : pick === 'remote' ? remote : [...new Set([...(Array.isArray(remote) ? remote : []), ...(Array.isArray(local) ? local : [])])]
  }
  return out
}

function ConflictCard({ conflict }: { conflict: PendingConflict }) {
  const orchestrator = useSyncOrchestrator()
  const [picks, setPicks] = useState<Record<string, Pick>>({})
  const [busy, setBusy] = useState(false)
  const bothExist = conflict.local !== null && conflict.remote !== null
  const fields = [...new Set([...Object.keys(conflict.local ?? {}), ...Object.keys(conflict.remote ?? {})])].filter((f) => !HIDDEN.has(f))
  const differing = fields.filter((f) => !same(conflict.local?.[f], conflict.remote?.[f]))
  const title = String(conflict.local?.name ?? conflict.remote?.name ?? conflict.recordId)

  const resolve = async (choice: 'local' | 'remote' | 'merged') => {
    setBusy(true)
    try {
      if (choice === 'merged') await orchestrator.resolveConflicts([{ id: conflict.id, choice, value: mergedValue(conflict, differing, picks) }])
      else await orchestrator.resolveConflicts([{ id: conflict.id, choice }])
    } finally {
      setBusy(false)
    }
  }

  return (
    <li className="conflict" data-testid="conflict-card" data-record-id={conflict.recordId}>
      <div className="conflict-title">
        <strong>{title}</strong>
        <span className="muted small-text">{conflict.collection} · {new Date(conflict.detectedAt).toLocaleTimeString()}</span>
      </div>
      {!bothExist ? (
        <p className="muted">{conflict.local === null ? 'You deleted it; it was changed elsewhere.' : 'You changed it; it was deleted elsewhere.'}</p>
      ) : (
        <table className="conflict-table">
          <thead>
            <tr><th>Field</th><th>Mine</th><th>Theirs</th><th>Merged</th></tr>
          </thead>
          <tbody>
            {differing.map((f) => {
              const pick = picks[f] ?? defaultPick(f, conflict)
              const canUnion = Array.isArray(conflict.local?.[f]) && Array.isArray(conflict.remote?.[f])
              return (
                <tr key={f} data-testid={`conflict-field-${f}`}>
                  <td className="mono">{f}</td>
                  <td className={pick !== 'remote' ? 'chosen' : ''} data-testid="conflict-local-value">{showValue(conflict.local?.[f])}</td>
                  <td className={pick !== 'local' ? 'chosen' : ''} data-testid="conflict-remote-value">{showValue(conflict.remote?.[f])}</td>
                  <td>
                    <select data-testid={`merge-pick-${f}`} value={pick} onChange={(e) => setPicks({ ...picks, [f]: e.target.value as Pick })}>
                      <option value="local">mine</option>
                      <option value="remote">theirs</option>
                      {canUnion && <option value="both">both</option>}
                    </select>
                  </td>
                </tr>
              )
            })}
          </tbody>
        </table>
      )}
      <div className="actions">
        <button type="button" className="ghost" data-testid="resolve-local" disabled={busy} onClick={() => void resolve('local')}>Keep mine</button>
        <button type="button" className="ghost" data-testid="resolve-remote" disabled={busy} onClick={() => void resolve('remote')}>Keep theirs</button>
        {bothExist && (
          <button type="button" className="primary" data-testid="resolve-merged" disabled={busy} onClick={() => void resolve('merged')}>Use merged</button>
        )}
      </div>
    </li>
  )
}

/** The inbox; renders nothing while it is empty. */
export function ConflictInbox() {
  const conflicts = useConflicts()
  if (conflicts.length === 0) return null
  return (
    <div className="inbox" data-testid="conflict-inbox">
      <h3>
        Needs your decision <span className="count warn">{conflicts.length}</span>
      </h3>
      <ul>
        {conflicts.map((c) => <ConflictCard key={c.id} conflict={c} />)}
      </ul>
    </div>
  )
}
