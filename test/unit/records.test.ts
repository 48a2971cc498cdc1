import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { loadRecordEntry, loadedEnvelope, recordEnvelopeSchema, RecordTable, storedEnvelope, type RecordEnvelope } from '../../src/core/records.js'
import type { Row } from '../../src/core/protocol.js'

// Replay a failing property with FC_SEED=<seed printed in the failure>.
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)

const valueArb = fc.oneof(fc.integer(), fc.string({ maxLength: 4 }), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }))
const rowArb = fc.dictionary(fc.constantFrom('id', 'name', 'phone', 'tags', 'user_id'), valueArb)

/** How the base relates to the data, as the engine builds them. */
const baseArb = fc.constantFrom('null', 'same object', 'shallow copy', 'deep copy', 'changed field', 'extra field', 'missing field')

function baseOf(data: Row, how: string): Row | null {
  switch (how) {
    case 'null':
      return null
    case 'same object':
      return data
    case 'shallow copy':
      return { ...data }
    case 'deep copy':
      return JSON.parse(JSON.stringify(data)) as Row
    case 'changed field':
      return { ...data, name: `${String(data.name)}!` }
    case 'extra field':
      return { ...data, server_only: 1 }
    default: {
      const { name: _name, ...rest } = { name: 1, ...data }
      return rest
    }
  }
}

describe('stored record envelopes', () => {
  it('an envelope survives being stored (JSON, as the text adapters keep it) and loaded, whatever its base is', () => {
    fc.assert(
      fc.property(rowArb, baseArb, fc.boolean(), (data, how, deleted) => {
        const envelope: RecordEnvelope = { data, base: baseOf(data, how), version: 3, deleted, hlc: '1', state: 'synced' }
        const stored = storedEnvelope(envelope)
        const text = JSON.parse(JSON.stringify(stored)) as unknown
        const parsed = recordEnvelopeSchema.parse(text)
        const loaded = loadedEnvelope(parsed as Parameters<typeof loadedEnvelope>[0])
        expect(loaded).toEqual(JSON.parse(JSON.stringify(envelope)))
        // The row is stored once exactly when the base holds the data's fields with the same values.
        const base = envelope.base
        const once = base !== null && Object.keys(base).length === Object.keys(data).length && Object.keys(data).every((k) => Object.hasOwn(base, k) && base[k] === data[k])
        if (how === 'same object' || how === 'shallow copy') expect(once).toBe(true)
        expect(stored.base === 'data').toBe(once)
        if (stored.base === 'data') expect(loaded.base).not.toBe(loaded.data)
      }),
      { seed, numRuns: 300 },
    )
  })

  it('a table writes the compact form and loads it back', () => {
    const table = new RecordTable('contacts')
    const row = { id: 'a', name: 'Ada', tags: ['x'] }
    const put = table.put('a', { data: row, base: { ...row }, version: 1, deleted: false, hlc: 'h', state: 'synced' })
    expect(put.ops).toEqual([{ type: 'set', key: 'r/contacts/a', value: { data: row, base: 'data', version: 1, deleted: false, hlc: 'h', state: 'synced' } }])
    const tables = new Map([['contacts', new RecordTable('contacts')]])
    expect(loadRecordEntry(tables, 'r/contacts/a', put.ops[0]!.value)).toBeNull()
    expect(tables.get('contacts')!.get('a')).toEqual({ data: row, base: row, version: 1, deleted: false, hlc: 'h', state: 'synced' })
    // An earlier layout (the base stored whole) still loads.
    expect(loadRecordEntry(tables, 'r/contacts/b', { data: row, base: { ...row, name: 'old' }, version: 1, deleted: false, hlc: null, state: 'pending' })).toBeNull()
    expect(tables.get('contacts')!.get('b')!.base).toEqual({ ...row, name: 'old' })
    expect(loadRecordEntry(tables, 'r/contacts/c', { data: row, base: 'other', version: 1, deleted: false, hlc: null, state: 'synced' })).not.toBeNull()
  })
})
