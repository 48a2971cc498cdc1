/**
 * The push wire form: mutations cut into runs, and answers whose rows the server sent partially.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Mutation, MutationOutcome } from '../../src/core/protocol.js'
import { decodePushAnswer, encodePushBody, type PushBody } from '../../src/backends/shared.js'
import { SyncError } from '../../src/core/errors.js'

// Replay a failing property with FC_SEED=<seed printed in the failure>.
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)

const mutationArb: fc.Arbitrary<Omit<Mutation, 'seq'>> = fc.record(
  {
    table: fc.constantFrom('a', 'b'),
    action: fc.constantFrom('create' as const, 'update' as const, 'delete' as const),
    id: fc.string({ minLength: 1, maxLength: 4 }),
    data: fc.dictionary(fc.constantFrom('x', 'y', 'z'), fc.oneof(fc.integer(), fc.string(), fc.constant(null)), { maxKeys: 3 }),
    baseVersion: fc.option(fc.nat(), { nil: null }),
    hlc: fc.string({ maxLength: 3 }),
  },
  { requiredKeys: ['table', 'action', 'id', 'baseVersion'] },
)

/** Reads a body back into mutations, run by run. */
function flatten(body: PushBody): Mutation[] {
  return body.runs.flatMap((run) =>
    run.seq.map((seq, i) => {
      const out: Mutation = { seq, table: run.table, action: run.action, id: run.id[i]!, baseVersion: run.base[i]! }
      const data = run.data?.[i]
      if (data != null) out.data = data
      if (run.hlc[i] !== null) out.hlc = run.hlc[i]!
      return out
    }),
  )
}

const runKey = (m: Mutation): string =>
  m.action === 'delete' ? `${m.table}/delete` : `${m.table}/${m.action}/${m.data ? Object.keys(m.data).sort().join(',') : '-'}`

describe('encodePushBody', () => {
  it('keeps every mutation, in order, and cuts a run exactly where table, action or data keys change', () => {
    fc.assert(
      fc.property(fc.array(mutationArb, { maxLength: 40 }), (items) => {
        const mutations: Mutation[] = items.map((m, i) => ({ ...m, seq: i + 1 }))
        const body = encodePushBody('c', mutations)
        expect(body.client_id).toBe('c')
        const expected = mutations.map((m) => {
          const out: Mutation = { seq: m.seq, table: m.table, action: m.action, id: m.id, baseVersion: m.baseVersion }
          if (m.action !== 'delete' && m.data !== undefined) out.data = m.data
          if (m.hlc !== undefined) out.hlc = m.hlc
          return out
        })
        expect(flatten(body)).toEqual(expected)
        // Inside a run every mutation shares the key; adjacent runs differ.
        let at = 0
        let previous: string | undefined
        for (const run of body.runs) {
          const keys = new Set(mutations.slice(at, at + run.seq.length).map(runKey))
          expect(keys.size).toBe(1)
          const key = [...keys][0]!
          expect(key).not.toBe(previous)
          previous = key
          expect(run.data === undefined).toBe(run.action === 'delete')
          at += run.seq.length
        }
        expect(at).toBe(mutations.length)
      }),
      { seed, numRuns: 300 },
    )
  })

  it('sends only the protocol fields', () => {
    const extra = { seq: 1, table: 't', action: 'create', id: 'a', data: { x: 1 }, baseVersion: null, localNote: 'secret' } as Mutation
    expect(JSON.stringify(encodePushBody('c', [extra]))).not.toContain('secret')
  })
})

function expectApplied(outcome: MutationOutcome | undefined): Extract<MutationOutcome, { status: 'applied' }> {
  if (outcome?.status !== 'applied') throw new Error(`expected applied, got ${JSON.stringify(outcome)}`)
  return outcome
}

describe('decodePushAnswer', () => {
  const create: Mutation = { seq: 7, table: 't', action: 'create', id: 'a', data: { id: 'a', name: 'Ann', n: 1 }, baseVersion: null }
  const update: Mutation = { seq: 8, table: 't', action: 'update', id: 'a', data: { name: 'Bo' }, baseVersion: 1 }

  it('completes a partial row with the data the mutation sent; the server wins where both have a column', () => {
    const [created, updated] = decodePushAnswer(
      [
        { seq: 7, status: 'applied', row: { id: 'a', owner: 'u1', note: null }, partial: true, version: 1, hlc: 'h1' },
        { seq: 8, status: 'applied', row: { id: 'a', n: 5, owner: 'u1', note: 'x' }, partial: true, version: 2, hlc: 'h2' },
      ],
      [create, update],
    )
    expect(created).toEqual({ seq: 7, status: 'applied', row: { id: 'a', name: 'Ann', n: 1, owner: 'u1', note: null }, version: 1, hlc: 'h1' })
    expect(updated).toEqual({ seq: 8, status: 'applied', row: { id: 'a', name: 'Bo', n: 5, owner: 'u1', note: 'x' }, version: 2, hlc: 'h2' })
  })

  it('leaves sync columns the mutation sent out of a completed row', () => {
    const withSync: Mutation = { ...create, data: { id: 'a', name: 'Ann', _version: 42, _deleted: true, _xid: '1', _hlc: 'x' } }
    const [outcome] = decodePushAnswer([{ seq: 7, status: 'applied', row: { id: 'a', n: 0 }, partial: true, version: 1, hlc: 'h' }], [withSync])
    expect(expectApplied(outcome).row).toEqual({ id: 'a', name: 'Ann', n: 0 })
  })

  it('leaves a whole row as it is', () => {
    const [outcome] = decodePushAnswer([{ seq: 8, status: 'applied', row: { id: 'a', name: 'BO' }, version: 2, hlc: null }], [update])
    expect(outcome).toEqual({ seq: 8, status: 'applied', row: { id: 'a', name: 'BO' }, version: 2, hlc: null })
  })

  it('refuses a partial answer without a row, or with a partial flag other than true', () => {
    for (const bad of [
      { seq: 7, status: 'applied', row: null, partial: true, version: 1, hlc: null },
      { seq: 7, status: 'applied', row: { id: 'a' }, partial: 'yes', version: 1, hlc: null },
    ]) {
      expect(() => decodePushAnswer([bad], [create])).toThrow(SyncError)
    }
  })
})
