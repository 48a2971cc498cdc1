/**
 * Convergence under every deterministic conflict strategy, through the real stack: three devices of
 * one user write to a small shared set of records, go offline and sync in random orders; once all
 * sync until quiescent, every device holds exactly the server's rows, and no write is lost except
 * the way the strategy says.
 *
 * Replay a failure with `FC_SEED=<seed> npx vitest run test/integration/conflicts.property.test.ts`.
 */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { createSyncOrchestrator } from '../../src/core/orchestrator.js'
import { createSupabaseBackend } from '../../src/backends/supabase/index.js'
import { createMemoryStorage } from '../../src/storage/memory.js'
import { createManualEnvironment, type ManualEnvironment } from '../../src/env/manual.js'
import type { CollectionConfig } from '../../src/core/types.js'
import type { Row } from '../../src/core/protocol.js'
import { newUser, settle, useStack } from '../helpers/stack.js'

const stack = useStack()
const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined
const HOUR = 3_600_000
// A few runs per strategy keep the file well under a minute on PGlite; raise FC_RUNS to search harder.
const numRuns = Number(process.env.FC_RUNS ?? 15)
const FIELDS = ['name', 'phone', 'email', 'tags'] as const

interface Fields {
  name: string
  phone: string | null
  email: string | null
  tags: string[]
}

const STRATEGIES: Array<{ name: string; conflict: unknown }> = [
  { name: 'local-wins', conflict: 'local-wins' },
  { name: 'remote-wins', conflict: 'remote-wins' },
  { name: 'newest-wins', conflict: 'newest-wins' },
  {
    name: 'merge',
    conflict: { merge: { localOnly: ['localNotes'], fields: { phone: 'newest', email: 'newest', tags: 'union' } } },
  },
]

type Op =
  | { kind: 'write'; dev: number; rec: number; field: (typeof FIELDS)[number] }
  | { kind: 'delete'; dev: number; rec: number }
  | { kind: 'sync'; dev: number }
  | { kind: 'toggle'; dev: number }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), dev: fc.nat(2), rec: fc.nat(2), field: fc.constantFrom(...FIELDS) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), dev: fc.nat(2), rec: fc.nat(2) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('sync' as const), dev: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('toggle' as const), dev: fc.nat(2) }) },
)

function shape(row: Row): Fields {
  return {
    name: row.name as string,
    phone: (row.phone as string | undefined) ?? null,
    email: (row.email as string | undefined) ?? null,
    tags: (row.tags as string[] | undefined) ?? [],
  }
}

async function serverRows(user: string): Promise<{ live: Map<string, Fields>; gone: Set<string> }> {
  const rows = await stack().query<Fields & { id: string; _deleted: boolean }>(
    'select id::text, name, phone, email, tags, _deleted from public.contacts where user_id = $1',
    [user],
  )
  const live = new Map<string, Fields>()
  const gone = new Set<string>()
  for (const r of rows) {
    if (r._deleted) gone.add(r.id)
    else live.set(r.id, shape(r as unknown as Row))
  }
  return { live, gone }
}

describe('convergence of three devices under each deterministic strategy (real stack)', () => {
  it.each(STRATEGIES)('$name', async ({ name: strategy, conflict }) => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 6, maxLength: 22 }),
        fc.tuple(fc.constantFrom(-HOUR, 0, HOUR), fc.constantFrom(-HOUR, 0, HOUR), fc.constantFrom(-HOUR, 0, HOUR)),
        async (ops, skews) => {
          const user = newUser()
          // Fresh ids each run: ids are global across users, and another user's row is invisible.
          const IDS = [randomUUID(), randomUUID(), randomUUID()]
          const world = { t: Date.now() }
          const config: CollectionConfig = typeof conflict === 'object' ? { conflict } : { conflict, localOnly: ['localNotes'] }
          const devices = skews.map((skew) => {
            const manual = createManualEnvironment({ now: world.t })
            // Timers stay with the (never advanced) manual environment: only explicit syncs run.
            const env: ManualEnvironment = { ...manual, now: () => world.t + skew }
            const sync = createSyncOrchestrator({
              storage: createMemoryStorage(),
              backend: createSupabaseBackend({ client: stack().createClient(user) }),
              environment: env,
              collections: { contacts: config },
            })
            return { sync, env, contacts: sync.collection('contacts') }
          })
          await Promise.all(devices.map((d) => d.sync.ready))

          // What was written, to tell a lost write from one the strategy discarded.
          const snapshots = new Map<string, string[]>() // id → whole-row snapshots after each local write
          const written = new Map<string, Set<string>>() // `${id}/${field}` → every value any device wrote
          const deletedBySomeone = new Set<string>()
          const note = (id: string, row: Fields): void => {
            snapshots.set(id, [...(snapshots.get(id) ?? []), JSON.stringify(row)])
            for (const f of FIELDS) {
              const key = `${id}/${f}`
              const values = written.get(key) ?? new Set<string>()
              for (const v of f === 'tags' ? row.tags : [row[f]]) values.add(JSON.stringify(v))
              written.set(key, values)
            }
          }
          let n = 0
          for (const op of ops) {
            world.t += 100
            const d = devices[op.dev]!
            if (op.kind === 'toggle') d.env.setOnline(!d.env.isOnline())
            else if (op.kind === 'sync') {
              await settle(stack())
              await d.sync.forceSyncAll()
            } else {
              const id = IDS[op.rec]!
              const current = d.contacts.get(id)
              const value = `d${op.dev}-${n++}`
              if (op.kind === 'delete') {
                if (current) {
                  await d.contacts.delete(id)
                  deletedBySomeone.add(id)
                }
              } else if (!current) {
                // Every create names every field, so a whole row always comes from one write.
                const row = await d.contacts.insert({ id, name: value, phone: value, email: value, tags: [value], localNotes: `d${op.dev}` })
                note(id, shape(row))
              } else {
                const patch = op.field === 'tags' ? { tags: [...((current.tags as string[] | undefined) ?? []).slice(-1), value] } : { [op.field]: value }
                note(id, shape(await d.contacts.update(id, patch)))
              }
            }
          }

          // Quiescence: everyone online; rounds of syncs (after `settle`, so every pull sees every
          // committed push) until a round starts with nothing queued anywhere, which then is a
          // round of pure pulls.
          for (const d of devices) d.env.setOnline(true)
          for (let round = 0; ; round++) {
            const quiet = devices.every((d) => d.sync.getSyncStatus().queueLength === 0)
            await settle(stack())
            for (const d of devices) expect(await d.sync.forceSyncAll()).toMatchObject({ ok: true })
            if (quiet) break
            if (round > 8) throw new Error('devices did not become quiescent')
          }

          const server = await serverRows(user)
          for (const d of devices) {
            expect(new Map(d.contacts.list().map((r) => [r.id as string, shape(r)]))).toEqual(server.live)
            expect(d.sync.getSyncStatus()).toMatchObject({ queueLength: 0, failed: 0, conflicts: 0 })
          }
          // Nothing disappears unless some device deleted it.
          for (const id of server.gone) expect(deletedBySomeone.has(id)).toBe(true)
          for (const id of IDS) if (snapshots.has(id) && !server.live.has(id)) expect(deletedBySomeone.has(id)).toBe(true)

          for (const [id, row] of server.live) {
            if (strategy === 'merge') {
              // Field-level merge combines writes, so the row may be no device's; but each value
              // (each tag) is one some device wrote to that very field: nothing is invented or moved.
              for (const f of FIELDS) {
                const values = written.get(`${id}/${f}`)
                for (const v of f === 'tags' ? row.tags : [row[f]]) expect(values?.has(JSON.stringify(v)), `${id}.${f} = ${JSON.stringify(v)}`).toBe(true)
              }
            } else {
              // local-wins, remote-wins and newest-wins each pick a whole side: the server row is
              // exactly a row some device held right after one of its writes (the last one to be
              // applied), never a mix of two devices' rows nor a write applied on a stale row.
              expect(snapshots.get(id) ?? []).toContain(JSON.stringify(row))
            }
          }
          await Promise.all(devices.map((d) => d.sync.close()))
        },
      ),
      { seed, numRuns },
    )
  }, 240_000)
})
