/** Create or edit a contact. Writes go to the local store and return at once, online or not. */
import { useState, type FormEvent } from 'react'
import { useRecord, useSyncOrchestrator } from '../../src/react/index.js'
import type { Contact } from './device.js'
import { parseTags } from './format.js'

interface Draft {
  name: string
  phone: string
  email: string
  address: string
  tags: string
  localNotes: string
}

function draftOf(contact: Contact | undefined): Draft {
  return {
    name: contact?.name ?? '',
    phone: contact?.phone ?? '',
    email: contact?.email ?? '',
    address: contact?.address ?? '',
    tags: (contact?.tags ?? []).join(', '),
    localNotes: contact?.localNotes ?? '',
  }
}

/** The form; `editingId` selects the contact to edit (a new one when null). */
export function ContactForm({ editingId, onDone }: { editingId: string | null; onDone: () => void }) {
  const orchestrator = useSyncOrchestrator()
  const editing = useRecord<Contact>('contacts', editingId ?? '')
  const [draft, setDraft] = useState<Draft>(() => draftOf(editingId ? editing : undefined))
  const [error, setError] = useState<string | null>(null)
  const [saving, setSaving] = useState(false)

  const set = (field: keyof Draft) => (e: { target: { value: string } }) => setDraft({ ...draft, [field]: e.target.value })

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    if (!draft.name.trim()) {
      setError('A name is required.')
      return
    }
    const values = {
      name: draft.name.trim(),
      phone: draft.phone.trim() || null,
      email: draft.email.trim() || null,
      address: draft.address.trim() || null,
      tags: parseTags(draft.tags),
      localNotes: draft.localNotes,
    }
    setSaving(true)
    try {
      const contacts = orchestrator.collection<Contact>('contacts')
      if (editingId) await contacts.update(editingId, values)
      else await contacts.insert(values)
      setDraft(draftOf(undefined))
      setError(null)
      onDone()
    } catch (e) {
      // Only a failed local write lands here (e.g. storage full); the app must say it did not happen.
      setError(`Not saved: ${e instanceof Error ? e.message : String(e)}`)
    } finally {
      setSaving(false)
    }
  }

  return (
    <form className="contact-form" data-testid="contact-form" onSubmit={(e) => void submit(e)}>
      <div className="form-title">
        <h3>{editingId ? 'Edit contact' : 'New contact'}</h3>
        {editingId && !editing && <span className="badge bad">deleted meanwhile</span>}
      </div>
      <div className="grid">
        <label className="field">
          <span>Name</span>
          <input data-testid="input-name" value={draft.name} onChange={set('name')} placeholder="Ada Lovelace" autoComplete="off" />
        </label>
        <label className="field">
          <span>Phone</span>
          <input data-testid="input-phone" value={draft.phone} onChange={set('phone')} placeholder="+44 20 7946 0000" autoComplete="off" />
        </label>
        <label className="field">
          <span>Email</span>
          <input data-testid="input-email" type="email" value={draft.email} onChange={set('email')} placeholder="ada@example.com" autoComplete="off" />
        </label>
        <label className="field">
          <span>Tags</span>
          <input data-testid="input-tags" value={draft.tags} onChange={set('tags')} placeholder="work, friends" autoComplete="off" />
        </label>
        <label className="field wide">
          <span>Address</span>
          <input data-testid="input-address" value={draft.address} onChange={set('address')} placeholder="12 St James's Square, London" autoComplete="off" />
        </label>
        <label className="field wide">
          <span>Private note <em className="muted">(stays on this device)</em></span>
          <textarea data-testid="input-notes" rows={2} value={draft.localNotes} onChange={set('localNotes')} />
        </label>
      </div>
      {error && <p className="notice" data-testid="form-error">{error}</p>}
      <div className="actions">
        {editingId && (
          <button type="button" className="ghost" data-testid="cancel-edit" onClick={onDone}>
            Cancel
          </button>
        )}
        <button type="submit" className="primary" data-testid="save-contact" disabled={saving}>
          {editingId ? 'Save changes' : 'Add contact'}
        </button>
      </div>
    </form>
  )
}
