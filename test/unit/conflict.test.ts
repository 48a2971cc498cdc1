import { describe, expect, it } from 'vitest'
import {
  ConflictResolutionError,
  isConflictStrategy,
  resolveConflict,
  stripLocalOnly,
  withLocalOnly,
  type ConflictResolution,
  type ConflictSide,
  type ConflictStrategy,
  type CustomResolver,
  type ResolveConflictInput,
} from '../../src/core/conflict.js'
import { createHlcClock, encodeHlc } from '../../src/core/hlc.js'
import { unionArrays } from '../../src/core/merge.js'
import type { Row } from '../../src/core/protocol.js'

const T0 = Date.UTC(2024, 5, 1)
const HOUR = 60 * 60 * 1000
const OLDER = encodeHlc({ wallMs: T0 + 1000, counter: 0, nodeId: 'device-a' })
const NEWER = encodeHlc({ wallMs: T0 + 2000, counter: 0, nodeId: 'device-b' })

/** The contacts app's configuration: exactly as the app declares it. */
const CONTACTS: ConflictStrategy = {
  merge: {
    localOnly: ['localNotes', 'deviceId', 'syncStatus'],
    fields: { phone: 'newest', email: 'newest', address: 'newest', tags: 'union' },
  },
}
const LOCAL_ONLY = ['localNotes', 'deviceId', 'syncStatus']

/** Takes the remote row, with the local name; deletes when either side deleted. */
const customResolver: CustomResolver = ({ local, remote }) =>
  local.deleted || remote.deleted || !local.row || !remote.row
    ? null
    : { ...remote.row, name: local.row.name, localNotes: 'from the resolver' }

const live = (row: Row, hlc: string): ConflictSide => ({ row, hlc, deleted: false })
const tombstone = (row: Row | null, hlc: string): ConflictSide => ({ row, hlc, deleted: true })

// update/update: local renamed, both changed phone and tags, remote changed email.
const base: Row = { id: 'c1', name: 'Ada', phone: '100', email: 'ada@old', tags: ['friend'] }
const localRow: Row = {
  id: 'c1',
  name: 'Ada Lovelace',
  phone: '200',
  email: 'ada@old',
  tags: ['friend', 'work'],
  localNotes: 'call back',
  deviceId: 'dev-1',
}
const remoteRow: Row = { id: 'c1', name: 'Ada', phone: '300', email: 'ada@new', tags: ['vip', 'friend'] }
const localSent: Row = { id: 'c1', name: 'Ada Lovelace', phone: '200', email: 'ada@old', tags: ['friend', 'work'] }

// create/create on the same id, no base.
const localCreate: Row = { id: 'c1', name: 'Ada King', phone: '200', tags: ['a'], localNotes: 'n', deviceId: 'dev-1' }
const remoteCreate: Row = { id: 'c1', name: 'Ada', phone: '300', email: 'ada@x', tags: ['b'] }
const localCreateSent: Row = { id: 'c1', name: 'Ada King', phone: '200', tags: ['a'] }

type Case = 'update/update' | 'update/delete' | 'delete/update' | 'create/create'
type Newer = 'local newer' | 'remote newer'

function input(kind: Case, newer: Newer, strategy: ConflictStrategy): ResolveConflictInput {
  const [lh, rh] = newer === 'local newer' ? [NEWER, OLDER] : [OLDER, NEWER]
  const common = { strategy, table: 'contacts', id: 'c1', localOnly: LOCAL_ONLY }
  switch (kind) {
    case 'update/update':
      return { ...common, local: live(localRow, lh), remote: live(remoteRow, rh), base }
    case 'update/delete':
      return { ...common, local: live(localRow, lh), remote: tombstone(remoteRow, rh), base }
    case 'delete/update':
      return { ...common, local: tombstone(null, lh), remote: live(remoteRow, rh), base }
    case 'create/create':
      return { ...common, local: live(localCreate, lh), remote: live(remoteCreate, rh), base: null }
  }
}

const KEEP: ConflictResolution = { outcome: 'keep-remote' }
const ASK: ConflictResolution = { outcome: 'ask-user' }
const write = (row: Row, hlc: string | null): ConflictResolution => ({ outcome: 'write', row, hlc })
const del = (hlc: string | null): ConflictResolution => ({ outcome: 'delete', hlc })

// Every strategy × case × which change is newer. `NEWER` as the hlc means "send the local change
// under its own stamp" (it is the local stamp whenever local is newer).
const table: Array<[string, ConflictStrategy, Case, Newer, ConflictResolution]> = [
  // local-wins: the local state, whatever the clocks say.
  ['local-wins', 'local-wins', 'update/update', 'local newer', write(localSent, NEWER)],
  ['local-wins', 'local-wins', 'update/update', 'remote newer', write(localSent, null)],
  ['local-wins', 'local-wins', 'update/delete', 'local newer', write(localSent, NEWER)],
  ['local-wins', 'local-wins', 'update/delete', 'remote newer', write(localSent, null)],
  ['local-wins', 'local-wins', 'delete/update', 'local newer', del(NEWER)],
  ['local-wins', 'local-wins', 'delete/update', 'remote newer', del(null)],
  ['local-wins', 'local-wins', 'create/create', 'local newer', write(localCreateSent, NEWER)],
  ['local-wins', 'local-wins', 'create/create', 'remote newer', write(localCreateSent, null)],
  // remote-wins: always the server's version.
  ['remote-wins', 'remote-wins', 'update/update', 'local newer', KEEP],
  ['remote-wins', 'remote-wins', 'update/update', 'remote newer', KEEP],
  ['remote-wins', 'remote-wins', 'update/delete', 'local newer', KEEP],
  ['remote-wins', 'remote-wins', 'update/delete', 'remote newer', KEEP],
  ['remote-wins', 'remote-wins', 'delete/update', 'local newer', KEEP],
  ['remote-wins', 'remote-wins', 'delete/update', 'remote newer', KEEP],
  ['remote-wins', 'remote-wins', 'create/create', 'local newer', KEEP],
  ['remote-wins', 'remote-wins', 'create/create', 'remote newer', KEEP],
  // newest-wins: the whole state of the newer change, deletions included.
  ['newest-wins', 'newest-wins', 'update/update', 'local newer', write(localSent, NEWER)],
  ['newest-wins', 'newest-wins', 'update/update', 'remote newer', KEEP],
  ['newest-wins', 'newest-wins', 'update/delete', 'local newer', write(localSent, NEWER)],
  ['newest-wins', 'newest-wins', 'update/delete', 'remote newer', KEEP],
  ['newest-wins', 'newest-wins', 'delete/update', 'local newer', del(NEWER)],
  ['newest-wins', 'newest-wins', 'delete/update', 'remote newer', KEEP],
  ['newest-wins', 'newest-wins', 'create/create', 'local newer', write(localCreateSent, NEWER)],
  ['newest-wins', 'newest-wins', 'create/create', 'remote newer', KEEP],
  // merge (every field `newest`): one-sided fields from their side; an edit beats a deletion.
  ['merge', 'merge', 'update/update', 'local newer', write({ id: 'c1', name: 'Ada Lovelace', phone: '200', email: 'ada@new', tags: ['friend', 'work'] }, null)],
  ['merge', 'merge', 'update/update', 'remote newer', write({ id: 'c1', name: 'Ada Lovelace', phone: '300', email: 'ada@new', tags: ['vip', 'friend'] }, null)],
  ['merge', 'merge', 'update/delete', 'local newer', write(localSent, NEWER)],
  ['merge', 'merge', 'update/delete', 'remote newer', write(localSent, null)],
  ['merge', 'merge', 'delete/update', 'local newer', KEEP],
  ['merge', 'merge', 'delete/update', 'remote newer', KEEP],
  ['merge', 'merge', 'create/create', 'local newer', write({ id: 'c1', name: 'Ada King', phone: '200', email: 'ada@x', tags: ['a'] }, null)],
  ['merge', 'merge', 'create/create', 'remote newer', KEEP],
  // merge with the contacts configuration: tags are a union, newer side's order first.
  ['contacts merge', CONTACTS, 'update/update', 'local newer', write({ id: 'c1', name: 'Ada Lovelace', phone: '200', email: 'ada@new', tags: ['friend', 'work', 'vip'] }, null)],
  ['contacts merge', CONTACTS, 'update/update', 'remote newer', write({ id: 'c1', name: 'Ada Lovelace', phone: '300', email: 'ada@new', tags: ['vip', 'friend', 'work'] }, null)],
  ['contacts merge', CONTACTS, 'update/delete', 'local newer', write(localSent, NEWER)],
  ['contacts merge', CONTACTS, 'update/delete', 'remote newer', write(localSent, null)],
  ['contacts merge', CONTACTS, 'delete/update', 'local newer', KEEP],
  ['contacts merge', CONTACTS, 'delete/update', 'remote newer', KEEP],
  ['contacts merge', CONTACTS, 'create/create', 'local newer', write({ id: 'c1', name: 'Ada King', phone: '200', email: 'ada@x', tags: ['a', 'b'] }, null)],
  ['contacts merge', CONTACTS, 'create/create', 'remote newer', write({ id: 'c1', name: 'Ada', phone: '300', email: 'ada@x', tags: ['b', 'a'] }, null)],
  // ask-user: always parked.
  ['ask-user', 'ask-user', 'update/update', 'local newer', ASK],
  ['ask-user', 'ask-user', 'update/update', 'remote newer', ASK],
  ['ask-user', 'ask-user', 'update/delete', 'local newer', ASK],
  ['ask-user', 'ask-user', 'update/delete', 'remote newer', ASK],
  ['ask-user', 'ask-user', 'delete/update', 'local newer', ASK],
  ['ask-user', 'ask-user', 'delete/update', 'remote newer', ASK],
  ['ask-user', 'ask-user', 'create/create', 'local newer', ASK],
  ['ask-user', 'ask-user', 'create/create', 'remote newer', ASK],
  // custom: its row (local-only fields dropped), or delete; a delete of a deleted remote is a no-op.
  ['custom', customResolver, 'update/update', 'local newer', write({ ...remoteRow, name: 'Ada Lovelace' }, null)],
  ['custom', customResolver, 'update/update', 'remote newer', write({ ...remoteRow, name: 'Ada Lovelace' }, null)],
  ['custom', customResolver, 'update/delete', 'local newer', KEEP],
  ['custom', customResolver, 'update/delete', 'remote newer', KEEP],
  ['custom', customResolver, 'delete/update', 'local newer', del(NEWER)],
  ['custom', customResolver, 'delete/update', 'remote newer', del(null)],
  ['custom', customResolver, 'create/create', 'local newer', write({ ...remoteCreate, name: 'Ada King' }, null)],
  ['custom', customResolver, 'create/create', 'remote newer', write({ ...remoteCreate, name: 'Ada King' }, null)],
]

describe('resolveConflict: every strategy × case', () => {
  it.each(table)('%s, %s, %s', (_name, strategy, kind, newer, expected) => {
    expect(resolveConflict(input(kind, newer, strategy))).toEqual(expected)
  })

  it('covers every strategy shape, case and clock order', () => {
    const strategies = new Set(table.map((t) => t[0]))
    expect(strategies).toEqual(new Set(['local-wins', 'remote-wins', 'newest-wins', 'merge', 'contacts merge', 'ask-user', 'custom']))
    expect(table).toHaveLength(strategies.size * 4 * 2)
  })

  it.each(table.filter((t) => t[2] === 'update/update' && t[3] === 'local newer'))(
    'both sides deleted is no conflict for %s',
    (_name, strategy) => {
      const result = resolveConflict({
        strategy,
        local: tombstone(localRow, NEWER),
        remote: tombstone(null, OLDER),
        base,
        table: 'contacts',
        id: 'c1',
        localOnly: LOCAL_ONLY,
      })
      expect(result).toEqual(KEEP)
    },
  )

  it.each(table.filter((t) => t[2] === 'update/update' && t[3] === 'local newer'))(
    'sides equal but for local-only fields are no conflict for %s',
    (_name, strategy) => {
      const result = resolveConflict({
        strategy,
        local: live({ ...remoteRow, localNotes: 'mine', syncStatus: 'pending' }, NEWER),
        remote: live({ ...remoteRow, tags: ['vip', 'friend'] }, OLDER),
        base,
        table: 'contacts',
        id: 'c1',
        localOnly: LOCAL_ONLY,
      })
      expect(result).toEqual(KEEP)
    },
  )
})

describe('newest-wins', () => {
  const side = (row: Row | null, hlc: string | null, deleted = false): ConflictSide => ({ row, hlc, deleted })

  it('breaks equal or missing stamps by content, the same way from either device', () => {
    const a: Row = { id: 'x', v: 1 }
    const b: Row = { id: 'x', v: 2 }
    for (const stamp of [null, NEWER]) {
      const onA = resolveConflict({ strategy: 'newest-wins', local: side(a, stamp), remote: side(b, stamp), base: null, table: 't', id: 'x' })
      const onB = resolveConflict({ strategy: 'newest-wins', local: side(b, stamp), remote: side(a, stamp), base: null, table: 't', id: 'x' })
      // Exactly one device writes its row, the other keeps the remote one: both end with the same row.
      expect([onA.outcome, onB.outcome].sort()).toEqual(['keep-remote', 'write'])
      const endA = onA.outcome === 'write' ? onA.row : b
      const endB = onB.outcome === 'write' ? onB.row : a
      expect(endA).toEqual(endB)
    }
  })

  it('a missing stamp loses to any stamp', () => {
    const result = resolveConflict({
      strategy: 'newest-wins',
      local: side({ id: 'x', v: 1 }, OLDER),
      remote: side({ id: 'x', v: 2 }, null),
      base: null,
      table: 't',
      id: 'x',
    })
    expect(result).toEqual(write({ id: 'x', v: 1 }, OLDER))
  })

  it.each([
    ['+1 h', HOUR, -HOUR],
    ['-1 h', -HOUR, HOUR],
  ])('with device A %s skewed, the causally later write wins on both devices', (_label, skewA, skewB) => {
    let real = T0
    const clockA = createHlcClock({ nodeId: 'device-a', now: () => real + skewA })
    const clockB = createHlcClock({ nodeId: 'device-b', now: () => real + skewB })
    const rowA: Row = { id: 'c1', phone: 'from A' }
    const rowB: Row = { id: 'c1', phone: 'from B' }

    // A edits; B sees A's stamp (it pulled A's change), then edits the same record a minute later.
    const stampA = clockA.tick()
    real += 60_000
    clockB.receive(stampA)
    const stampB = clockB.tick()

    const onA = resolveConflict({ strategy: 'newest-wins', local: side(rowA, stampA), remote: side(rowB, stampB), base: null, table: 't', id: 'c1' })
    const onB = resolveConflict({ strategy: 'newest-wins', local: side(rowB, stampB), remote: side(rowA, stampA), base: null, table: 't', id: 'c1' })
    expect(onA).toEqual(KEEP)
    expect(onB).toEqual(write(rowB, stampB))

    // And back: A, having pulled B's change, edits again and wins in turn.
    real += 60_000
    clockA.receive(stampB)
    const stampA2 = clockA.tick()
    const rowA2: Row = { id: 'c1', phone: 'from A again' }
    const again = resolveConflict({ strategy: 'newest-wins', local: side(rowA2, stampA2), remote: side(rowB, stampB), base: null, table: 't', id: 'c1' })
    expect(again).toEqual(write(rowA2, stampA2))
  })
})

describe('merge', () => {
  it('merges the contacts configuration field by field and keeps local-only fields off the wire', () => {
    const contactBase: Row = {
      id: 'c1',
      name: 'Grace',
      phone: '555-0100',
      email: 'grace@old.example',
      address: '1 Navy Way',
      tags: ['work'],
    }
    const mine: Row = {
      ...contactBase,
      phone: '555-0199',
      address: '2 Harbor Rd',
      tags: ['work', 'family'],
      localNotes: 'met at conference',
      deviceId: 'phone-1',
      syncStatus: 'pending',
    }
    const theirs: Row = { ...contactBase, name: 'Grace Hopper', address: '3 Yard St', email: 'grace@new.example', tags: ['vip', 'work'] }
    const result = resolveConflict({
      strategy: CONTACTS,
      local: { row: mine, hlc: NEWER, deleted: false },
      remote: { row: theirs, hlc: OLDER, deleted: false },
      base: contactBase,
      table: 'contacts',
      id: 'c1',
    })
    expect(result).toEqual(
      write(
        {
          id: 'c1',
          name: 'Grace Hopper', // only remote changed
          phone: '555-0199', // only local changed
          email: 'grace@new.example', // only remote changed
          address: '2 Harbor Rd', // both changed: newest (local)
          tags: ['work', 'family', 'vip'], // both changed: union, newer side's order first
        },
        null,
      ),
    )
    // On the device the local-only fields come back from the local row.
    if (result.outcome !== 'write') throw new Error('expected a write')
    expect(withLocalOnly(result.row, mine, LOCAL_ONLY)).toEqual({
      ...result.row,
      localNotes: 'met at conference',
      deviceId: 'phone-1',
      syncStatus: 'pending',
    })
  })

  it('applies local and remote rules, a default rule, and a function rule with (local, remote, base)', () => {
    const seen: unknown[] = []
    const strategy: ConflictStrategy = {
      merge: {
        default: 'local',
        fields: {
          b: 'remote',
          c: (l, r, b) => {
            seen.push([l, r, b])
            return `${String(l)}+${String(r)}`
          },
        },
      },
    }
    const result = resolveConflict({
      strategy,
      local: { row: { a: 'L', b: 'L', c: 'L' }, hlc: OLDER, deleted: false },
      remote: { row: { a: 'R', b: 'R', c: 'R' }, hlc: NEWER, deleted: false },
      base: { a: 'B', b: 'B', c: 'B' },
      table: 't',
      id: 'x',
    })
    expect(result).toEqual(write({ a: 'L', b: 'R', c: 'L+R' }, null))
    expect(seen).toEqual([['L', 'R', 'B']])
  })

  it('falls back to newest for union when a side is not an array', () => {
    const result = resolveConflict({
      strategy: { merge: { fields: { tags: 'union' } } },
      local: { row: { tags: null }, hlc: NEWER, deleted: false },
      remote: { row: { tags: ['x'] }, hlc: OLDER, deleted: false },
      base: { tags: ['y'] },
      table: 't',
      id: 'x',
    })
    expect(result).toEqual(write({ tags: null }, NEWER))
  })

  it('drops a field a function rule maps to undefined', () => {
    const result = resolveConflict({
      strategy: { merge: { fields: { a: () => undefined } } },
      local: { row: { id: 'x', a: 1 }, hlc: NEWER, deleted: false },
      remote: { row: { id: 'x', a: 2 }, hlc: OLDER, deleted: false },
      base: { id: 'x', a: 0 },
      table: 't',
      id: 'x',
    })
    expect(result).toEqual(write({ id: 'x' }, null))
  })

  it('unions by value, without duplicates', () => {
    expect(unionArrays([1, { a: 1, b: 2 }, 1], [{ b: 2, a: 1 }, 3, 1])).toEqual([1, { a: 1, b: 2 }, 3])
  })
})

describe('failures come back typed, never thrown', () => {
  const sides = {
    local: { row: { id: 'x', v: 1 }, hlc: NEWER, deleted: false },
    remote: { row: { id: 'x', v: 2 }, hlc: OLDER, deleted: false },
    base: { id: 'x', v: 0 },
    table: 't',
    id: 'x',
  }

  function failure(result: ConflictResolution): ConflictResolutionError {
    if (result.outcome !== 'failed') throw new Error(`expected failed, got ${result.outcome}`)
    expect(result.error).toBeInstanceOf(ConflictResolutionError)
    expect(result.error.table).toBe('t')
    expect(result.error.id).toBe('x')
    return result.error
  }

  it('a custom resolver that throws', () => {
    const boom = new Error('boom')
    const error = failure(resolveConflict({ ...sides, strategy: () => { throw boom } }))
    expect(error.kind).toBe('resolver-threw')
    expect(error.cause).toBe(boom)
  })

  it('a custom resolver that returns nothing useful, or a promise', () => {
    const bad: unknown[] = [undefined, 42, 'row', [{ id: 'x' }], Promise.resolve({ id: 'x' })]
    for (const answer of bad) {
      const error = failure(resolveConflict({ ...sides, strategy: (() => answer) as unknown as CustomResolver }))
      expect(error.kind).toBe('invalid-result')
    }
  })

  it('a field rule that throws, naming the field', () => {
    const error = failure(
      resolveConflict({ ...sides, strategy: { merge: { fields: { v: () => { throw new TypeError('bad') } } } } }),
    )
    expect(error.kind).toBe('field-rule-threw')
    expect(error.field).toBe('v')
    expect(error.cause).toBeInstanceOf(TypeError)
  })

  it('an unknown strategy', () => {
    for (const strategy of ['newest', 'last-write-wins', { merge: { fields: { v: 'sum' } } }, { merge: {}, extra: 1 }, null, 7]) {
      expect(isConflictStrategy(strategy)).toBe(false)
      const error = failure(resolveConflict({ ...sides, strategy: strategy as ConflictStrategy }))
      expect(error.kind).toBe('invalid-strategy')
    }
  })

  it('accepts every valid strategy shape', () => {
    for (const strategy of ['local-wins', 'remote-wins', 'newest-wins', 'merge', 'ask-user', CONTACTS, customResolver, { merge: {} }]) {
      expect(isConflictStrategy(strategy)).toBe(true)
    }
  })
})

describe('purity', () => {
  it('never mutates its input, even when a custom resolver or rule mutates what it is given', () => {
    const mutatingResolver: CustomResolver = (ctx) => {
      ;(ctx.local.row as Row).name = 'changed'
      ;((ctx.remote.row as Row).tags as string[]).push('changed')
      return ctx.local.row
    }
    const mutatingRule = (l: unknown) => {
      ;(l as string[]).push('changed')
      return l
    }
    const strategies: ConflictStrategy[] = ['local-wins', 'newest-wins', 'merge', CONTACTS, mutatingResolver, { merge: { fields: { tags: mutatingRule } } }]
    for (const strategy of strategies) {
      const given = input('update/update', 'local newer', strategy)
      const snapshot = structuredClone({ ...given, strategy: null })
      const result = resolveConflict(given)
      expect(result.outcome).toBe('write')
      expect({ ...given, strategy: null }).toEqual(snapshot)
    }
  })
})

describe('local-only helpers', () => {
  it('stripLocalOnly removes only the listed fields and copies', () => {
    const row = { id: 'x', a: 1, localNotes: 'n' }
    const stripped = stripLocalOnly(row, ['localNotes', 'absent'])
    expect(stripped).toEqual({ id: 'x', a: 1 })
    expect(row).toEqual({ id: 'x', a: 1, localNotes: 'n' })
  })

  it('withLocalOnly takes local-only fields from the local row, never from the incoming one', () => {
    const incoming = { id: 'x', a: 2, localNotes: 'server copy', deviceId: 'other' }
    expect(withLocalOnly(incoming, { id: 'x', a: 1, localNotes: 'mine' }, ['localNotes', 'deviceId'])).toEqual({
      id: 'x',
      a: 2,
      localNotes: 'mine',
    })
    expect(withLocalOnly(incoming, null, ['localNotes', 'deviceId'])).toEqual({ id: 'x', a: 2 })
  })

  it('a custom resolver cannot send local-only fields', () => {
    const result = resolveConflict({ ...input('update/update', 'local newer', customResolver) })
    if (result.outcome !== 'write') throw new Error('expected a write')
    for (const f of LOCAL_ONLY) expect(result.row).not.toHaveProperty(f)
  })
})
