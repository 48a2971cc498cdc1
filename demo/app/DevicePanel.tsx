/** One device: its network switch, sync status, contacts, conflict inbox and activity log. */
import { useEffect, useState, useSyncExternalStore } from 'react'
import { useSyncOrchestrator } from '../../src/react/index.js'
import type { Device } from './device.js'
import { StatusPanel } from './StatusPanel.js'
import { ContactForm } from './ContactForm.js'
import { ContactList } from './ContactList.js'
import { ConflictInbox } from './ConflictInbox.js'
import { ActivityLog, useActivity } from './ActivityLog.js'

/** The panel of one device; must sit inside the device's `SyncProvider`. */
export function DevicePanel({ device }: { device: Device }) {
  const orchestrator = useSyncOrchestrator()
  const online = useSyncExternalStore(device.network.subscribe, device.network.isOnline)
  const activity = useActivity(device)
  const [editing, setEditing] = useState<string | null>(null)
  const [clientId, setClientId] = useState<string>('')

  useEffect(() => {
    let active = true
    orchestrator.ready.then(
      () => active && setClientId(orchestrator.clientId),
      () => undefined,
    )
    return () => {
      active = false
    }
  }, [orchestrator])

  return (
    <section className={`device card ${online ? 'is-online' : 'is-offline'}`} data-testid={`device-${device.name}`} aria-label={`Device ${device.name}`}>
      <header className="device-header">
        <div>
          <h2>Device {device.name}</h2>
          <span className="muted mono" title="Client id" data-testid="client-id">{clientId ? clientId.slice(0, 8) : '…'}</span>
        </div>
        <label className="switch" title="Simulate losing the connection">
          <input type="checkbox" role="switch" data-testid="online-toggle" checked={online} onChange={(e) => device.network.setOnline(e.target.checked)} />
          <span className="track" aria-hidden><span className="thumb" /></span>
          <span className="switch-label" data-testid="online-label">{online ? 'Online' : 'Offline'}</span>
        </label>
      </header>

      <StatusPanel />
      <ConflictInbox />
      <ContactForm key={editing ?? 'new'} editingId={editing} onDone={() => setEditing(null)} />
      <ContactList onEdit={setEditing} editingId={editing} />
      <ActivityLog entries={activity} />
    </section>
  )
}
