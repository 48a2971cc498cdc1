/**
 * The stamping triggers a syncable table gets (sync.install_stamp_triggers): skipped only for a row
 * that already holds what sync.stamp_row would give it, so every write ends up stamped exactly as
 * before; and a push's set-based runs write such rows, so the trigger does not run for them.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import pg from 'pg'
import type { Mutation } from '../../src/core/protocol.js'
import { decodePushAnswer, encodePushBody } from '../../src/backends/shared.js'
import { isHlc } from '../../src/core/hlc.js'
import { expectStatus, newUser, useStack } from '../helpers/stack.js'

const stack = useStack()

// Replay a failing property with FC_SEED=<seed printed in the failure>.
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)

/** Runs `body` with a session of its own on the stack's database, closed afterwards. */
async function withSession<T>(body: (session: pg.Client) => Promise<T>): Promise<T> {
  const session = new pg.Client({ connectionString: stack().databaseUrl })
  await session.connect()
  try {
    return await body(session)
  } finally {
    await session.end()
  }
}

/** Runs `body` in a transaction of `session`, rolled back afterwards. */
async function rolledBack<T>(session: pg.Client, body: () => Promise<T>): Promise<T> {
  await session.query('begin')
  try {
    return await body()
  } finally {
    await session.query('rollback')
  }
}

/** A stamp `ms` milliseconds from now, with `counter` and `node`. */
const stampAt = (ms: number, counter = 0, node = 'dev'): string =>
  `${String(Date.now() + ms).padStart(15, '0')}:${String(counter).padStart(5, '0')}:${node}`

/** What a write sets of a sync column: left out, or an SQL expression. */
type Setting = string | undefined

/** One write, applied alike to both tables. */
type Write =
  | { kind: 'insert'; key: number; version: Setting; deleted: Setting; xid: Setting; at: Setting; hlc: Setting }
  | { kind: 'update'; key: number; version: Setting; xid: Setting; at: Setting; hlc: Setting; deleted: Setting }

describe('stamping triggers', () => {
  it('leave every row as sync.stamp_row would, whatever a write sets of the sync columns (property)', async () => {
    // `fast` has the installed triggers; `ref` runs stamp_row on every write, as before they had a
    // WHEN. The same writes go to both in one transaction (same xid, same now()).
    await stack().query(`
      create table if not exists public.stamp_fast (id int primary key, name text);
      create table if not exists public.stamp_ref (id int primary key, name text);
      select sync_enable_table('public.stamp_fast', null);
      select sync_enable_table('public.stamp_ref', null);
      drop trigger if exists sync_stamp on public.stamp_ref;
      drop trigger if exists sync_stamp_update on public.stamp_ref;
      create trigger sync_stamp_always before insert or update on public.stamp_ref for each row execute function sync.stamp_row();`)
    const hlc = fc.constantFrom<Setting>(
      undefined,
      'null',
      `'${stampAt(-60_000, 3)}'`,
      `'${stampAt(60_000, 1)}'`,
      `'${stampAt(3 * 86_400_000)}'`, // over a day ahead: not kept
      `'${stampAt(0, 1, 'a b')}'`, // malformed node
      `'${stampAt(0).slice(0, 10)}'`, // malformed
      `_hlc`, // unchanged (updates): not past the old stamp
    )
    const version = fc.constantFrom<Setting>(undefined, '1', '2', '_version + 1', '_version', '7')
    const xid = fc.constantFrom<Setting>(undefined, 'pg_catalog.pg_current_xact_id()', `'1'::xid8`, '_xid')
    const at = fc.constantFrom<Setting>(undefined, 'pg_catalog.now()', `'2000-01-01T00:00:00Z'`, 'updated_at')
    const deleted = fc.constantFrom<Setting>(undefined, 'false', 'true')
    const key = fc.integer({ min: 1, max: 4 })
    const write: fc.Arbitrary<Write> = fc.oneof(
      fc.record({ kind: fc.constant('insert' as const), key, version, deleted, xid, at, hlc }),
      fc.record({ kind: fc.constant('update' as const), key, version, deleted, xid, at, hlc }),
    )
    await withSession((session) =>
      fc.assert(
        fc.asyncProperty(fc.array(write, { minLength: 1, maxLength: 12 }), (writes) =>
          rolledBack(session, async () => {
            for (const w of writes) {
              // A column expression an insert cannot use (it names the row's own value) leaves the column out.
              const own = (s: Setting): boolean => s !== undefined && /^(_version|_xid|_hlc|updated_at)\b/.test(s)
              const columns: Array<[string, Setting]> = [['_version', w.version], ['_deleted', w.deleted], ['_xid', w.xid], ['updated_at', w.at], ['_hlc', w.hlc]]
              for (const table of ['stamp_fast', 'stamp_ref']) {
                if (w.kind === 'insert') {
                  const set = columns.filter(([, s]) => s !== undefined && !own(s))
                  await session.query(
                    `insert into public.${table} (id, name${set.map(([c]) => `, ${c}`).join('')}) values ($1, 'n'${set.map(([, s]) => `, ${s}`).join('')})
                     on conflict (id) do nothing`,
                    [w.key],
                  )
                } else {
                  const set = columns.filter(([, s]) => s !== undefined)
                  await session.query(`update public.${table} set name = 'u'${set.map(([c, s]) => `, ${c} = ${s}`).join('')} where id = $1`, [w.key])
                }
              }
            }
            const rows = (table: string) =>
              session.query(`select id, _version, _deleted, _xid::text as xid, updated_at = pg_catalog.now() as now, updated_at, _hlc from public.${table} order by id`)
            const [fast, ref] = [(await rows('stamp_fast')).rows, (await rows('stamp_ref')).rows]
            // A server stamp comes from the clock when the trigger runs: the same rule, not the same value.
            const shape = (r: Record<string, unknown>) => ({ ...r, _hlc: String(r._hlc).endsWith(':server') ? 'server' : r._hlc })
            expect(fast.map(shape)).toEqual(ref.map(shape))
          })),
        { seed, numRuns: 60 },
      ))
  })

  it("keep a writer's stamp exactly when the devices' format says it is one (property)", async () => {
    // Stamps in the past, built from near-misses of the format: walls and counters one digit
    // short or long, another separator, node ids with a space, a colon, non-ASCII, too long.
    const digits = (n: number) => fc.stringMatching(new RegExp(`^[0-9]{${n}}$`))
    // (A wall of 15 digits is never ahead of the server's clock: only the form decides.)
    const wall = fc.oneof(
      fc.integer({ min: 0, max: Date.now() }).map((ms) => String(ms).padStart(15, '0')),
      fc.constantFrom(13, 14, 16, 17).chain((n) => digits(n)),
    )
    const counter = fc.integer({ min: 4, max: 6 }).chain((n) => digits(n))
    const node = fc.oneof(
      fc.stringMatching(/^[!-9;-~]{1,8}$/),
      fc.string({ minLength: 0, maxLength: 6 }),
      fc.constantFrom('a b', 'a:b', 'é', 'n'.repeat(128), 'n'.repeat(129), ''),
    )
    const sep = fc.constantFrom(':', ':', ':', ';', '')
    const stamp = fc.tuple(wall, sep, counter, sep, node).map((parts) => parts.join(''))
    await stack().query(`
      create table if not exists public.stamp_form (id int primary key, name text);
      select sync_enable_table('public.stamp_form', null);`)
    await withSession((session) =>
      fc.assert(
        fc.asyncProperty(fc.array(stamp, { minLength: 1, maxLength: 20 }), (stamps) =>
          rolledBack(session, async () => {
            const { rows } = await session.query<{ hlc: string; valid: boolean; kept: string }>(
              `with ins as (insert into public.stamp_form (id, name, _hlc) select n, 'x', h from unnest($1::text[]) with ordinality u(h, n) returning id, _hlc)
               select u.h as hlc, sync.hlc_is_valid(u.h) as valid, i._hlc as kept from unnest($1::text[]) with ordinality u(h, n) join ins i on i.id = u.n order by u.n`,
              [stamps],
            )
            for (const row of rows) {
              expect({ hlc: row.hlc, valid: row.valid, kept: row.kept === row.hlc }).toEqual({ hlc: row.hlc, valid: isHlc(row.hlc), kept: isHlc(row.hlc) })
            }
          })),
        { seed, numRuns: 40 },
      ))
  })

  it('run for a write made by another trigger, which marks its transaction as not only a device\'s own', async () => {
    await stack().query(`
      create table if not exists public.stamp_src (id int primary key);
      create table if not exists public.stamp_dst (id int primary key, name text);
      select sync_enable_table('public.stamp_dst', null);
      create or replace function public.stamp_copy() returns trigger language plpgsql as $$
      begin
        -- Every sync column as stamp_row would set it: still, a write from a trigger is stamped.
        insert into public.stamp_dst (id, name, _hlc) values (new.id, 'copied', '${stampAt(-1000)}');
        return new;
      end $$;
      create or replace trigger stamp_copy after insert on public.stamp_src for each row execute function public.stamp_copy();`)
    await withSession((session) =>
      rolledBack(session, async () => {
        const marked = async () => (await session.query(`select current_setting('sync.foreign_write', true) as f`)).rows[0].f === 'on'
        await session.query(`insert into public.stamp_dst (id, name, _hlc) values (1, 'direct', '${stampAt(-1000)}')`)
        expect(await marked()).toBe(false)
        await session.query('insert into public.stamp_src (id) values (2)')
        expect(await marked()).toBe(true)
      }))
  })

  it('replace the one trigger of a table made syncable by an earlier version when the migration runs again', async () => {
    await stack().query(`
      create table if not exists public.stamp_old (id int primary key, name text);
      select sync_enable_table('public.stamp_old', null);
      drop trigger sync_stamp_update on public.stamp_old;
      create or replace trigger sync_stamp before insert or update on public.stamp_old for each row execute function sync.stamp_row();`)
    const triggers = () =>
      stack().query<{ name: string; insert: boolean; update: boolean; when: boolean }>(`
        select tgname as name, (tgtype & 4) <> 0 as insert, (tgtype & 16) <> 0 as update, tgqual is not null as when
          from pg_catalog.pg_trigger where tgrelid = 'public.stamp_old'::regclass and tgname like 'sync_stamp%' order by tgname`)
    expect(await triggers()).toEqual([{ name: 'sync_stamp', insert: true, update: true, when: false }])
    await stack().query(readFileSync(fileURLToPath(new URL('../../sql/sync_orchestrator.sql', import.meta.url)), 'utf8'))
    expect(await triggers()).toEqual([
      { name: 'sync_stamp', insert: true, update: false, when: true },
      { name: 'sync_stamp_update', insert: false, update: true, when: true },
    ])
  })

  it("are not run for the rows of a push's set-based runs, which are stamped as the trigger would", async () => {
    await stack().query(`
      create table if not exists public.stamp_runs (id uuid primary key, user_id uuid default auth.uid(), name text);
      alter table public.stamp_runs enable row level security;
      drop policy if exists stamp_runs_all on public.stamp_runs;
      create policy stamp_runs_all on public.stamp_runs to authenticated using (user_id = auth.uid()) with check (user_id = auth.uid());
      grant select, insert, update on public.stamp_runs to authenticated;
      select sync_enable_table('public.stamp_runs', 'user_id');`)
    const user = newUser()
    const clientId = randomUUID()
    const n = 40
    const ids = Array.from({ length: n }, () => randomUUID())
    await withSession(async (session) => {
      // How many times stamp_row ran in the session. (The view holds the session's counts not yet
      // reported, which may span transactions: a push's count is a difference within its transaction.)
      const stampCalls = async (): Promise<number> =>
        Number((await session.query(`select coalesce(sum(calls), 0) as calls from pg_stat_xact_user_functions where schemaname = 'sync' and funcname = 'stamp_row'`)).rows[0].calls)
      /** Pushes `run` as `user` in one transaction; its outcomes, how many times stamp_row ran, the transaction's id and time. */
      const pushCounted = async (run: Mutation[]) => {
        await session.query('begin')
        await session.query(`set local track_functions = 'pl'`)
        const before = await stampCalls()
        await session.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: user, role: 'authenticated' })])
        await session.query('set local role authenticated')
        const { rows } = await session.query('select public.sync_push_runs($1::jsonb) as a', [JSON.stringify(encodePushBody(clientId, run))])
        await session.query('reset role')
        const calls = (await stampCalls()) - before
        const [own] = (await session.query(`select pg_catalog.pg_current_xact_id()::text as xid, pg_catalog.now() as now`)).rows
        await session.query('commit')
        return { outcomes: decodePushAnswer(rows[0].a, run), calls, xid: own.xid as string, now: own.now as Date }
      }
      let seq = 0
      const stamp = (k: number, ms: number) => stampAt(ms, k, 'runs')
      const creates: Mutation[] = ids.map((id, k) => ({ seq: ++seq, table: 'stamp_runs', action: 'create', id, data: { id, name: 'a' }, baseVersion: null, hlc: stamp(k, -5000) }))
      const updates: Mutation[] = ids.map((id, k) => ({ seq: ++seq, table: 'stamp_runs', action: 'update', id, data: { name: 'b' }, baseVersion: 1, hlc: stamp(k, -4000) }))
      const deletes: Mutation[] = ids.map((id, k) => ({ seq: ++seq, table: 'stamp_runs', action: 'delete', id, baseVersion: 2, hlc: stamp(k, -3000) }))
      for (const [run, version] of [[creates, 1], [updates, 2], [deletes, 3]] as const) {
        const { outcomes, calls, xid, now } = await pushCounted(run)
        outcomes.forEach((outcome, k) => expect(expectStatus(outcome, 'applied')).toMatchObject({ version, hlc: run[k]!.hlc }))
        expect(calls, run[0]!.action).toBe(0)
        const rows = await stack().query<{ v: string; x: string; at: Date; d: boolean }>(
          'select _version as v, _xid::text as x, updated_at as at, _deleted as d from public.stamp_runs where user_id = $1', [user])
        expect(rows).toHaveLength(n)
        for (const row of rows) expect(row).toEqual({ v: String(version), x: xid, at: now, d: version === 3 })
      }

      // A stamp the trigger would not keep (a day ahead, or not past the row's) makes it run, for that row only.
      const more = [randomUUID(), randomUUID()]
      const { calls: createCalls, outcomes: created } = await pushCounted(more.map((id, k) => ({
        seq: ++seq, table: 'stamp_runs', action: 'create', id, data: { id, name: 'c' }, baseVersion: null, hlc: k === 0 ? stampAt(2 * 86_400_000) : stampAt(-1000),
      })))
      expect(createCalls).toBe(1)
      expect(expectStatus(created[0], 'applied').hlc).toMatch(/:server$/)
      const { calls: updateCalls, outcomes: updated } = await pushCounted(more.map((id, k) => ({
        seq: ++seq, table: 'stamp_runs', action: 'update', id, data: { name: 'd' }, baseVersion: 1, hlc: k === 0 ? stampAt(-1000) : stampAt(-2000),
      })))
      // The first row's stamp is a server one from the day-ahead create; the second's is older than its row's.
      expect(updateCalls).toBe(2)
      expect(updated.map((o) => expectStatus(o, 'applied').hlc!.endsWith(':server'))).toEqual([true, true])
      expect(updated.map((o) => expectStatus(o, 'applied').version)).toEqual([2, 2])
    })
  })
})
