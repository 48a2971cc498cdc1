/**
 * Conflict strategies through the real stack (supabase-js → gateway → PostgREST → PostgreSQL/PGlite):
 * every strategy × case of `docs/conflicts.md`, clock skew under `newest-wins`, and the `ask-user`
 * inbox end to end.
 *
 * Naming: device B is the one that meets the conflict (its push is answered `conflict`), so in the
 * documentation's terms B's change is `local` and A's (already on the server) is `remote`.
 */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createSyncOrchestrator } from '../../src/core/orchestrator.js'
import { createSupabaseBackend } from '../../src/backends/supabase/index.js'
import { createMemoryStorage } from '../../src/storage/memory.js'
import { createManualEnvironment, type ManualEnvironment } from '../../src/env/manual.js'
import type { CustomResolver } from '../../src/core/conflict.js'
import type { Storage } from '../../src/core/storage.js'
import type { CollectionConfig, SyncEvent } from '../../src/core/types.js'
import type { Row } from '../../src/core/protocol.js'
import { newUser, responseLosingFetch, settle, useStack } from '../helpers/stack.js'

const stack = useStack()

/** The synced fields the tests look at, absent ones as the server shows them. */
interface Fields {
  name: string
  phone: string | null
  email: string | null
  address: string | null
  tags: string[]
}

/** Every device's clock is a shared virtual "true time" plus its own skew. */
interface World {
  t: number
}

/** The contacts app's configuration from `docs/conflicts.md`, verbatim. */
const CONTACTS_MERGE = {
  merge: {
    localOnly: ['localNotes', 'deviceId', 'syncStatus'],
    fields: { phone: 'newest', email: 'newest', address: 'newest', tags: 'union' },
  },
} as const

/** Deletion wins; otherwise the remote row overlaid with the local one, names joined. */
const custom: CustomResolver = ({ local, remote }) => {
  if (local.deleted || remote.deleted || !local.row || !remote.row) return null
  return { ...remote.row, ...local.row, name: `${String(remote.row.name)}+${String(local.row.name)}` }
}

interface DeviceOptions {
  storage?: Storage
  skewMs?: number
  clientId?: string
  fetch?: typeof fetch
}

function device(world: World, user: string, conflict: unknown, options: DeviceOptions = {}) {
  const manual = createManualEnvironment({ now: world.t })
  const skew = options.skewMs ?? 0
  // Timers stay with the manual environment (never advanced here, so no background runs); only
  // the wall clock the engine stamps with follows the world.
  const env: ManualEnvironment = { ...manual, now: () => world.t + skew }
  const client = stack().createClient(user, options.fetch ? { fetch: options.fetch } : {})
  const events: SyncEvent[] = []
  const isMerge = typeof conflict === 'object'
  const config: CollectionConfig = isMerge ? { conflict } : { conflict, localOnly: ['localNotes'] }
  const storage = options.storage ?? createMemoryStorage()
  const sync = createSyncOrchestrator({
    storage,
    backend: createSupabaseBackend({ client }),
    environment: env,
    collections: { contacts: config },
    ...(options.clientId ? { clientId: options.clientId } : {}),
  })
  sync.subscribe((e) => events.push(e))
  return { sync, env, events, storage, contacts: sync.collection('contacts') }
}
type Device = ReturnType<typeof device>

function shape(row: Row | undefined | null): Fields | null {
  if (!row) return null
  return {
    name: row.name as string,
    phone: (row.phone as string | undefined) ?? null,
    email: (row.email as string | undefined) ?? null,
    address: (row.address as string | undefined) ?? null,
    tags: (row.tags as string[] | undefined) ?? [],
  }
}

async function serverRow(id: string): Promise<Fields | null> {
  const rows = await stack().query<Fields & { _deleted: boolean }>(
    'select name, phone, email, address, tags, _deleted from public.contacts where id = $1',
    [id],
  )
  const row = rows[0]
  return row && !row._deleted ? shape(row as unknown as Row) : null
}

async function sync(d: Device): Promise<void> {
  expect(await d.sync.forceSyncAll()).toMatchObject({ ok: true })
}

// ── the documented table ─────────────────────────────────────────────────────
type Case = 'update/update' | 'update/delete' | 'delete/update' | 'create/create'

const BASE: Fields = { name: 'Base', phone: 'p0', email: 'e0', address: 'a0', tags: ['t0'] }
const A_EDIT = { phone: 'pA', address: 'aA', tags: ['t0', 'a'] }
const B_EDIT = { email: 'eB', address: 'aB', tags: ['t0', 'b'] }
const A_ROW: Fields = { ...BASE, ...A_EDIT }
const B_ROW: Fields = { ...BASE, ...B_EDIT }
// Two creates of one id; each sets only some fields (the rest are the server's defaults).
const A_NEW = { name: 'A', phone: 'pA', tags: ['x', 'a'] }
const B_NEW = { name: 'B', email: 'eB', tags: ['b', 'x'] }
const A_CREATED: Fields = { name: 'A', phone: 'pA', email: null, address: null, tags: ['x', 'a'] }
const B_CREATED: Fields = { name: 'B', phone: null, email: 'eB', address: null, tags: ['b', 'x'] }
// A write resolved on top of A's create sends B's fields as an update: a field B's create never
// set keeps the value the server holds (A's), as it would for any update.
const B_OVER_A: Fields = { ...B_CREATED, phone: 'pA' }

interface Row_ {
  strategy: string
  conflict: unknown
  case: Case
  /** Whose change carries the newer stamp. */
  newer: 'A' | 'B'
  /** The server's row after everyone synced (null: gone); devices hold the same. */
  server: Fields | null
  /** ask-user: what B keeps (marked 'conflict'). */
  parked?: Fields | null
}

const TABLE: Row_[] = [
  // local-wins: B's state, whatever the clocks say (A's change is the newer one here).
  { strategy: 'local-wins', conflict: 'local-wins', case: 'update/update', newer: 'A', server: B_ROW },
  { strategy: 'local-wins', conflict: 'local-wins', case: 'update/delete', newer: 'A', server: B_ROW },
  { strategy: 'local-wins', conflict: 'local-wins', case: 'delete/update', newer: 'A', server: null },
  { strategy: 'local-wins', conflict: 'local-wins', case: 'create/create', newer: 'A', server: B_OVER_A },
  // remote-wins: A's state, although B's change is the newer one.
  { strategy: 'remote-wins', conflict: 'remote-wins', case: 'update/update', newer: 'B', server: A_ROW },
  { strategy: 'remote-wins', conflict: 'remote-wins', case: 'update/delete', newer: 'B', server: null },
  { strategy: 'remote-wins', conflict: 'remote-wins', case: 'delete/update', newer: 'B', server: A_ROW },
  { strategy: 'remote-wins', conflict: 'remote-wins', case: 'create/create', newer: 'B', server: A_CREATED },
  // newest-wins: both directions.
  { strategy: 'newest-wins', conflict: 'newest-wins', case: 'update/update', newer: 'B', server: B_ROW },
  { strategy: 'newest-wins', conflict: 'newest-wins', case: 'update/update', newer: 'A', server: A_ROW },
  { strategy: 'newest-wins', conflict: 'newest-wins', case: 'update/delete', newer: 'B', server: B_ROW },
  { strategy: 'newest-wins', conflict: 'newest-wins', case: 'update/delete', newer: 'A', server: null },
  { strategy: 'newest-wins', conflict: 'newest-wins', case: 'delete/update', newer: 'B', server: null },
  { strategy: 'newest-wins', conflict: 'newest-wins', case: 'delete/update', newer: 'A', server: A_ROW },
  { strategy: 'newest-wins', conflict: 'newest-wins', case: 'create/create', newer: 'B', server: B_OVER_A },
  { strategy: 'newest-wins', conflict: 'newest-wins', case: 'create/create', newer: 'A', server: A_CREATED },
  // merge (the contacts configuration): per field; `address` changed by both → newest; `tags` union,
  // the newer side's elements first.
  { strategy: 'merge', conflict: CONTACTS_MERGE, case: 'update/update', newer: 'B', server: { ...BASE, phone: 'pA', email: 'eB', address: 'aB', tags: ['t0', 'b', 'a'] } },
  { strategy: 'merge', conflict: CONTACTS_MERGE, case: 'update/update', newer: 'A', server: { ...BASE, phone: 'pA', email: 'eB', address: 'aA', tags: ['t0', 'a', 'b'] } },
  // An edit beats a deletion, whichever is newer.
  { strategy: 'merge', conflict: CONTACTS_MERGE, case: 'update/delete', newer: 'A', server: B_ROW },
  { strategy: 'merge', conflict: CONTACTS_MERGE, case: 'delete/update', newer: 'B', server: A_ROW },
  // No base: a field one side has is taken from it; `name` (default rule: newest) from the newer.
  { strategy: 'merge', conflict: CONTACTS_MERGE, case: 'create/create', newer: 'B', server: { name: 'B', phone: 'pA', email: 'eB', address: null, tags: ['b', 'x', 'a'] } },
  // The remote side is the server's row, which holds every column: A's unset `email` is there as
  // null, a value, so both sides "have" it and the newer (A's null) wins over B's 'eB'.
  { strategy: 'merge', conflict: CONTACTS_MERGE, case: 'create/create', newer: 'A', server: { name: 'A', phone: 'pA', email: null, address: null, tags: ['x', 'a', 'b'] } },
  // The plain 'merge' strategy: every field newest.
  { strategy: 'merge (plain)', conflict: 'merge', case: 'update/update', newer: 'B', server: { ...BASE, phone: 'pA', email: 'eB', address: 'aB', tags: ['t0', 'b'] } },
  // ask-user: the server keeps A's state; B keeps its own, parked.
  { strategy: 'ask-user', conflict: 'ask-user', case: 'update/update', newer: 'B', server: A_ROW, parked: B_ROW },
  { strategy: 'ask-user', conflict: 'ask-user', case: 'update/delete', newer: 'B', server: null, parked: B_ROW },
  { strategy: 'ask-user', conflict: 'ask-user', case: 'delete/update', newer: 'B', server: A_ROW, parked: null },
  { strategy: 'ask-user', conflict: 'ask-user', case: 'create/create', newer: 'B', server: A_CREATED, parked: B_CREATED },
  // custom: deletion wins; else remote overlaid with local, names joined.
  { strategy: 'custom', conflict: custom, case: 'update/update', newer: 'A', server: { ...B_ROW, name: 'Base+Base' } },
  { strategy: 'custom', conflict: custom, case: 'update/delete', newer: 'A', server: null },
  { strategy: 'custom', conflict: custom, case: 'delete/update', newer: 'A', server: null },
  { strategy: 'custom', conflict: custom, case: 'create/create', newer: 'A', server: { ...B_OVER_A, name: 'A+B' } },
]

/** A's and B's changes for a case. */
async function change(d: Device, who: 'A' | 'B', kind: Case, id: string): Promise<void> {
  const [mine] = kind.split('/').slice(who === 'A' ? 1 : 0) as [string]
  if (mine === 'create') await d.contacts.insert({ id, ...(who === 'A' ? A_NEW : B_NEW), localNotes: who })
  else if (mine === 'update') await d.contacts.update(id, who === 'A' ? A_EDIT : B_EDIT)
  else await d.contacts.delete(id)
}

describe('conflict strategies through the real stack (docs/conflicts.md)', () => {
  it.each(TABLE)('$strategy, $case, $newer newer', async (row) => {
    const world: World = { t: Date.now() }
    const user = newUser()
    const a = device(world, user, row.conflict)
    const b = device(world, user, row.conflict)
    await Promise.all([a.sync.ready, b.sync.ready])
    const id = randomUUID()
    if (row.case !== 'create/create') {
      await a.contacts.insert({ id, ...BASE, localNotes: 'A' })
      await sync(a)
      await settle(stack())
      await sync(b)
      expect(shape(b.contacts.get(id))).toEqual(BASE)
      await b.contacts.update(id, { localNotes: 'B' })
    }
    // The newer change is made second, a second later on the shared clock.
    const order: Array<['A' | 'B', Device]> = row.newer === 'B' ? [['A', a], ['B', b]] : [['B', b], ['A', a]]
    for (const [who, d] of order) {
      world.t += 1000
      await change(d, who, row.case, id)
    }

    await sync(a)
    await sync(b)
    await sync(a)
    await settle(stack())
    await sync(a)
    await sync(b)

    const server = await serverRow(id)
    expect(server).toEqual(row.server)
    expect(shape(a.contacts.get(id))).toEqual(row.server)
    expect(a.contacts.syncState(id) ?? 'synced').toBe('synced')
    expect(a.sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0, conflicts: 0 })
    if (row.parked !== undefined) {
      expect(shape(b.contacts.get(id))).toEqual(row.parked)
      expect(b.contacts.syncState(id)).toBe('conflict')
      expect(b.sync.getConflicts()).toMatchObject([{ collection: 'contacts', recordId: id }])
      expect(b.sync.getSyncStatus()).toMatchObject({ failed: 0, conflicts: 1 })
    } else {
      expect(shape(b.contacts.get(id))).toEqual(row.server)
      expect(b.contacts.syncState(id) ?? 'synced').toBe('synced')
      expect(b.sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0, conflicts: 0 })
      expect(b.events.some((e) => e.type === 'conflict' && e.id === id)).toBe(true)
    }
    // Local-only fields never leave a device and survive every resolution on it.
    const live = b.contacts.get(id)
    if (live) expect(live.localNotes).toBe('B')
    const aLive = a.contacts.get(id)
    if (aLive && row.case !== 'update/delete') expect(aLive.localNotes).toBe('A')
    await Promise.all([a.sync.close(), b.sync.close()])
  }, 60_000)
})

// ── clock skew ───────────────────────────────────────────────────────────────
const HOUR = 3_600_000

/** Polls (host time) until `done` holds; the engine's network work is real I/O. */
async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('newest-wins with a skewed device clock', () => {
  // A write made after seeing another can only meet it in a conflict when the other device still
  // holds its own write as unacknowledged: A's push lands but its answer is lost, then a low-battery
  // background run pulls (without pushing) B's later write on top of it.
  it.each([
    { skewed: 'A', skewMs: HOUR },
    { skewed: 'A', skewMs: -HOUR },
    { skewed: 'B', skewMs: HOUR },
    { skewed: 'B', skewMs: -HOUR },
  ])('device $skewed off by $skewMs ms: the write made after seeing the other wins', async ({ skewed, skewMs }) => {
    const world: World = { t: Date.now() }
    const user = newUser()
    const lossy = responseLosingFetch()
    const a = device(world, user, 'newest-wins', { fetch: lossy.fetch, skewMs: skewed === 'A' ? skewMs : 0 })
    const b = device(world, user, 'newest-wins', { skewMs: skewed === 'B' ? skewMs : 0 })
    await Promise.all([a.sync.ready, b.sync.ready])
    const id = randomUUID()
    await a.contacts.insert({ id, ...BASE })
    await sync(a)
    await settle(stack())
    await sync(b)

    world.t += 1000
    await a.contacts.update(id, { name: 'first (A)' })
    lossy.loseNext()
    expect(await a.sync.forceSyncAll()).toMatchObject({ ok: false })
    expect(lossy.lost()).toBe(1)
    await settle(stack())
    await sync(b)
    expect(b.contacts.get(id)?.name).toBe('first (A)')
    world.t += 1000
    await b.contacts.update(id, { name: 'second (B)' })
    await sync(b)
    await settle(stack())

    // A pulls B's write while its own is still unacknowledged: a newest-wins conflict.
    a.env.setBattery({ level: 0.05, charging: false })
    const seen = a.events.length
    await a.env.advance(900_000)
    await until(() => a.events.slice(seen).some((e) => e.type === 'pulled'), 'the low-battery pull')
    expect(a.events.slice(seen)).toContainEqual(expect.objectContaining({ type: 'conflict', id }))
    expect(a.contacts.get(id)?.name).toBe('second (B)')

    a.env.setBattery({ level: 1, charging: true })
    await sync(a)
    await settle(stack())
    await sync(a)
    await sync(b)
    expect((await serverRow(id))?.name).toBe('second (B)')
    expect(a.contacts.get(id)?.name).toBe('second (B)')
    expect(b.contacts.get(id)?.name).toBe('second (B)')
    for (const d of [a, b]) expect(d.sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0, conflicts: 0 })
    await Promise.all([a.sync.close(), b.sync.close()])
  }, 60_000)
})

describe('ask-user end to end', () => {
  it('the inbox survives a restart, and the merged resolution reaches the other device', async () => {
    const world: World = { t: Date.now() }
    const user = newUser()
    const storage = createMemoryStorage()
    const a = device(world, user, 'ask-user')
    let b = device(world, user, 'ask-user', { storage })
    await Promise.all([a.sync.ready, b.sync.ready])
    const id = randomUUID()
    await a.contacts.insert({ id, ...BASE })
    await sync(a)
    await settle(stack())
    await sync(b)
    await b.contacts.update(id, { localNotes: 'B' })
    world.t += 1000
    await a.contacts.update(id, A_EDIT)
    world.t += 1000
    await b.contacts.update(id, B_EDIT)
    await sync(a)
    await sync(b)
    expect(b.contacts.syncState(id)).toBe('conflict')
    const [parked] = b.sync.getConflicts()
    expect(parked).toMatchObject({ collection: 'contacts', recordId: id })
    expect(shape(parked!.local)).toEqual(B_ROW)
    expect(shape(parked!.remote)).toEqual(A_ROW)
    expect(shape(parked!.base)).toEqual(BASE)

    // A restart: the old instance is abandoned; a new one loads the same storage.
    await b.sync.stopSync()
    b = device(world, user, 'ask-user', { storage })
    await b.sync.ready
    expect(b.sync.getConflicts()).toEqual([parked])
    expect(b.contacts.syncState(id)).toBe('conflict')
    expect(shape(b.contacts.get(id))).toEqual(B_ROW)
    // Held records are not pushed while waiting for a person.
    await sync(b)
    expect((await serverRow(id))).toEqual(A_ROW)

    const merged: Fields = { ...BASE, phone: 'pA', email: 'eB', address: 'chosen', tags: ['t0', 'a', 'b'] }
    await b.sync.resolveConflicts([{ id: parked!.id, choice: 'merged', value: { ...merged } }])
    expect(b.sync.getConflicts()).toEqual([])
    await sync(b)
    await settle(stack())
    await sync(a)
    expect(await serverRow(id)).toEqual(merged)
    expect(shape(a.contacts.get(id))).toEqual(merged)
    expect(shape(b.contacts.get(id))).toEqual(merged)
    expect(b.contacts.get(id)?.localNotes).toBe('B')
    for (const d of [a, b]) {
      expect(d.contacts.syncState(id)).toBe('synced')
      expect(d.sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0, conflicts: 0 })
    }
    // A second restart finds the inbox empty.
    await b.sync.stopSync()
    b = device(world, user, 'ask-user', { storage })
    await b.sync.ready
    expect(b.sync.getConflicts()).toEqual([])
    await Promise.all([a.sync.close(), b.sync.close()])
  }, 60_000)
})
