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

const anyMutationArb: fc.Arbitrary<Omit<Mutation, 'seq'>> = fc.record(
  {
    table: fc.constantFrom('a', 'b'),
    action: fc.constantFrom('create' as const, 'update' as const, 'delete' as const),
    id: fc.string({ minLength: 1, maxLength: 4 }),
    data: fc.dictionary(fc.constantFrom('x', 'y', 'z', 'k'), fc.oneof(fc.integer(), fc.string(), fc.constant(null)), { maxKeys: 4 }),
    key: fc.constantFrom('k', 'x'),
    baseVersion: fc.option(fc.nat(), { nil: null }),
    hlc: fc.string({ maxLength: 3 }),
  },
  { requiredKeys: ['table', 'action', 'id', 'baseVersion'] },
)

/** Mutations whose data often holds their key as their id (as the engine's do), or as a number. */
const mutationArb: fc.Arbitrary<Omit<Mutation, 'seq'>> = fc
  .tuple(anyMutationArb, fc.constantFrom('as is', 'id', 'number'))
  .map(([m, form]) => {
    if (form === 'as is' || m.data === undefined) return m
    const field = m.key ?? 'k'
    return form === 'id' ? { ...m, data: { ...m.data, [field]: m.id } } : { ...m, id: '12', data: { ...m.data, [field]: 12 } }
  })

/** Reads a body back into mutations, run by run. */
function flatten(body: PushBody): Mutation[] {
  return body.runs.flatMap((run) =>
    run.seq.map((seq, i) => {
      const out: Mutation = { seq, table: run.table, action: run.action, id: run.id[i]!, baseVersion: run.base === null ? null : run.base[i]! }
      const data = run.data?.[i]
      if (data != null) out.data = data
      if (run.hlc[i] !== null) out.hlc = run.hlc[i]!
      return out
    }),
  )
}

/** The data a body carries for a mutation: its key field left out (the server takes it from `id`). */
const keyed = (m: Mutation): boolean =>
  m.data !== undefined && m.key !== undefined && m.key in m.data && String(m.data[m.key]) === m.id && ['string', 'number'].includes(typeof m.data[m.key])
const sentData = (m: Mutation): Mutation['data'] =>
  keyed(m) ? Object.fromEntries(Object.entries(m.data!).filter(([name]) => name !== m.key)) : m.data

const runKey = (m: Mutation): string =>
  m.action === 'delete' ? `${m.table}/delete` : `${m.table}/${m.action}/${m.data ? Object.keys(sentData(m)!).sort().join(',') : '-'}/${keyed(m) ? m.key : ''}`

describe('encodePushBody', () => {
  it('keeps every mutation, in order, and cuts a run exactly where table, action or data keys change', () => {
    fc.assert(
      fc.property(fc.array(mutationArb, { maxLength: 40 }), (items) => {
        const mutations: Mutation[] = items.map((m, i) => ({ ...m, seq: i + 1 }))
        const body = encodePushBody('c', mutations)
        expect(body.client_id).toBe('c')
        const expected = mutations.map((m) => {
          const out: Mutation = { seq: m.seq, table: m.table, action: m.action, id: m.id, baseVersion: m.baseVersion }
          if (m.action !== 'delete' && m.data !== undefined) out.data = sentData(m)
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
          expect(run.key).toBe(run.action !== 'delete' && keyed(mutations[at]!) ? mutations[at]!.key : undefined)
          // Base versions go as a column unless the run has none.
          const bases = mutations.slice(at, at + run.seq.length).map((m) => m.baseVersion)
          expect(run.base).toEqual(bases.every((b) => b === null) ? null : bases)
          at += run.seq.length
        }
        expect(at).toBe(mutations.length)
      }),
      { seed, numRuns: 300 },
    )
  })

  it('sends a row\'s key once, as the id, in a run that names the key field', () => {
    const body = encodePushBody('c', [
      { seq: 1, table: 't', action: 'create', id: 'a', data: { id: 'a', name: 'Ann' }, key: 'id', baseVersion: null },
      { seq: 2, table: 't', action: 'update', id: '7', data: { n: 7, name: 'Bo' }, key: 'n', baseVersion: 3 },
      // A key field that is not the id goes as it is, and so does data without it: runs of their own.
      { seq: 3, table: 't', action: 'update', id: '8', data: { n: 9, name: 'Bo' }, key: 'n', baseVersion: 3 },
      { seq: 4, table: 't', action: 'update', id: '8', data: { name: 'Cy' }, key: 'n', baseVersion: 4 },
      // Without a known key, the data goes as it is.
      { seq: 5, table: 't', action: 'create', id: 'd', data: { id: 'd', name: 'Di' }, baseVersion: null },
    ])
    expect(body.runs).toEqual([
      { table: 't', action: 'create', seq: [1], id: ['a'], data: [{ name: 'Ann' }], base: null, hlc: [null], key: 'id' },
      { table: 't', action: 'update', seq: [2], id: ['7'], data: [{ name: 'Bo' }], base: [3], hlc: [null], key: 'n' },
      { table: 't', action: 'update', seq: [3], id: ['8'], data: [{ n: 9, name: 'Bo' }], base: [3], hlc: [null] },
      { table: 't', action: 'update', seq: [4], id: ['8'], data: [{ name: 'Cy' }], base: [4], hlc: [null] },
      { table: 't', action: 'create', seq: [5], id: ['d'], data: [{ id: 'd', name: 'Di' }], base: null, hlc: [null] },
    ])
    const own = JSON.parse('{"id": "e", "__proto__": 1}') as Record<string, unknown>
    expect(Object.hasOwn(encodePushBody('c', [{ seq: 5, table: 't', action: 'create', id: 'e', data: own, key: 'id', baseVersion: null }]).runs[0]!.data![0]!, '__proto__')).toBe(true)
  })

  it('sends only the protocol fields', () => {
    const extra = { seq: 1, table: 't', action: 'create', id: 'a', data: { x: 1 }, baseVersion: null, localNote: 'secret' } as Mutation
    expect(JSON.stringify(encodePushBody('c', [extra]))).not.toContain('secret')
  })

  it('names the clock node only when every stamp of the batch is a well-formed stamp of that one node', () => {
    const at = (seq: number, hlc?: string): Mutation => ({ seq, table: 't', action: 'update', id: `r${seq}`, data: { x: seq }, baseVersion: 1, ...(hlc === undefined ? {} : { hlc }) })
    const stamp = (node: string, wall = 1_700_000_000_000) => `${String(wall).padStart(15, '0')}:00003:${node}`
    expect(encodePushBody('c', [at(1, stamp('dev-1')), at(2, stamp('dev-1', 1_700_000_000_001))]).node).toBe('dev-1')
    expect(encodePushBody('c', [at(1, stamp('dev-1')), at(2, stamp('dev-2'))]).node).toBeUndefined()
    // A node that ends another's (dev-1 / v-1) is another node.
    expect(encodePushBody('c', [at(1, stamp('dev-1')), at(2, stamp('v-1'))]).node).toBeUndefined()
    expect(encodePushBody('c', [at(1, stamp('v-1')), at(2, stamp('dev-1'))]).node).toBeUndefined()
    expect(encodePushBody('c', [at(1, stamp('dev-1')), at(2)]).node).toBeUndefined()
    expect(encodePushBody('c', [at(1, 'not a stamp at all, no')]).node).toBeUndefined()
    expect(encodePushBody('c', [at(1, stamp('bad node'))]).node).toBeUndefined()
    expect(encodePushBody('c', []).node).toBeUndefined()
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

  it('defers every mutation of a batch that named a predecessor, and refuses a defer it did not ask for', () => {
    expect(encodePushBody('c', [create], 3)).toMatchObject({ client_id: 'c', after: 3 })
    expect(encodePushBody('c', [create])).not.toHaveProperty('after')
    expect(decodePushAnswer({ deferred: true }, [create, update], 3)).toEqual([{ seq: 7, status: 'deferred' }, { seq: 8, status: 'deferred' }])
    expect(() => decodePushAnswer({ deferred: true }, [create])).toThrow(/named no predecessor/)
    expect(() => decodePushAnswer({ deferred: false }, [create], 3)).toThrow(SyncError)
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

describe('decodePushAnswer with applied groups', () => {
  type Answered = { mutation: Mutation; outcome: MutationOutcome; partialRow?: Record<string, unknown> }

  // A batch of distinct seqs, each answered applied-partial (grouped), applied whole, conflict or rejected.
  const answeredArb: fc.Arbitrary<Answered[]> = fc
    .array(
      fc.record({
        id: fc.string({ minLength: 1, maxLength: 4 }),
        name: fc.string({ maxLength: 3 }),
        kind: fc.constantFrom('grouped', 'whole', 'conflict', 'rejected'),
        version: fc.nat({ max: 9 }),
        owner: fc.option(fc.string({ maxLength: 2 }), { nil: null }),
      }),
      { maxLength: 30 },
    )
    .map((items) =>
      items.map(({ id, name, kind, version, owner }, i): Answered => {
        const seq = 10 + i * 3
        const mutation: Mutation = { seq, table: 't', action: 'create', id, data: { name }, baseVersion: null }
        if (kind === 'grouped') {
          const partialRow = { id, owner }
          // Grouped writes kept the stamp their mutation sent.
          return { mutation: { ...mutation, hlc: `h${seq}` }, partialRow, outcome: { seq, status: 'applied', row: { name, id, owner }, version, hlc: `h${seq}` } }
        }
        if (kind === 'whole') return { mutation, outcome: { seq, status: 'applied', row: { id, name: name.toUpperCase(), owner }, version, hlc: null } }
        if (kind === 'conflict') return { mutation, outcome: { seq, status: 'conflict', row: { id, name: 'other', owner }, version, deleted: false, hlc: null } }
        return { mutation, outcome: { seq, status: 'rejected', code: '23514', message: 'check' } }
      }),
    )

  it('gives each mutation its outcome, in the batch order, however the server groups, compacts and orders them', () => {
    fc.assert(
      fc.property(answeredArb, fc.integer({ min: 1, max: 4 }), fc.infiniteStream(fc.nat()), fc.infiniteStream(fc.boolean()), (answered, groups, shuffle, compact) => {
        // The grouped outcomes split into up to `groups` groups, column by column, each giving at
        // will a version or column alike in all members once, and leaving out the sent stamps;
        // all elements shuffled.
        const elements: unknown[] = []
        const grouped = answered.filter((a) => a.partialRow !== undefined)
        const choose = compact[Symbol.iterator]()
        for (let g = 0; g < groups; g++) {
          const members = grouped.filter((_, k) => k % groups === g)
          if (members.length === 0) continue
          const versions = members.map((m) => (m.outcome as { version: number }).version)
          const owners = members.map((m) => m.partialRow!.owner)
          const ownerOnce = choose.next().value! && owners.every((x) => x === owners[0])
          elements.push({
            seqs: members.map((m) => m.mutation.seq),
            status: 'applied',
            partial: true,
            version: choose.next().value! && versions.every((x) => x === versions[0]) ? versions[0] : versions,
            hlc: choose.next().value! ? null : members.map((m) => (m.outcome as { hlc: string | null }).hlc),
            row: { id: members.map((m) => m.partialRow!.id), ...(ownerOnce ? {} : { owner: owners }) },
            same: ownerOnce ? { owner: owners[0] } : null,
          })
        }
        for (const a of answered) if (a.partialRow === undefined) elements.push(a.outcome)
        const picks = shuffle[Symbol.iterator]()
        for (let i = elements.length - 1; i > 0; i--) {
          const j = picks.next().value! % (i + 1)
          ;[elements[i], elements[j]] = [elements[j], elements[i]]
        }
        expect(decodePushAnswer(elements, answered.map((a) => a.mutation))).toEqual(answered.map((a) => a.outcome))
      }),
      { seed, numRuns: 300 },
    )
  })

  it('decodes one group of the whole batch alike whether its seqs come in the batch order or not', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ name: fc.string({ maxLength: 3 }), version: fc.nat({ max: 9 }) }), { minLength: 1, maxLength: 20 }), fc.nat(), (rows, rotate) => {
        const mutations = rows.map(({ name }, i): Mutation => ({ seq: 5 + 2 * i, table: 't', action: 'create', id: `r${i}`, data: { name }, baseVersion: null, hlc: `h${i}` }))
        const expected = rows.map(({ name, version }, i) => ({ seq: 5 + 2 * i, status: 'applied', row: { name, id: `r${i}`, owner: 'u' }, version, hlc: `h${i}` }))
        const group = (order: number[]) => ({
          seqs: order.map((i) => mutations[i]!.seq),
          status: 'applied',
          partial: true,
          version: order.map((i) => rows[i]!.version),
          row: { id: order.map((i) => `r${i}`) },
          same: { owner: 'u' },
        })
        const inOrder = rows.map((_, i) => i)
        const shift = rotate % rows.length
        const rotated = [...inOrder.slice(shift), ...inOrder.slice(0, shift)]
        expect(decodePushAnswer([group(inOrder)], mutations)).toEqual(expected)
        expect(decodePushAnswer([group(rotated)], mutations)).toEqual(expected)
        // A group of one seq fewer, or of a seq out of the batch, is refused either way.
        if (rows.length > 1) expect(() => decodePushAnswer([group(inOrder.slice(1))], mutations)).toThrow(SyncError)
        expect(() => decodePushAnswer([{ ...group(inOrder), seqs: group(inOrder).seqs.map((s, k) => (k === 0 ? s + 1 : s)) }], mutations)).toThrow(SyncError)
      }),
      { seed, numRuns: 200 },
    )
  })

  it('completes a partial outcome without a stamp with the one sent, and copies a value given once for each row', () => {
    const m = (seq: number): Mutation => ({ seq, table: 't', action: 'create', id: `r${seq}`, data: { name: `n${seq}` }, baseVersion: null, hlc: `h${seq}` })
    const answer = [
      { seqs: [1, 2], status: 'applied', partial: true, version: 1, hlc: null, row: {}, same: { tags: ['a'], meta: { k: [1] }, owner: 'u' } },
      { seq: 3, status: 'applied', partial: true, row: { id: 'r3' }, version: 4 },
      { seq: 4, status: 'applied', row: { id: 'r4', name: 'N4' }, version: 2 },
    ]
    const [one, two, three, four] = decodePushAnswer(answer, [m(1), m(2), m(3), m(4)]).map(expectApplied)
    expect(one).toEqual({ seq: 1, status: 'applied', row: { name: 'n1', tags: ['a'], meta: { k: [1] }, owner: 'u' }, version: 1, hlc: 'h1' })
    expect(two!.row).toEqual({ name: 'n2', tags: ['a'], meta: { k: [1] }, owner: 'u' })
    expect(two!.row!.tags).not.toBe(one!.row!.tags)
    expect(two!.row!.meta).not.toBe(one!.row!.meta)
    expect(three).toEqual({ seq: 3, status: 'applied', row: { id: 'r3', name: 'n3' }, version: 4, hlc: 'h3' })
    // A whole outcome without a stamp has none (the server always sends one).
    expect(four).toEqual({ seq: 4, status: 'applied', row: { id: 'r4', name: 'N4' }, version: 2, hlc: null })
    // A group's version array or stamps must be as long as its seqs.
    for (const bad of [{ version: [1] }, { hlc: ['h'] }, { same: [1] }]) {
      expect(() => decodePushAnswer([{ ...answer[0], ...bad }], [m(1), m(2)])).toThrow(SyncError)
    }
  })

  it('answers a repeated seq with its first occurrence, completed from that one', () => {
    const first: Mutation = { seq: 3, table: 't', action: 'create', id: 'a', data: { name: 'first' }, baseVersion: null }
    const again: Mutation = { ...first, data: { name: 'again' } }
    const answer = [{ seqs: [3], status: 'applied', partial: true, version: [1], hlc: [null], row: { id: ['a'] } }]
    const [one, two] = decodePushAnswer(answer, [first, again])
    expect(expectApplied(one).row).toEqual({ id: 'a', name: 'first' })
    expect(two).toBe(one)
  })

  it('refuses a seq answered twice, a seq left unanswered, or one not in the batch', () => {
    const m = (seq: number): Mutation => ({ seq, table: 't', action: 'create', id: `r${seq}`, data: {}, baseVersion: null })
    const group = (seqs: number[]) => ({ seqs, status: 'applied', partial: true, version: seqs.map(() => 1), hlc: seqs.map(() => null), row: { id: seqs.map(String) } })
    for (const answer of [[group([1, 2]), group([2])], [group([1])], [group([1, 2, 3])]]) {
      expect(() => decodePushAnswer(answer, [m(1), m(2)])).toThrow(SyncError)
    }
  })
})
