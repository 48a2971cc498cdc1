/**
 * sync_push and sync_push_runs through supabase-js and PostgREST: outcomes, exactly-once retries,
 * conflicts, and per-mutation rejection, for a batch given as a list of mutations and as runs.
 */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import pg from 'pg'
import type { SupabaseClient } from '@supabase/supabase-js'
import type { Mutation } from '../../src/core/protocol.js'
import { decodePushAnswer, encodePushBody } from '../../src/backends/shared.js'
import {
  PGLITE_ONE_SESSION,
  createContact,
  expectStatus,
  newUser,
  onRealPostgres,
  pullAll,
  push as pushList,
  pushRuns,
  responseLosingFetch,
  sequence,
  useStack,
} from '../helpers/stack.js'

const stack = useStack()

const FORMATS = [
  { name: 'sync_push, a list of mutations', push: pushList },
  { name: 'sync_push_runs, runs (what the backends send)', push: pushRuns },
]

describe.each(FORMATS)('$name', ({ push }) => {
  it('creates, updates and deletes a row, bumping its version each time', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const seq = sequence()
    const id = randomUUID()

    const [created] = await push(client, clientId, [
      createContact(seq(), { tags: ['family'], phone: '123' }, id),
    ])
    const applied = expectStatus(created, 'applied')
    expect(applied.version).toBe(1)
    expect(applied.row).toMatchObject({ id, name: 'contact 1', tags: ['family'], phone: '123', user_id: user })
    expect(applied.row).not.toHaveProperty('_version')
    expect(applied.row).not.toHaveProperty('_xid')
    expect(applied.row).not.toHaveProperty('_deleted')
    expect(applied.row).not.toHaveProperty('_hlc')
    expect(applied.hlc).toMatch(/^\d{15}:\d{5}:server$/)

    const [updated] = await push(client, clientId, [
      { seq: seq(), table: 'contacts', action: 'update', id, data: { phone: '456' }, baseVersion: 1 },
    ])
    expect(expectStatus(updated, 'applied')).toMatchObject({ version: 2, row: { phone: '456', name: 'contact 1' } })

    const [deleted] = await push(client, clientId, [
      { seq: seq(), table: 'contacts', action: 'delete', id, baseVersion: 2 },
    ])
    expect(expectStatus(deleted, 'applied').version).toBe(3)

    const rows = await stack().query<{ _version: string; _deleted: boolean; phone: string }>(
      'select _version, _deleted, phone from contacts where id = $1',
      [id],
    )
    expect(rows).toEqual([{ _version: '3', _deleted: true, phone: '456' }])
  })

  it('keeps a newer writer clock stamp and stamps past an older one', async () => {
    const client = stack().createClient(newUser())
    const clientId = randomUUID()
    const id = randomUUID()
    const future = `${String(Date.now() + 60_000).padStart(15, '0')}:00007:device-a`
    const [created] = await push(client, clientId, [{ ...createContact(1, {}, id), hlc: future }])
    expect(expectStatus(created, 'applied').hlc).toBe(future)

    const older = `${String(Date.now() - 60_000).padStart(15, '0')}:00000:device-b`
    const [updated] = await push(client, clientId, [
      { seq: 2, table: 'contacts', action: 'update', id, data: { name: 'b' }, baseVersion: 1, hlc: older },
    ])
    const stamp = expectStatus(updated, 'applied').hlc!
    expect(stamp > future).toBe(true)
    expect(stamp.endsWith(':server')).toBe(true)

    // A node id of up to 128 characters, printable and without ':', is kept; anything else is not.
    const wall = String(Date.now() + 120_000).padStart(15, '0')
    const stamps = [`${wall}:00001:${'n'.repeat(128)}`, `${wall}:00002:${'n'.repeat(129)}`, `${wall}:00003:a b`, `${wall}:3:node`]
    const outcomes = await push(client, clientId, stamps.map((hlc, i) => ({ ...createContact(3 + i), hlc })))
    expect(outcomes.map((o) => expectStatus(o, 'applied').hlc!.endsWith(':server'))).toEqual([false, true, true, true])
    expect(expectStatus(outcomes[0], 'applied').hlc).toBe(stamps[0])

    // A run of creates, then of updates of the same rows (set-based through sync_push_runs); a stamp
    // over a day ahead of the server's clock is not kept either.
    const dayAhead = `${String(Date.now() + 2 * 86_400_000).padStart(15, '0')}:00000:node`
    const more = [...stamps, dayAhead]
    const ids = more.map(() => randomUUID())
    const creates = await push(client, clientId, more.map((hlc, i) => ({ ...createContact(10 + i, {}, ids[i]), hlc })))
    expect(creates.map((o) => expectStatus(o, 'applied').hlc!.endsWith(':server'))).toEqual([false, true, true, true, true])
    expect(expectStatus(creates[0], 'applied').hlc).toBe(stamps[0])
    const later = String(Date.now() + 180_000).padStart(15, '0')
    const updates = await push(client, clientId, [`${later}:00001:node`, `${later}:1:node`, dayAhead].map((hlc, i) => ({
      seq: 20 + i, table: 'contacts', action: 'update', id: ids[i + 2]!, data: { name: 'u' }, baseVersion: 1, hlc,
    })))
    expect(updates.map((o) => expectStatus(o, 'applied').hlc)).toEqual([`${later}:00001:node`, expect.stringMatching(/:server$/), expect.stringMatching(/:server$/)])
  })

  it('applies a batch once when its response is lost and the batch is retried', async () => {
    const user = newUser()
    const faults = responseLosingFetch()
    const client = stack().createClient(user, { fetch: faults.fetch })
    const clientId = randomUUID()
    const contact = randomUUID()
    await push(client, clientId, [createContact(1, { name: 'before' }, contact)])

    const batch: Mutation[] = [
      createContact(2, { name: 'new' }),
      { seq: 3, table: 'contacts', action: 'update', id: contact, data: { name: 'after' }, baseVersion: 1 },
      { seq: 4, table: 'notes', action: 'create', id: 'local-note-1', data: { body: 'server id' }, baseVersion: null },
    ]
    faults.loseNext()
    await expect(push(client, clientId, batch)).rejects.toThrow()
    expect(faults.lost()).toBe(1)

    // The lost attempt committed.
    const versionsAfterLoss = await stack().query<{ id: string; _version: string }>(
      'select id::text, _version from contacts where user_id = $1 union all select id::text, _version from notes where user_id = $1 order by 1',
      [user],
    )
    expect(versionsAfterLoss).toHaveLength(3)

    const retried = await push(client, clientId, batch)
    const again = await push(client, clientId, batch)
    expect(again).toEqual(retried)
    expect(retried.map((o) => o.status)).toEqual(['applied', 'applied', 'applied'])
    expect(expectStatus(retried[1], 'applied').version).toBe(2)

    const versionsAfterRetry = await stack().query<{ id: string; _version: string }>(
      'select id::text, _version from contacts where user_id = $1 union all select id::text, _version from notes where user_id = $1 order by 1',
      [user],
    )
    expect(versionsAfterRetry).toEqual(versionsAfterLoss)
    const [noteCount] = await stack().query<{ n: string }>('select count(*) as n from notes where user_id = $1', [user])
    expect(noteCount!.n).toBe('1')
  })

  it('answers a stale base version with a conflict carrying the current row', async () => {
    const client = stack().createClient(newUser())
    const clientId = randomUUID()
    const id = randomUUID()
    await push(client, clientId, [createContact(1, { name: 'v1' }, id)])
    await push(client, clientId, [{ seq: 2, table: 'contacts', action: 'update', id, data: { name: 'v2' }, baseVersion: 1 }])

    const [update, remove] = await push(client, clientId, [
      { seq: 3, table: 'contacts', action: 'update', id, data: { name: 'stale' }, baseVersion: 1 },
      { seq: 4, table: 'contacts', action: 'delete', id, baseVersion: 1 },
    ])
    for (const outcome of [update, remove]) {
      const conflict = expectStatus(outcome, 'conflict')
      expect(conflict).toMatchObject({ version: 2, deleted: false, row: { id, name: 'v2' } })
      expect(conflict.row).not.toHaveProperty('_version')
    }
    const [row] = await stack().query<{ name: string; _version: string }>('select name, _version from contacts where id = $1', [id])
    expect(row).toEqual({ name: 'v2', _version: '2' })
  })

  it('answers a create of an existing id, tombstones included, with a conflict', async () => {
    const client = stack().createClient(newUser())
    const clientId = randomUUID()
    const id = randomUUID()
    await push(client, clientId, [createContact(1, { name: 'first' }, id)])
    const [dup] = await push(client, clientId, [createContact(2, { name: 'second' }, id)])
    expect(expectStatus(dup, 'conflict')).toMatchObject({ version: 1, deleted: false, row: { name: 'first' } })

    await push(client, clientId, [{ seq: 3, table: 'contacts', action: 'delete', id, baseVersion: null }])
    const [onTombstone] = await push(client, clientId, [createContact(4, { name: 'third' }, id)])
    expect(expectStatus(onTombstone, 'conflict')).toMatchObject({ version: 2, deleted: true, row: { name: 'first' } })
  })

  it("answers the creates of a run whose ids exist (its own row, another user's) and applies the rest", async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const own = randomUUID()
    const foreign = randomUUID()
    await push(client, clientId, [createContact(1, { name: 'own' }, own)])
    await stack().query('insert into contacts (id, name, user_id) values ($1, $2, $3)', [foreign, 'foreign', newUser()])
    const fresh = [randomUUID(), randomUUID(), randomUUID()]
    const outcomes = await push(client, clientId, [
      createContact(2, { name: 'n1' }, fresh[0]),
      createContact(3, { name: 'again' }, own),
      createContact(4, { name: 'n2' }, fresh[1]),
      createContact(5, { name: 'taken' }, foreign),
      createContact(6, { name: 'n3' }, fresh[2]),
    ])
    expect(outcomes.map((x) => x.status)).toEqual(['applied', 'conflict', 'applied', 'rejected', 'applied'])
    expect(expectStatus(outcomes[1], 'conflict')).toMatchObject({ version: 1, row: { name: 'own' } })
    expect(expectStatus(outcomes[3], 'rejected').code).toBe('23505')
    const rows = await stack().query<{ id: string; name: string }>('select id, name from contacts where id = any($1) order by name', [[...fresh, own, foreign]])
    expect(rows.map((r) => r.name)).toEqual(['foreign', 'n1', 'n2', 'n3', 'own'])
  })

  it('rejects a NOT NULL or CHECK violation with its SQLSTATE and applies the rest of the batch', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const good1 = randomUUID()
    const good2 = randomUUID()
    const outcomes = await push(client, clientId, [
      createContact(1, { name: 'ok 1' }, good1),
      { seq: 2, table: 'contacts', action: 'create', id: randomUUID(), data: { name: null }, baseVersion: null },
      { seq: 3, table: 'notes', action: 'create', id: 'n1', data: { body: 'x'.repeat(1000) }, baseVersion: null },
      { seq: 4, table: 'contacts', action: 'create', id: randomUUID(), data: { name: 'x', nickname: 'unknown column' }, baseVersion: null },
      createContact(5, { name: 'ok 2' }, good2),
    ])
    expect(outcomes.map((o) => o.seq)).toEqual([1, 2, 3, 4, 5])
    expect(expectStatus(outcomes[1], 'rejected').code).toBe('23502')
    expect(expectStatus(outcomes[2], 'rejected').code).toBe('23514')
    expect(expectStatus(outcomes[3], 'rejected').code).toBe('42703')
    expectStatus(outcomes[0], 'applied')
    expectStatus(outcomes[4], 'applied')

    const rows = await stack().query<{ id: string }>('select id from contacts where user_id = $1 order by name', [user])
    expect(rows.map((r) => r.id)).toEqual([good1, good2])
    const notes = await stack().query('select 1 from notes where user_id = $1', [user])
    expect(notes).toHaveLength(0)

    // The outcomes are stored: a retry, even with other contents, re-runs nothing and gets them back.
    // (A device never changes a sent mutation; with runs, rows are completed from what it sends.)
    const retried = await push(client, clientId, outcomes.map((_, i) => createContact(i + 1)))
    const summary = (o: (typeof outcomes)[number]) => [o.seq, o.status, o.status === 'rejected' ? o.code : o.status === 'deferred' ? null : o.version]
    expect(retried.map(summary)).toEqual(outcomes.map(summary))
    const names = await stack().query('select name from contacts where user_id = $1 order by name', [user])
    expect(names).toEqual([{ name: 'ok 1' }, { name: 'ok 2' }])
  })

  it('assigns the id of a server-keyed table and returns the same id on retry', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const batch: Mutation[] = [
      { seq: 1, table: 'notes', action: 'create', id: 'local-a', data: { body: 'a', id: 999_999 }, baseVersion: null },
      { seq: 2, table: 'notes', action: 'create', id: 'local-b', data: { body: 'b' }, baseVersion: null },
    ]
    const first = await push(client, clientId, batch)
    const ids = first.map((o) => expectStatus(o, 'applied').row!.id)
    expect(ids.every((id) => typeof id === 'number' && id !== 999_999)).toBe(true)
    expect(new Set(ids).size).toBe(2)

    const retry = await push(client, clientId, batch)
    expect(retry.map((o) => expectStatus(o, 'applied').row!.id)).toEqual(ids)
    const rows = await stack().query<{ id: string }>('select id from notes where user_id = $1 order by id', [user])
    expect(rows.map((r) => Number(r.id))).toEqual([...ids].sort((a, b) => Number(a) - Number(b)))

    // Later writes address the row by its server id.
    const [update] = await push(client, clientId, [
      { seq: 3, table: 'notes', action: 'update', id: String(ids[0]), data: { body: 'a2' }, baseVersion: 1 },
    ])
    expect(expectStatus(update, 'applied').row).toMatchObject({ id: ids[0], body: 'a2' })
  })

  it('writes only the fields it is given, ignores sync columns, and keeps defaults', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const id = randomUUID()
    const [created] = await push(client, clientId, [
      createContact(1, { email: 'a@example.com', _version: 42, _deleted: true, _xid: '1', _hlc: 'bogus' }, id),
    ])
    expect(expectStatus(created, 'applied')).toMatchObject({ version: 1, row: { user_id: user, tags: [] } })
    expect(Object.keys(expectStatus(created, 'applied').row!).filter((key) => key.startsWith('_'))).toEqual([])
    await push(client, clientId, [{ seq: 2, table: 'contacts', action: 'update', id, data: { phone: '1' }, baseVersion: null }])
    const [row] = await stack().query('select email, phone, _deleted, _version from contacts where id = $1', [id])
    expect(row).toEqual({ email: 'a@example.com', phone: '1', _deleted: false, _version: '2' })
  })

  it('treats deletes as soft, idempotent in effect, and missing rows as P0002', async () => {
    const client = stack().createClient(newUser())
    const clientId = randomUUID()
    const id = randomUUID()
    await push(client, clientId, [createContact(1, {}, id)])
    const [first, second, missingUpdate, missingDelete] = await push(client, clientId, [
      { seq: 2, table: 'contacts', action: 'delete', id, baseVersion: 1 },
      { seq: 3, table: 'contacts', action: 'delete', id, baseVersion: 1 },
      { seq: 4, table: 'contacts', action: 'update', id: randomUUID(), data: { name: 'x' }, baseVersion: null },
      { seq: 5, table: 'contacts', action: 'delete', id: randomUUID(), baseVersion: null },
    ])
    expect(expectStatus(first, 'applied').version).toBe(2)
    expect(expectStatus(second, 'applied').version).toBe(2)
    expect(expectStatus(missingUpdate, 'rejected').code).toBe('P0002')
    expect(expectStatus(missingDelete, 'rejected').code).toBe('P0002')

    // Updating a tombstone: a conflict, unless based on the tombstone's version (restores it).
    const [blind, restore] = await push(client, clientId, [
      { seq: 6, table: 'contacts', action: 'update', id, data: { name: 'blind' }, baseVersion: null },
      { seq: 7, table: 'contacts', action: 'update', id, data: { name: 'restored' }, baseVersion: 2 },
    ])
    expect(expectStatus(blind, 'conflict')).toMatchObject({ deleted: true, version: 2 })
    expect(expectStatus(restore, 'applied')).toMatchObject({ version: 3, row: { name: 'restored' } })
    const [row] = await stack().query('select _deleted from contacts where id = $1', [id])
    expect(row).toEqual({ _deleted: false })
  })

  it.skipIf(!onRealPostgres)(`applies a batch sent twice concurrently exactly once${onRealPostgres ? '' : ` — skipped: ${PGLITE_ONE_SESSION}`}`, async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const id = randomUUID()
    await push(client, clientId, [createContact(1, {}, id)])
    // Hold a lock on the row so both attempts are in flight together.
    const blocker = new pg.Client({ connectionString: stack().databaseUrl })
    await blocker.connect()
    try {
      await blocker.query('begin')
      await blocker.query('select 1 from contacts where id = $1 for update', [id])
      const batch: Mutation[] = [{ seq: 2, table: 'contacts', action: 'update', id, data: { phone: 'x' }, baseVersion: null }]
      const attempts = [push(client, clientId, batch), push(client, clientId, batch)]
      await new Promise((resolve) => setTimeout(resolve, 200))
      await blocker.query('commit')
      const [a, b] = await Promise.all(attempts)
      expect(a).toEqual(b)
      expect(expectStatus(a![0], 'applied').version).toBe(2)
    } finally {
      await blocker.end()
    }
    const [row] = await stack().query('select _version from contacts where id = $1', [id])
    expect(row).toEqual({ _version: '2' })
  })
})

describe('sync_push', () => {
  it('rejects malformed items on their own and refuses a non-array batch', async () => {
    const client = stack().createClient(newUser())
    const clientId = randomUUID()
    const { data, error } = await client.rpc('sync_push', {
      p_client_id: clientId,
      p_mutations: [
        { seq: 1, table: 'contacts', action: 'upsert', id: randomUUID(), baseVersion: null },
        { table: 'contacts', action: 'create', id: randomUUID(), data: { name: 'no seq' }, baseVersion: null },
        'not an object',
        { seq: 4, table: 'contacts', action: 'create', id: randomUUID(), data: 'text', baseVersion: null },
        { seq: 5, table: 'missing_table', action: 'create', id: randomUUID(), data: {}, baseVersion: null },
        createContact(6),
      ],
    })
    expect(error).toBeNull()
    const outcomes = data as Array<{ seq: number | null; status: string; code?: string }>
    expect(outcomes.map((o) => [o.seq, o.status, o.code])).toEqual([
      [1, 'rejected', '22023'],
      [null, 'rejected', '22023'],
      [null, 'rejected', '22023'],
      [4, 'rejected', '22023'],
      [5, 'rejected', '42P01'],
      [6, 'applied', undefined],
    ])

    const notArray = await client.rpc('sync_push', { p_client_id: clientId, p_mutations: { seq: 1 } })
    expect(notArray.error?.code).toBe('22023')
  })
})

describe('sync_push_runs', () => {
  /** Calls sync_push_runs with a body as given; the raw answer or the error. */
  async function rawRuns(client: SupabaseClient, body: unknown) {
    return client.rpc('sync_push_runs', body as Record<string, unknown>)
  }

  type RawOutcome = Record<string, unknown> & { seq: number }

  /** Creates (once) a synced table whose rows belong to their writer (RLS on user_id), with a bigserial `n`. */
  async function ownedTable(name: string): Promise<void> {
    await stack().query(`
      create table if not exists public.${name} (id uuid primary key, user_id uuid default auth.uid(), name text, n bigserial);
      alter table public.${name} enable row level security;
      drop policy if exists ${name}_all on public.${name};
      create policy ${name}_all on public.${name} to authenticated using (user_id = auth.uid()) with check (user_id = auth.uid());
      grant select, insert, update on public.${name} to authenticated;
      grant usage on sequence public.${name}_n_seq to authenticated;
      select sync_enable_table('public.${name}', 'user_id');`)
  }

  /** Runs `body` in a transaction of `session` as `user` (as PostgREST would), then commits or rolls back. */
  async function asUser<T>(session: pg.Client, user: string, body: () => Promise<T>, end: 'commit' | 'rollback' = 'commit'): Promise<T> {
    await session.query('begin')
    await session.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: user, role: 'authenticated' })])
    await session.query('set local role authenticated')
    const result = await body()
    await session.query(end)
    return result
  }


  /** A raw answer, one outcome per seq: applied groups taken apart (rows left as sent), each seq answered once. */
  function bySeq(answer: unknown): Map<number, RawOutcome> {
    const out = new Map<number, RawOutcome>()
    const put = (outcome: RawOutcome) => {
      expect(out.has(outcome.seq), `seq ${outcome.seq} answered twice`).toBe(false)
      out.set(outcome.seq, outcome)
    }
    for (const element of answer as Array<Record<string, unknown>>) {
      if (!Array.isArray(element.seqs)) {
        put(element as RawOutcome)
        continue
      }
      // A group's version and columns are per member (arrays) or one for all; with no hlc array
      // each member's stamp is the one it sent (left out here, as in a stored outcome).
      const columns = Object.entries(element.row as Record<string, unknown[]>)
      const same = (element.same ?? {}) as Record<string, unknown>
      ;(element.seqs as number[]).forEach((seq, k) =>
        put({
          seq, status: element.status, partial: element.partial,
          version: Array.isArray(element.version) ? (element.version[k] as number) : (element.version as number),
          ...(Array.isArray(element.hlc) ? { hlc: element.hlc[k] } : {}),
          row: { ...Object.fromEntries(columns.map(([column, values]) => [column, values[k]])), ...same },
        }))
    }
    return out
  }

  it('answers a write with the columns the device did not send, or the whole row when the server changed a sent one', async () => {
    await stack().query(`
      create table if not exists public.runs_people (   -- sync_enable_table adds updated_at
        id uuid primary key, user_id uuid default auth.uid(), email text, tags text[], meta json, note text default 'n');
      alter table public.runs_people enable row level security;
      drop policy if exists runs_people_all on public.runs_people;
      create policy runs_people_all on public.runs_people to authenticated using (user_id = auth.uid()) with check (user_id = auth.uid());
      grant select, insert, update on public.runs_people to authenticated;
      create or replace function public.runs_people_lower() returns trigger language plpgsql as $$
        begin new.email := lower(new.email); return new; end $$;
      create or replace trigger runs_people_lower before insert or update on public.runs_people
        for each row execute function public.runs_people_lower();
      select sync_enable_table('public.runs_people', 'user_id');`)
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const [a, b] = [randomUUID(), randomUUID()]
    const mutations: Mutation[] = [
      { seq: 1, table: 'runs_people', action: 'create', id: a, data: { email: 'a@x', tags: ['t'], meta: { k: [1] } }, baseVersion: null },
      { seq: 2, table: 'runs_people', action: 'create', id: b, data: { email: 'B@X', tags: ['t'], meta: null }, baseVersion: null },
      { seq: 3, table: 'runs_people', action: 'update', id: a, data: { note: 'm' }, baseVersion: 1 },
    ]
    const { data, error } = await rawRuns(client, encodePushBody(clientId, mutations))
    expect(error).toBeNull()
    // The unchanged writes come as applied groups, one per run, column by column; the other alone.
    const elements = data as Array<Record<string, unknown>>
    expect(elements.filter((e) => 'seqs' in e).map((e) => e.seqs)).toEqual([[1], [3]])
    const answered = bySeq(data)
    const [first, second, third] = [1, 2, 3].map((seq) => answered.get(seq))
    // Unchanged sent values stay out; the key, unsent columns and json (no equality) come back.
    expect(first).toMatchObject({ seq: 1, status: 'applied', partial: true, version: 1 })
    expect(first!.row).toEqual({ id: a, user_id: user, meta: { k: [1] }, note: 'n', updated_at: expect.any(String) })
    // A trigger changed the sent email: the whole row.
    expect(second).not.toHaveProperty('partial')
    expect(second!.row).toEqual({ id: b, user_id: user, email: 'b@x', tags: ['t'], meta: null, note: 'n', updated_at: expect.any(String) })
    expect(third).toMatchObject({ seq: 3, status: 'applied', partial: true, version: 2 })
    expect(third!.row).toEqual({ id: a, user_id: user, email: 'a@x', tags: ['t'], meta: { k: [1] }, updated_at: expect.any(String) })

    // Completed on the device, every row is the one another device pulls.
    const decoded = decodePushAnswer(data, mutations)
    const pulled = await pullAll(client, ['runs_people'], null, 100, stack())
    const latest = new Map(pulled.changes.map((c) => [c.id, c.row]))
    expect(expectStatus(decoded[1], 'applied').row).toEqual(latest.get(b))
    expect(expectStatus(decoded[2], 'applied').row).toEqual(latest.get(a))
  })

  it('gives a group\'s columns and version once when alike in every row, and stamps only when the server chose them', async () => {
    await stack().query(`
      create table if not exists public.runs_items (   -- sync_enable_table adds updated_at
        id uuid primary key, user_id uuid default auth.uid(), name text, n bigserial, note text default 'n',
        tags text[] default '{}', meta json default '{"k": [1]}');
      alter table public.runs_items enable row level security;
      drop policy if exists runs_items_all on public.runs_items;
      create policy runs_items_all on public.runs_items to authenticated using (user_id = auth.uid()) with check (user_id = auth.uid());
      grant select, insert, update on public.runs_items to authenticated;
      grant usage on sequence public.runs_items_n_seq to authenticated;
      select sync_enable_table('public.runs_items', 'user_id');`)
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const ids = [randomUUID(), randomUUID(), randomUUID()]
    const stamp = (k: number) => `${String(Date.now()).padStart(15, '0')}:${String(k).padStart(5, '0')}:device-a`
    const creates: Mutation[] = ids.map((id, k) => ({ seq: k + 1, table: 'runs_items', action: 'create', id, data: { id, name: `i${k}` }, baseVersion: null, hlc: stamp(k) }))
    const first = await rawRuns(client, encodePushBody(clientId, creates))
    expect(first.error).toBeNull()
    const [group] = first.data as Array<Record<string, unknown>>
    // Sent columns and stamps are not sent back; n differs per row, and json (no equality) is per
    // row; the rest (owner, defaults, now()) and the version come once.
    expect(group).toMatchObject({ seqs: [1, 2, 3], status: 'applied', partial: true, version: 1, hlc: null })
    expect(Object.keys(group!.row as object).sort()).toEqual(['meta', 'n'])
    expect(Object.keys(group!.same as object).sort()).toEqual(['note', 'tags', 'updated_at', 'user_id'])
    expect(group!.same).toMatchObject({ user_id: user, note: 'n', tags: [] })

    // Versions that differ come per row; so do stamps when a mutation sent none.
    await stack().query(`update public.runs_items set note = 'again' where id = $1`, [ids[0]])
    const updates: Mutation[] = ids.map((id, k) => ({ seq: 4 + k, table: 'runs_items', action: 'update', id, data: { name: `u${k}` }, baseVersion: null, hlc: k === 2 ? undefined : stamp(10 + k) }))
    const second = await rawRuns(client, encodePushBody(clientId, updates))
    expect(second.error).toBeNull()
    const [updated] = second.data as Array<Record<string, unknown>>
    expect(updated).toMatchObject({ seqs: [4, 5, 6], version: [3, 2, 2] })
    const stamps = updated!.hlc as string[]
    expect(stamps[0]).toMatch(/:00010:device-a$/)
    expect(stamps[1]).toMatch(/:00011:device-a$/)
    expect(stamps[2]).toMatch(/^\d{15}:\d{5}:server$/)
    expect(updated!.row).toHaveProperty('note', ['again', 'n', 'n'])

    // Completed on the device, every row is the one another device pulls, and no two rows share a
    // value given once; a retry is answered from the stored groups as at first.
    const decoded = decodePushAnswer(second.data, updates)
    const pulled = new Map((await pullAll(client, ['runs_items'], null, 100, stack())).changes.map((c) => [c.id, c]))
    ids.forEach((id, k) => {
      const outcome = expectStatus(decoded[k], 'applied')
      expect(outcome.row).toEqual(pulled.get(id)!.row)
      expect(outcome.hlc).toBe(pulled.get(id)!.hlc)
    })
    expect(expectStatus(decoded[0], 'applied').row!.tags).not.toBe(expectStatus(decoded[1], 'applied').row!.tags)
    expect(await pushRuns(client, clientId, creates)).toEqual(decodePushAnswer(first.data, creates))
    expect(await pushRuns(client, clientId, updates)).toEqual(decoded)
  })

  it("leaves a key the run names out of its data and of the answer's rows, and refuses a key other than the table's", async () => {
    await ownedTable('runs_keyed')
    const client = stack().createClient(newUser())
    const clientId = randomUUID()
    const ids = [randomUUID(), randomUUID()]
    const creates: Mutation[] = ids.map((id, k) => ({ seq: k + 1, table: 'runs_keyed', action: 'create', id, data: { id, name: `k${k}` }, key: 'id', baseVersion: null }))
    const updates: Mutation[] = ids.map((id, k) => ({ seq: k + 3, table: 'runs_keyed', action: 'update', id, data: { id, name: `u${k}` }, key: 'id', baseVersion: 1 }))
    for (const mutations of [creates, updates]) {
      const body = encodePushBody(clientId, mutations)
      expect(body.runs).toMatchObject([{ key: 'id', data: mutations.map((m) => ({ name: m.data!.name })) }])
      const { data, error } = await rawRuns(client, body)
      expect(error).toBeNull()
      // One group; its rows hold neither the sent name nor the key, which the ids gave.
      const [group, ...rest] = data as Array<Record<string, unknown>>
      expect(rest).toEqual([])
      expect(group).toMatchObject({ seqs: mutations.map((m) => m.seq), status: 'applied', partial: true })
      expect(Object.keys(group!.row as object)).toEqual(['n'])
      // Completed from each mutation's own data, every row is the one another device pulls.
      const decoded = decodePushAnswer(data, mutations)
      const pulled = new Map((await pullAll(client, ['runs_keyed'], null, 100, stack())).changes.map((c) => [c.id, c.row]))
      ids.forEach((id, k) => expect(expectStatus(decoded[k], 'applied').row).toEqual(pulled.get(id)))
      // A retry is answered from the stored group, completed the same way.
      expect(await pushRuns(client, clientId, mutations)).toEqual(decoded)
    }
    // A key other than the table's primary key would leave that column unwritten: the call fails,
    // and so does a key that is not a column name.
    const run = { table: 'runs_keyed', action: 'create', seq: [5], id: [randomUUID()], data: [{ n: 5 }], base: null, hlc: null }
    const wrong = await rawRuns(client, { client_id: clientId, runs: [{ ...run, key: 'name' }] })
    expect(wrong.error).toMatchObject({ code: '22023', message: expect.stringContaining('key "name" is not the primary key of table runs_keyed ("id")') })
    const notName = await rawRuns(client, { client_id: clientId, runs: [{ ...run, key: 5 }] })
    expect(notName.error).toMatchObject({ code: '22023', message: expect.stringContaining('key must be null or a column name') })
    expect(await pullAll(client, ['runs_keyed'], null, 100, stack())).toMatchObject({ changes: { length: 2 } })
  })

  it("lists a large run's group members in batch order, so the device reads the group by position", async () => {
    await ownedTable('runs_order')
    const client = stack().createClient(newUser())
    const clientId = randomUUID()
    // Large enough for the planner to join the written rows back by key (a merge join on
    // PostgreSQL), whose output is in key order, not in batch order.
    const creates: Mutation[] = Array.from({ length: 1500 }, (_, k) => {
      const id = randomUUID()
      return { seq: k + 1, table: 'runs_order', action: 'create', id, data: { id, name: `o${k}` }, baseVersion: null }
    })
    const { data, error } = await rawRuns(client, encodePushBody(clientId, creates))
    expect(error).toBeNull()
    const [group, ...rest] = data as Array<Record<string, unknown>>
    expect(rest).toEqual([])
    expect(group!.seqs).toEqual(creates.map((m) => m.seq))
    // Every per-member array follows the same order: n (bigserial) was drawn in insert order.
    const n = (group!.row as { n: number[] }).n
    expect(n.every((value, k) => k === 0 || value > n[k - 1]!)).toBe(true)
    expect((group!.hlc as string[]).length).toBe(creates.length)
  })

  it("runs a run's statements prepared once per session: kept after a rollback, prepared again when dropped or when the table changes", async () => {
    await ownedTable('runs_prep')
    const user = newUser()
    const clientId = randomUUID()
    let seq = 0
    const creates = (k: number): Mutation[] => Array.from({ length: k }, () => {
      const id = randomUUID()
      return { seq: ++seq, table: 'runs_prep', action: 'create', id, data: { id, name: `p${seq}` }, baseVersion: null }
    })
    const session = new pg.Client({ connectionString: stack().databaseUrl })
    await session.connect()
    /** One push as the user, in its own transaction (rolled back if asked); its decoded outcomes. */
    const pushAs = async (mutations: Mutation[], end: 'commit' | 'rollback' = 'commit') => {
      const { rows } = await asUser(session, user, () =>
        session.query('select public.sync_push_runs($1::jsonb) as a', [JSON.stringify(encodePushBody(clientId, mutations))]), end)
      return decodePushAnswer(rows[0].a, mutations)
    }
    const prepared = async () =>
      new Set((await session.query(`select name from pg_prepared_statements where name like 'sync\\_run\\_%'`)).rows.map((r) => r.name as string))
    const applied = (outcomes: Awaited<ReturnType<typeof pushAs>>) => outcomes.map((o) => expectStatus(o, 'applied').row)
    try {
      const before = await prepared()
      const first = applied(await pushAs(creates(3)))
      const mine = [...(await prepared())].filter((name) => !before.has(name))
      expect(mine).toHaveLength(1)
      // The same shape again: the same statement, now with other arguments.
      const second = applied(await pushAs(creates(5)))
      expect([...(await prepared())].filter((name) => !before.has(name))).toEqual(mine)
      // Both runs used its one generic plan: no run is planned afresh for its arguments.
      const plans = await session.query('select generic_plans::int as generic, custom_plans::int as custom from pg_prepared_statements where name = $1', mine)
      expect(plans.rows).toEqual([{ generic: 2, custom: 0 }])
      expect(second.map((row) => row!.n)).toEqual([...second.keys()].map((k) => (second[0]!.n as number) + k))
      expect(second[0]!.n).toBeGreaterThan(first[2]!.n as number)

      // A rolled-back push leaves the statement prepared (and nothing written); the next one uses it.
      const undone = creates(2)
      applied(await pushAs(undone, 'rollback'))
      expect(await stack().query('select 1 from public.runs_prep where id = any($1::uuid[])', [undone.map((m) => m.id)])).toEqual([])
      expect(applied(await pushAs(creates(1)))).toHaveLength(1)

      // Dropped (as a pooler's reset would): prepared again on the next push.
      await session.query('deallocate all')
      expect(applied(await pushAs(creates(2)))).toHaveLength(2)
      expect(await prepared()).toEqual(new Set(mine))

      // The table gains a column: the run's statement changes with it, and answers with the column.
      await stack().query(`alter table public.runs_prep add column if not exists kind text default 'k'`)
      const widened = await pushAs(creates(2))
      expect(applied(widened).map((row) => row!.kind)).toEqual(['k', 'k'])
      expect((await prepared()).size).toBe(2)
    } finally {
      await session.end()
      await stack().query('alter table public.runs_prep drop column if exists kind')
    }
  })

  it("writes a create run's owner, left to its default auth.uid(), as the caller's id found once for the run; another default acts as before", async () => {
    await ownedTable('runs_owner')
    // An owner column with a default of its own (and no row level security): the default decides.
    const fixedOwner = randomUUID()
    await stack().query(`
      create table if not exists public.runs_owner_fixed (id uuid primary key, user_id uuid default '${fixedOwner}'::uuid, name text);
      grant select, insert, update on public.runs_owner_fixed to authenticated;
      select sync_enable_table('public.runs_owner_fixed', 'user_id');`)
    const user = newUser()
    const clientId = randomUUID()
    let seq = 0
    const creates = (table: string, k: number, data: Record<string, unknown> = {}): Mutation[] => Array.from({ length: k }, () => {
      const id = randomUUID()
      return { seq: ++seq, table, action: 'create', id, data: { id, name: `o${seq}`, ...data }, baseVersion: null }
    })
    const session = new pg.Client({ connectionString: stack().databaseUrl })
    await session.connect()
    const pushAs = async (mutations: Mutation[]) => {
      const { rows } = await asUser(session, user, () =>
        session.query('select public.sync_push_runs($1::jsonb) as a', [JSON.stringify(encodePushBody(clientId, mutations))]))
      return decodePushAnswer(rows[0].a, mutations).map((o) => expectStatus(o, 'applied').row)
    }
    const names = async () => new Set((await session.query('select name from pg_prepared_statements')).rows.map((r) => r.name as string))
    /** The text of the run statements this session prepared that are not in `before`. */
    const statements = async (before: Set<string>) =>
      (await session.query(`select name, statement from pg_prepared_statements where name like 'sync\\_run\\_%'`)).rows
        .filter((r) => !before.has(r.name as string)).map((r) => r.statement as string)
    try {
      let before = await names()
      const owned = await pushAs(creates('runs_owner', 3))
      expect(owned.map((row) => row!.user_id)).toEqual([user, user, user])
      const [ownedRun, ...more] = await statements(before)
      expect(more).toEqual([])
      // The owner is written by the statement, from one evaluation of its default.
      expect(ownedRun).toMatch(/insert into public\.runs_owner as t \(name, user_id, +id, _hlc\)/)
      expect(ownedRun).toContain('(select auth.uid())')
      expect(await stack().query('select user_id::text from public.runs_owner where id = any($1::uuid[])', [owned.map((row) => row!.id)]))
        .toEqual([{ user_id: user }, { user_id: user }, { user_id: user }])

      // A device that sends the owner writes what it sent (the policy checks it).
      const sent = await pushAs(creates('runs_owner', 1, { user_id: user }))
      expect(sent[0]!.user_id).toBe(user)

      before = await names()
      const fixed = await pushAs(creates('runs_owner_fixed', 2))
      expect(fixed.map((row) => row!.user_id)).toEqual([fixedOwner, fixedOwner])
      const [fixedRun] = await statements(before)
      expect(fixedRun).toMatch(/insert into public\.runs_owner_fixed as t \(name, +id, _hlc\)/)
      expect(fixedRun).not.toContain('auth.uid()')
    } finally {
      await session.end()
    }
  })

  it("finds each row of an update or delete run by its key, not among all of the user's rows", async () => {
    // Row level security keeps a qual that is not leakproof (a cast of the sent id) from reaching
    // the key's index: the lookup then reads every row the owner's index gives, for every mutation.
    await ownedTable('runs_upd')
    const user = newUser()
    const clientId = randomUUID()
    const n = 300
    const ids = Array.from({ length: n }, () => randomUUID())
    const creates: Mutation[] = ids.map((id, k) => ({ seq: k + 1, table: 'runs_upd', action: 'create', id, data: { id, name: 'a' }, baseVersion: null }))
    expect(await pushRuns(stack().createClient(user), clientId, creates)).toHaveLength(n)
    const session = new pg.Client({ connectionString: stack().databaseUrl })
    await session.connect()
    try {
      for (const action of ['update', 'delete'] as const) {
        const run: Mutation[] = ids.map((id, k) => ({
          seq: (action === 'update' ? n : 2 * n) + k + 1, table: 'runs_upd', action, id,
          ...(action === 'update' ? { data: { name: 'b' } } : {}), baseVersion: action === 'update' ? 1 : 2,
        }))
        const { rows, read } = await asUser(session, user, async () => {
          const { rows } = await session.query('select public.sync_push_runs($1::jsonb) as a', [JSON.stringify(encodePushBody(clientId, run))])
          // This transaction's own counts so far: rows the table's scans read.
          const [read] = (await session.query(`select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) as read
                                                  from pg_stat_xact_user_tables where relname = 'runs_upd'`)).rows
          return { rows, read }
        })
        decodePushAnswer(rows[0].a, run).forEach((outcome) => expectStatus(outcome, 'applied'))
        expect(Number(read.read), action).toBeLessThan(10 * n)
      }
    } finally {
      await session.end()
    }
  })

  it('keeps at most 32 prepared run statements in a session, dropping the oldest', async () => {
    const session = new pg.Client({ connectionString: stack().databaseUrl })
    await session.connect()
    try {
      const texts = Array.from({ length: 40 }, (_, k) => `select ${k}::int as k, $1::int as x`)
      // When each was prepared (the clock may give several the same time).
      const preparedAt = new Map<string, number>()
      for (const text of texts) {
        await session.query('select sync.prepare_run($1, $2)', [text, 'int'])
        const { rows } = await session.query(`select prepare_time from pg_prepared_statements where name = 'sync_run_' || md5($1)`, [text])
        preparedAt.set(text, (rows[0].prepare_time as Date).getTime())
      }
      const { rows } = await session.query(`select statement from pg_prepared_statements where name like 'sync\\_run\\_%'`)
      expect(rows).toHaveLength(32)
      const kept = texts.filter((text) => rows.some((r) => (r.statement as string).endsWith(text)))
      const dropped = texts.filter((text) => !kept.includes(text))
      // Every one dropped was prepared no later than every one kept; the last one prepared is kept.
      expect(kept).toHaveLength(32)
      expect(Math.max(...dropped.map((text) => preparedAt.get(text)!))).toBeLessThanOrEqual(Math.min(...kept.map((text) => preparedAt.get(text)!)))
      expect(kept).toContain(texts[39])
      // A kept one runs through the call sync.prepared_call builds.
      const call = (await session.query('select sync.prepared_call($1, $2) as c', [texts[39], ['7']])).rows[0].c as string
      expect((await session.query(call)).rows).toEqual([{ k: 39, x: 7 }])
    } finally {
      await session.end()
    }
  })

  it('applies a run whose data keys differ, repeated and already-applied seqs, and null data as one by one would', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()]
    const body = {
      client_id: clientId,
      runs: [
        { table: 'contacts', action: 'create', seq: [1, 2, 1], id: [a, b, a], data: [{ name: 'a' }, { name: 'b', phone: '2' }, { name: 'again' }], base: null, hlc: null },
        { table: 'contacts', action: 'update', seq: [3], id: [a], data: [null], base: [1], hlc: [null] },
        { table: 'contacts', action: 'create', seq: [4], id: [c], data: [null], base: [null], hlc: [null] },
      ],
    }
    const first = await rawRuns(client, body)
    expect(first.error).toBeNull()
    // One answer per distinct seq: the repeated seq 1 shares its first occurrence's.
    const outcomes = bySeq(first.data)
    expect([...outcomes.values()].map((o) => [o.seq, o.status, o.version ?? o.code]).sort()).toEqual([
      [1, 'applied', 1], [2, 'applied', 1], [3, 'applied', 2], [4, 'rejected', '23502'],
    ])
    expect(outcomes.get(1)!.row).toMatchObject({ name: 'a' })
    expect(outcomes.get(2)!.row).toMatchObject({ name: 'b', phone: '2' })

    // Sent again with one new mutation: the stored outcomes answer, only seq 5 applies.
    const again = await rawRuns(client, { ...body, runs: [...body.runs, { table: 'contacts', action: 'delete', seq: [5], id: [b], base: [1], hlc: [null] }] })
    expect(again.error).toBeNull()
    const answeredAgain = bySeq(again.data)
    for (const seq of [1, 2, 3, 4]) expect(answeredAgain.get(seq)).toEqual(outcomes.get(seq))
    expect(answeredAgain.get(5)).toMatchObject({ status: 'applied', version: 2 })
    const rows = await stack().query('select name, _version from contacts where user_id = $1 order by name', [user])
    expect(rows).toEqual([{ name: 'a', _version: '2' }, { name: 'b', _version: '2' }])
  })

  it('applies a fresh run whose data keys differ, or whose base does not fit a bigint, as one by one would', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const ids = [randomUUID(), randomUUID(), randomUUID(), randomUUID()]
    // Every seq new: the run's columns are read whole, and its data decide whether it goes set-based.
    const created = bySeq((await rawRuns(client, {
      client_id: clientId,
      runs: [
        // (A run taken set-based with the first one's keys would drop the phone.)
        { table: 'contacts', action: 'create', seq: [1, 2], id: ids.slice(0, 2), data: [{ name: 'a' }, { name: 'b', phone: '1' }], base: null, hlc: null },
        { table: 'contacts', action: 'create', seq: [3, 4], id: ids.slice(2), data: [null, { name: 'd', _version: 9 }], base: null, hlc: null },
      ],
    })).data)
    expect([1, 2, 3, 4].map((seq) => [created.get(seq)!.status, created.get(seq)!.version ?? created.get(seq)!.code])).toEqual([
      ['applied', 1], ['applied', 1], ['rejected', '23502'], ['applied', 1],
    ])
    expect(created.get(2)!.row).toMatchObject({ name: 'b', phone: '1' })
    const updated = bySeq((await rawRuns(client, {
      client_id: clientId,
      runs: [{ table: 'contacts', action: 'update', seq: [5, 6], id: [ids[0], ids[1]], data: [{ name: 'a2' }, { name: 'b2' }], base: [1, 1e19], hlc: [null, null] }],
    })).data)
    expect(updated.get(5)).toMatchObject({ status: 'applied', version: 2 })
    expect(updated.get(6)).toMatchObject({ status: 'rejected', code: '22003' })
    const rows = await stack().query('select name, phone, _version from contacts where user_id = $1 order by name', [user])
    expect(rows).toEqual([{ name: 'a2', phone: null, _version: '2' }, { name: 'b', phone: '1', _version: '1' }, { name: 'd', phone: null, _version: '1' }])
  })

  it('answers an update or delete run of writes, conflicts, missing rows and tombstones in one go, as one by one would', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const [a, b, c, d, e, missing] = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()]
    const setup = await rawRuns(client, {
      client_id: clientId,
      runs: [
        { table: 'contacts', action: 'create', seq: [1, 2, 3, 4, 5], id: [a, b, c, d, e], data: ['a', 'b', 'c', 'd', 'e'].map((name) => ({ name })), base: null, hlc: null },
        { table: 'contacts', action: 'delete', seq: [6], id: [d], base: [1], hlc: [null] },
      ],
    })
    expect(setup.error).toBeNull()
    const run = (action: string, seq: number[], id: string[], base: Array<number | null>, data?: unknown[]) =>
      ({ table: 'contacts', action, seq, id, base, hlc: seq.map(() => null), ...(data ? { data } : {}) })
    const { data, error } = await rawRuns(client, {
      client_id: clientId,
      runs: [
        // a: base matches; b: stale base; a missing row; c: no base (last writer wins); d: a tombstone.
        run('update', [7, 8, 9, 10, 11], [a, b, missing, c, d], [1, 7, 1, null, null], ['A', 'B', 'M', 'C', 'D'].map((name) => ({ name }))),
        // d: already a tombstone (done); e: base matches; a: stale base (a is at 2 now).
        run('delete', [12, 13, 14], [d, e, a], [null, 1, 1]),
      ],
    })
    expect(error).toBeNull()
    // The update run's written rows come back as one applied group: it was applied set-based, not
    // one by one (a delete sends no columns, so its answers are not grouped).
    const groups = (data as Array<Record<string, unknown>>).filter((element) => Array.isArray(element.seqs)).map((element) => element.seqs)
    expect(groups).toEqual([[7, 10]])
    const outcomes = bySeq(data)
    expect([...outcomes.values()].map((o) => [o.seq, o.status, o.version ?? o.code, o.deleted]).sort((x, y) => Number(x[0]) - Number(y[0]))).toEqual([
      [7, 'applied', 2, undefined],
      [8, 'conflict', 1, false],
      [9, 'rejected', 'P0002', undefined],
      [10, 'applied', 2, undefined],
      [11, 'conflict', 2, true],
      [12, 'applied', 2, undefined],
      [13, 'applied', 2, undefined],
      [14, 'conflict', 2, false],
    ])
    expect(outcomes.get(8)!.row).toMatchObject({ id: b, name: 'b' })
    expect(outcomes.get(14)!.row).toMatchObject({ id: a, name: 'A' })
    const rows = await stack().query('select name, _version, _deleted from contacts where user_id = $1 order by name', [user])
    expect(rows).toEqual([
      { name: 'A', _version: '2', _deleted: false },
      { name: 'C', _version: '2', _deleted: false },
      { name: 'b', _version: '1', _deleted: false },
      { name: 'd', _version: '2', _deleted: true },
      { name: 'e', _version: '2', _deleted: true },
    ])
  })

  it('applies an update run that writes one row twice as one by one would', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const id = randomUUID()
    expect((await rawRuns(client, { client_id: clientId, runs: [{ table: 'contacts', action: 'create', seq: [1], id: [id], data: [{ name: 'a' }], base: null, hlc: null }] })).error).toBeNull()
    // The second update's base is the version the first one writes: one by one, both apply.
    const { data, error } = await rawRuns(client, {
      client_id: clientId,
      runs: [{ table: 'contacts', action: 'update', seq: [2, 3], id: [id, id.toUpperCase()], data: [{ name: 'b' }, { name: 'c' }], base: [1, 2], hlc: [null, null] }],
    })
    expect(error).toBeNull()
    const outcomes = bySeq(data)
    expect([2, 3].map((seq) => [outcomes.get(seq)!.status, outcomes.get(seq)!.version])).toEqual([['applied', 2], ['applied', 3]])
    expect(await stack().query('select name, _version from contacts where id = $1', [id])).toEqual([{ name: 'c', _version: '3' }])
  })

  it.skipIf(!onRealPostgres)(`answers an update of a row changed while the run waited for it with the row as it now is${onRealPostgres ? '' : ` — skipped: ${PGLITE_ONE_SESSION}`}`, async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const [id, other] = [randomUUID(), randomUUID()]
    expect((await rawRuns(client, { client_id: clientId, runs: [{ table: 'contacts', action: 'create', seq: [1, 2], id: [id, other], data: [{ name: 'a' }, { name: 'o' }], base: null, hlc: null }] })).error).toBeNull()
    const writer = new pg.Client({ connectionString: stack().databaseUrl })
    await writer.connect()
    try {
      // Another transaction changes the row (version 2) and holds it while the run starts.
      await writer.query('begin')
      await writer.query(`update contacts set name = 'theirs' where id = $1`, [id])
      const pushed = rawRuns(client, {
        client_id: clientId,
        runs: [{ table: 'contacts', action: 'update', seq: [3, 4], id: [other, id], data: [{ name: 'O' }, { name: 'mine' }], base: [1, 1], hlc: [null, null] }],
      })
      // Wait until the run is blocked on that row.
      for (let i = 0; i < 200; i++) {
        const [waiting] = await stack().query<{ n: string }>(
          `select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%sync_push_runs%'`)
        if (Number(waiting!.n) > 0) break
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      await writer.query('commit')
      const { data, error } = await pushed
      expect(error).toBeNull()
      const outcomes = bySeq(data)
      // The run's snapshot still saw version 1; the answer is the row as committed.
      expect(outcomes.get(3)).toMatchObject({ status: 'applied', version: 2 })
      expect(outcomes.get(4)).toMatchObject({ status: 'conflict', version: 2, row: { name: 'theirs' } })
    } finally {
      await writer.end()
    }
    expect(await stack().query('select name, _version from contacts where user_id = $1 order by name', [user])).toEqual([
      { name: 'O', _version: '2' }, { name: 'theirs', _version: '2' },
    ])
  })

  it('answers a retried batch, or part of it, from its stored groups as it answered at first', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const ids = Array.from({ length: 6 }, () => randomUUID())
    const batch: Mutation[] = [
      ...ids.slice(0, 5).map((id, i) => createContact(i + 1, { name: `c${i}` }, id)),
      { seq: 6, table: 'contacts', action: 'update', id: ids[0]!, data: { name: 'c0 again' }, baseVersion: 1 },
      createContact(7, { name: 'c5' }, ids[5]),
    ]
    const { data, error } = await rawRuns(client, encodePushBody(clientId, batch))
    expect(error).toBeNull()
    // Three set-based runs (creates, the update, a create after it), each answered as one group.
    expect((data as Array<Record<string, unknown>>).map((e) => e.seqs)).toEqual([[1, 2, 3, 4, 5], [6], [7]])
    const first = decodePushAnswer(data, batch)

    // Retried whole, then in part, then in part with new mutations: stored answers, nothing re-applied.
    const retried = await pushRuns(client, clientId, batch)
    expect(retried).toEqual(first)
    const part = [batch[1]!, batch[3]!, batch[5]!]
    expect(await pushRuns(client, clientId, part)).toEqual([first[1], first[3], first[5]])
    const more = [batch[2]!, createContact(8, { name: 'new' })]
    const [stored, fresh] = await pushRuns(client, clientId, more)
    expect(stored).toEqual(first[2])
    expect(fresh).toMatchObject({ seq: 8, status: 'applied', version: 1 })
    const rows = await stack().query<{ n: string; v: string }>('select count(*) as n, sum(_version) as v from contacts where user_id = $1', [user])
    expect(rows).toEqual([{ n: '7', v: '8' }])
  })

  it('applies a batch sent with `after` only once that earlier batch is applied, else defers it whole', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const count = async () => Number((await stack().query<{ n: string }>('select count(*) as n from contacts where user_id = $1', [user]))[0]!.n)
    // The first batch: seqs 1 and 3 are one applied group (2 is never sent), 4 a rejection.
    const first: Mutation[] = [createContact(1), createContact(3), { ...createContact(4), data: { name: null, phone: '1' } }]
    const { data, error } = await rawRuns(client, encodePushBody(clientId, first))
    expect(error).toBeNull()
    expect((data as Array<Record<string, unknown>>).find((e) => Array.isArray(e.seqs))?.seqs).toEqual([1, 3])

    // Named predecessors that were applied: a group's member, or a record of its own (a rejection).
    for (const [after, seq] of [[3, 10], [4, 11]] as const) {
      const next = [createContact(seq)]
      const answer = await rawRuns(client, encodePushBody(clientId, next, after))
      expect(answer.error).toBeNull()
      expect(decodePushAnswer(answer.data, next, after)).toMatchObject([{ seq, status: 'applied', version: 1 }])
    }
    expect(await count()).toBe(4)

    // Not applied: a seq inside the group's range that is not a member, one never sent, one of
    // another client. Deferred whole; nothing applied or stored, so it goes through later as new.
    const waiting = [createContact(20), createContact(21)]
    for (const [after, from] of [[2, clientId], [99, clientId], [1, randomUUID()]] as const) {
      const answer = await rawRuns(client, encodePushBody(from, waiting, after))
      expect(answer.error).toBeNull()
      expect(answer.data).toEqual({ deferred: true })
      expect(decodePushAnswer(answer.data, waiting, after)).toEqual([{ seq: 20, status: 'deferred' }, { seq: 21, status: 'deferred' }])
    }
    expect(await count()).toBe(4)
    expect(await pushRuns(client, clientId, waiting)).toMatchObject([{ seq: 20, status: 'applied' }, { seq: 21, status: 'applied' }])
    expect(await count()).toBe(6)

    // A defer the device did not ask for (no `after`) is a malformed answer; so is a bad `after`.
    expect(() => decodePushAnswer({ deferred: true }, waiting)).toThrow(/deferred a batch that named no predecessor/)
    for (const after of ['3', -1, 1.5]) {
      const answer = await rawRuns(client, { ...encodePushBody(clientId, [createContact(30)]), after })
      expect(answer.error?.code).toBe('22023')
      expect(answer.error?.message).toMatch(/after must be null or a seq/)
    }
    // So is a node that is not a clock node id.
    for (const node of [5, '', 'a:b', 'sp ace', 'x'.repeat(129), ['n']]) {
      const answer = await rawRuns(client, { ...encodePushBody(clientId, [createContact(30)]), node })
      expect(answer.error?.code).toBe('22023')
      expect(answer.error?.message).toMatch(/node must be null or a clock node id/)
    }
    expect(await count()).toBe(6)
  })

  it('refuses a malformed batch with 22023, naming the fault, and applies none of it', async () => {
    const user = newUser()
    const client = stack().createClient(user)
    const clientId = randomUUID()
    const good = { table: 'contacts', action: 'create', seq: [1], id: [randomUUID()], data: [{ name: 'ok' }], base: [null], hlc: [null] }
    const cases: Array<[unknown, RegExp]> = [
      [[good], /client_id/],
      [{ client_id: 'not-a-uuid', runs: [good] }, /client_id/],
      [{ client_id: clientId, runs: good }, /runs must be an array/],
      [{ client_id: clientId, runs: [good, { ...good, action: 'upsert' }] }, /run 1: action/],
      [{ client_id: clientId, runs: [good, { ...good, seq: [-2] }] }, /run 1: seq/],
      // Anything but a non-empty array of integers from 0 to 10^18 - 1.
      ...[[1.5], ['2'], [null], [[2]], [], 2, [1e18], [1e20], [2, 3.25]].map((seq): [unknown, RegExp] => [
        { client_id: clientId, runs: [good, { ...good, seq, id: Array.isArray(seq) ? seq.map(() => randomUUID()) : [randomUUID()] }] },
        /run 1: seq must be a non-empty array of integers/,
      ]),
      [{ client_id: clientId, runs: [good, { ...good, seq: [2, 3] }] }, /run 1: id must be an array as long as seq/],
      [{ client_id: clientId, runs: [good, { ...good, seq: [2], id: [null] }] }, /run 1: id must hold strings or numbers/],
      [{ client_id: clientId, runs: [good, { ...good, seq: [2], id: [{ id: 1 }] }] }, /run 1: id must hold strings or numbers/],
      [{ client_id: clientId, runs: [good, { ...good, seq: [2], data: ['text'] }] }, /run 1: data must hold objects/],
      [{ client_id: clientId, runs: [good, { ...good, seq: [2], base: ['1'] }] }, /run 1: base must hold numbers/],
      [{ client_id: clientId, runs: [good, { ...good, seq: [2], hlc: [1] }] }, /run 1: hlc must hold strings/],
      [{ client_id: clientId, runs: [good, 'run'] }, /run 1: expected an object/],
    ]
    for (const [body, message] of cases) {
      const { error } = await rawRuns(client, body)
      expect(error?.code, JSON.stringify(body)).toBe('22023')
      expect(error?.message).toMatch(message)
    }
    const rows = await stack().query('select 1 from contacts where user_id = $1', [user])
    expect(rows).toHaveLength(0)
  })
})
