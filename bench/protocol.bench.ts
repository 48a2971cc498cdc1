/**
 * Protocol throughput and latency through the real stack (PostgREST 12 + the sync migration, on
 * PGlite, or on the PostgreSQL of DATABASE_URL), each figure set against a limit measured in the
 * same run on the same stack:
 *
 * 1. push: 10,000 creates through the Supabase backend in batches of 100 / 500 / 1000 / 2000,
 *    against one bulk-upsert RPC of the same rows through the same PostgREST (a bench-only SQL
 *    function) and a direct SQL insert; median of 3 interleaved rounds, fresh rows each time.
 *    Ratio = push rows/s ÷ bulk-RPC rows/s (target ≥ 0.5).
 * 2. pull: 10,000 and 100,000 rows through the backend (pages of 1000) against a raw PostgREST
 *    select of the same rows, keyset-paged by 1000 on the primary key; median of 3 interleaved
 *    rounds. Ratio = backend ÷ raw (target ≥ 0.5). The Postgres backend is shown too.
 * 3. latency of a pull returning 10 new changes when the table holds 10,000 vs 1,000,000 rows
 *    (bulk written with generate_series, owned by other users, as in a shared multi-tenant table).
 *    Ratio = large ÷ small median (target ≤ 2).
 *
 * Every request goes to PostgREST straight (bench/direct.ts), not through the stack's in-process
 * gateway. Prints a human-readable line and one JSON line per figure. Never passes or fails on time.
 * Sized for 2 cores. Environment: `BENCH_LARGE_ROWS` overrides the 1,000,000 of (3) for a quick
 * run; `BENCH_PARTS` (e.g. `push,pull`) runs only some parts; `BENCH_PUSH_BATCHES` (e.g. `1000,5000`)
 * sets the push batch sizes; `BENCH_PUSH_ROUNDS` the push rounds (3); `DATABASE_URL` selects PostgreSQL.
 */
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import type { SupabaseClient } from '@supabase/supabase-js'
import type { Backend, Cursor, Mutation } from '../src/core/protocol.js'
import { createSupabaseBackend } from '../src/backends/supabase/index.js'
import { createPostgresBackend } from '../src/backends/postgres/index.js'
import { startLocalStack, type LocalStack } from '../src/testing/index.js'
import { directClient } from './direct.js'

const PUSH_ROWS = 10_000
const PUSH_BATCHES = (process.env.BENCH_PUSH_BATCHES ?? '100,500,1000,2000').split(',').map(Number)
const PULL_SIZES = [10_000, 100_000]
const PAGE = 1000
const LARGE_ROWS = Number(process.env.BENCH_LARGE_ROWS ?? 1_000_000)
const SMALL_ROWS = 10_000
const LATENCY_ROUNDS = 20
const PULL_ROUNDS = 3
const PUSH_ROUNDS = Number(process.env.BENCH_PUSH_ROUNDS ?? 3)
const PARTS = new Set((process.env.BENCH_PARTS ?? 'push,pull,latency').split(',').map((part) => part.trim()))

/** A syncable table owned per user through RLS, as the demo's tables are. */
function benchTableSql(name: string): string {
  return `
create table public.${name} (
  id uuid primary key default gen_random_uuid(),
  user_id uuid default auth.uid(),
  name text not null,
  n int not null default 0,
  note text
);
alter table public.${name} enable row level security;
create policy ${name}_select on public.${name} for select to authenticated using (user_id = auth.uid());
create policy ${name}_insert on public.${name} for insert to authenticated with check (user_id = auth.uid());
create policy ${name}_update on public.${name} for update to authenticated using (user_id = auth.uid()) with check (user_id = auth.uid());
grant select, insert, update, delete on public.${name} to authenticated;
select public.sync_enable_table('public.${name}', 'user_id');`
}

const BENCH_SQL = `
${['bench_push', 'bench_pull_10k', 'bench_pull_100k', 'bench_lat_small', 'bench_lat_large'].map(benchTableSql).join('\n')}

-- The push limit: one set-based upsert of a whole batch, run as the caller through PostgREST.
create function public.bench_bulk_upsert(p_rows jsonb) returns int
  language sql security invoker
as $$
  with written as (
    insert into public.bench_push as t (id, name, n)
    select r.id, r.name, r.n from jsonb_to_recordset(p_rows) as r(id uuid, name text, n int)
    on conflict (id) do update set name = excluded.name, n = excluded.n
    returning 1)
  select count(*)::int from written
$$;
grant execute on function public.bench_bulk_upsert(jsonb) to authenticated;
`

interface Figure {
  bench: string
  [key: string]: unknown
}

function report(text: string, figure: Figure): void {
  console.log(text)
  console.log(JSON.stringify(figure))
}

const round = (value: number, digits = 2): number => Number(value.toFixed(digits))

async function timed<T>(action: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now()
  const value = await action()
  return { ms: performance.now() - started, value }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

function rowsFor(count: number): Array<{ id: string; name: string; n: number }> {
  return Array.from({ length: count }, (_, n) => ({ id: randomUUID(), name: `row ${n}`, n }))
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

async function rpcOrThrow(client: SupabaseClient, fn: string, args: Record<string, unknown>): Promise<unknown> {
  const { data, error } = await client.rpc(fn, args)
  if (error) throw new Error(`${fn}: ${error.code} ${error.message}`)
  return data
}

/** Pulls the whole stream; returns the number of changes and the final cursor. */
async function pullToEnd(backend: Backend, table: string, cursor: Cursor): Promise<{ changes: number; cursor: Cursor; pages: number }> {
  let changes = 0
  let pages = 0
  for (;;) {
    const page = await backend.pull({ tables: [table], cursor, limit: PAGE })
    changes += page.changes.length
    pages++
    cursor = page.cursor
    if (!page.hasMore) return { changes, cursor, pages }
  }
}

/** What a hand-written client would do: select * keyset-paged by the primary key. */
async function rawSelectAll(client: SupabaseClient, table: string): Promise<number> {
  let last: string | null = null
  let total = 0
  for (;;) {
    let query = client.from(table).select('*').order('id').limit(PAGE)
    if (last !== null) query = query.gt('id', last)
    const { data, error } = await query
    if (error) throw new Error(`select ${table}: ${error.code} ${error.message}`)
    total += data.length
    if (data.length < PAGE) return total
    last = (data[data.length - 1] as { id: string }).id
  }
}

async function benchPush(stack: LocalStack, pool: pg.Pool): Promise<void> {
  const userId = randomUUID()
  const client = directClient(stack, userId, { expiresInSeconds: 3 * 3600 })
  const backend = createSupabaseBackend({ client })
  const db = stack.kind

  // Warm up every path once (connections, plans, schema cache).
  await rpcOrThrow(client, 'bench_bulk_upsert', { p_rows: rowsFor(100) })
  await backend.push(randomUUID(), rowsFor(100).map((r, i) => createOf(r, i + 1)))

  // Fresh rows (and a fresh client id) for every run, made before the clock starts.
  const contenders: Contender[] = [
    ['direct-sql', () => {
      const rows = JSON.stringify(rowsFor(PUSH_ROWS))
      return async () => {
        const result = await pool.query(
          `insert into public.bench_push (id, user_id, name, n)
           select r.id, $2, r.name, r.n from jsonb_to_recordset($1::jsonb) as r(id uuid, name text, n int)`,
          [rows, userId],
        )
        return result.rowCount ?? 0
      }
    }],
    ['bulk-rpc', () => {
      const rows = rowsFor(PUSH_ROWS)
      return async () => Number(await rpcOrThrow(client, 'bench_bulk_upsert', { p_rows: rows }))
    }],
    ...PUSH_BATCHES.map((batch): Contender => [`push-${batch}`, () => {
      const clientId = randomUUID()
      const parts = chunks(rowsFor(PUSH_ROWS).map((r, i) => createOf(r, i + 1)), batch)
      return async () => {
        let applied = 0
        for (const part of parts) {
          const outcomes = await backend.push(clientId, part)
          applied += outcomes.filter((o) => o.status === 'applied').length
        }
        return applied
      }
    }]),
  ]
  const samples = await interleaved(contenders, PUSH_ROUNDS, PUSH_ROWS)
  const rateOf = (name: string): number => PUSH_ROWS / (median(samples.get(name)!) / 1000)
  const directRate = rateOf('direct-sql')
  report(`push limit  direct SQL insert        ${PUSH_ROWS} rows  ${fmtRate(directRate)}`, {
    bench: 'push-limit', method: 'direct-sql', db, rows: PUSH_ROWS, rounds: PUSH_ROUNDS, ms: round(median(samples.get('direct-sql')!)), opsPerSec: round(directRate),
  })
  const bulkRate = rateOf('bulk-rpc')
  report(`push limit  one bulk-upsert RPC      ${PUSH_ROWS} rows  ${fmtRate(bulkRate)}`, {
    bench: 'push-limit', method: 'bulk-rpc', db, rows: PUSH_ROWS, rounds: PUSH_ROUNDS, ms: round(median(samples.get('bulk-rpc')!)), opsPerSec: round(bulkRate),
  })
  for (const batch of PUSH_BATCHES) {
    const rate = rateOf(`push-${batch}`)
    report(`push        supabase backend, batch ${String(batch).padEnd(4)} ${PUSH_ROWS} rows  ${fmtRate(rate)}  ratio to bulk RPC ${round(rate / bulkRate)}`, {
      bench: 'push', backend: 'supabase', db, rows: PUSH_ROWS, batch, rounds: PUSH_ROUNDS, ms: round(median(samples.get(`push-${batch}`)!)), opsPerSec: round(rate), ratio: round(rate / bulkRate, 3),
    })
  }
}

/** A named measurement: `prepare` readies one run (untimed) and returns it; the run resolves to the rows it handled. */
type Contender = [name: string, prepare: () => () => Promise<number>]

/**
 * Runs each contender once per round, in turn, checking each run handled `expected` rows; returns
 * the times per contender. One slow moment on a small machine then skews no one.
 */
async function interleaved(contenders: Contender[], rounds: number, expected: number): Promise<Map<string, number[]>> {
  const samples = new Map<string, number[]>(contenders.map(([name]) => [name, []]))
  for (let roundNo = 0; roundNo < rounds; roundNo++) {
    for (const [name, prepare] of contenders) {
      const { ms, value } = await timed(prepare())
      if (value !== expected) throw new Error(`${name} handled ${value} of ${expected} rows`)
      samples.get(name)!.push(ms)
    }
  }
  return samples
}

function createOf(row: { id: string; name: string; n: number }, seq: number): Mutation {
  return { seq, table: 'bench_push', action: 'create', id: row.id, data: { name: row.name, n: row.n }, baseVersion: null }
}

async function benchPull(stack: LocalStack, pool: pg.Pool): Promise<void> {
  const db = stack.kind
  for (const size of PULL_SIZES) {
    const table = size === 10_000 ? 'bench_pull_10k' : 'bench_pull_100k'
    const userId = randomUUID()
    await stack.query(
      `insert into public.${table} (user_id, name, n, note) select $1, 'row ' || g, g, md5(g::text) from generate_series(1, $2::int) g`,
      [userId, size],
    )
    // Settle the new rows (hint bits, statistics) so no run pays for that, or races autovacuum.
    await stack.query(`vacuum analyze public.${table}`)
    const client = directClient(stack, userId, { expiresInSeconds: 3 * 3600 })
    const contenders: Contender[] = [
      ['raw-select', () => () => rawSelectAll(client, table)],
      ['supabase', () => async () => (await pullToEnd(createSupabaseBackend({ client }), table, null)).changes],
      ['postgres', () => async () => (await pullToEnd(createPostgresBackend({ pool, user: { id: userId } }), table, null)).changes],
    ]
    const samples = await interleaved(contenders, PULL_ROUNDS, size)
    const rawMs = median(samples.get('raw-select')!)
    const rawRate = size / (rawMs / 1000)
    report(`pull limit  raw PostgREST select      ${size} rows  ${fmtRate(rawRate)}`, {
      bench: 'pull-limit', method: 'raw-select', db, rows: size, rounds: PULL_ROUNDS, ms: round(rawMs), opsPerSec: round(rawRate),
    })
    for (const name of ['supabase', 'postgres']) {
      const ms = median(samples.get(name)!)
      const rate = size / (ms / 1000)
      report(`pull        ${name.padEnd(8)} backend            ${size} rows  ${fmtRate(rate)}  ratio to raw select ${round(rate / rawRate)}`, {
        bench: 'pull', backend: name, db, rows: size, pages: Math.ceil(size / PAGE), rounds: PULL_ROUNDS, ms: round(ms), opsPerSec: round(rate), ratio: round(rate / rawRate, 3),
      })
    }
  }
}

async function benchLatency(stack: LocalStack): Promise<void> {
  const db = stack.kind
  const medians = new Map<number, number>()
  for (const [table, size] of [['bench_lat_small', SMALL_ROWS], ['bench_lat_large', LARGE_ROWS]] as const) {
    // The bulk belongs to other users: a shared table where this device sees only its own rows.
    const fill = await timed(() =>
      stack.query(
        `insert into public.${table} (user_id, name, n) select gen_random_uuid(), 'bulk ' || g, g from generate_series(1, $1::int) g`,
        [size],
      ),
    )
    await stack.query(`vacuum analyze public.${table}`)
    console.log(`latency     ${table}: ${size} rows written in ${(fill.ms / 1000).toFixed(1)} s`)

    const userId = randomUUID()
    const backend = createSupabaseBackend({ client: directClient(stack, userId, { expiresInSeconds: 3 * 3600 }) })
    const insertOwn = (count: number) =>
      stack.query(`insert into public.${table} (user_id, name) select $1, 'own ' || g from generate_series(1, $2::int) g`, [userId, count])

    await insertOwn(10)
    const catchUp = await timed(() => pullToEnd(backend, table, null))
    report(`latency     first pull (catch-up over ${size} rows, 10 visible)  ${catchUp.ms.toFixed(1)} ms`, {
      bench: 'pull-catch-up', backend: 'supabase', db, tableRows: size, changes: catchUp.value.changes, ms: round(catchUp.ms),
    })
    let cursor = catchUp.value.cursor

    const samples: number[] = []
    for (let i = 0; i < LATENCY_ROUNDS; i++) {
      await insertOwn(10)
      const { ms, value } = await timed(async () => {
        // Usually one call; a pull may hold back rows of a transaction still in flight elsewhere.
        let seen = 0
        let calls = 0
        while (seen < 10 && calls < 50) {
          const page = await backend.pull({ tables: [table], cursor, limit: PAGE })
          seen += page.changes.length
          cursor = page.cursor
          calls++
        }
        return seen
      })
      if (value !== 10) throw new Error(`expected 10 new changes, got ${value}`)
      samples.push(ms)
    }
    const mid = median(samples)
    medians.set(size, mid)
    const ratio = size === LARGE_ROWS ? mid / medians.get(SMALL_ROWS)! : 1
    report(
      `latency     pull of 10 new changes, ${String(size).padStart(7)} rows in table  median ${mid.toFixed(1)} ms  p90 ${percentile(samples, 0.9).toFixed(1)} ms` +
        (size === LARGE_ROWS ? `  ratio to ${SMALL_ROWS} rows ${round(ratio)}` : ''),
      { bench: 'pull-latency', backend: 'supabase', db, tableRows: size, changes: 10, rounds: LATENCY_ROUNDS, medianMs: round(mid), p90Ms: round(percentile(samples, 0.9)), ratio: round(ratio, 3) },
    )
  }
}

function fmtRate(rate: number): string {
  return `${Math.round(rate).toLocaleString('en-US').padStart(9)} rows/s`
}

export default async function protocolBench(): Promise<void> {
  const started = performance.now()
  const stack = await startLocalStack({ schemaSql: BENCH_SQL })
  const pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 })
  pool.on('error', () => undefined)
  console.log(`stack: ${stack.kind}${stack.kind === 'postgres' ? ' (DATABASE_URL)' : ' (embedded; set DATABASE_URL for PostgreSQL)'}, ready in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  try {
    if (PARTS.has('push')) await benchPush(stack, pool)
    if (PARTS.has('pull')) await benchPull(stack, pool)
    if (PARTS.has('latency')) await benchLatency(stack)
  } finally {
    await pool.end()
    await stack.stop()
  }
}
