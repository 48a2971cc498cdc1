-- sync-orchestrator server migration.
--
-- Makes tables syncable and exposes the RPC functions the client backends call:
--   sync_enable_table(regclass, text)        make a table syncable (run by the schema owner)
--   sync_push_runs(jsonb) -> json            exactly-once push of a batch given as runs (the backends')
--   sync_push(uuid, jsonb) -> json           the same for a batch given as a list of mutations
--   sync_pull(text[], jsonb, int, text) -> json  gapless, paged pull across tables
--   sync_checksum(text[]) -> jsonb           per-table checksum of the caller's live rows
--   sync_purge_tombstones(interval)          tombstone retention (service role / owner only)
--   sync_purge_idempotency(interval)         retention of push idempotency records
--
-- Requirements: PostgreSQL 15+ (xid8, `unique nulls not distinct`, `create or replace trigger`),
-- or PGlite. Supabase-like roles (anon, authenticated, service_role) and `auth.uid()` are used when
-- present; on a plain server `auth.uid()` is created reading the PostgREST claims GUC.
--
-- The migration is idempotent: running it again replaces functions and keeps data.
-- Every function runs as the caller (security invoker), so row level security applies.

create schema if not exists sync;
comment on schema sync is 'sync-orchestrator internals: syncable tables, push idempotency records.';

-- Drops a function whose declared return type is p_old, so the migration can redefine it with
-- another: `create or replace` cannot change a function's return type. Used by re-runs of this
-- migration over an older version of it.
create or replace function sync.drop_if_returns(p_signature text, p_old regtype) returns void
  language plpgsql
  set search_path = ''
as $$
declare
  v_fn regprocedure := pg_catalog.to_regprocedure(p_signature);
begin
  if v_fn is not null and (select p.prorettype from pg_catalog.pg_proc p where p.oid = v_fn) = p_old then
    execute pg_catalog.format('drop function %s', v_fn);
  end if;
end
$$;
revoke all on function sync.drop_if_returns(text, regtype) from public;

-- auth.uid() is Supabase's; provide the same definition on servers that lack it, so owner defaults
-- and RLS policies read the same claims everywhere.
do $$
begin
  if to_regprocedure('auth.uid()') is null then
    create schema if not exists auth;
    create function auth.uid() returns uuid
      language sql stable
      as $f$ select nullif(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', '')::uuid $f$;
  end if;
end
$$;

-- One row per syncable table. `server_ids`: the server assigns primary keys (identity, or a default
-- on a non-uuid key), so a create ignores the device's local id.
create table if not exists sync.tables (
  table_schema text not null,
  table_name text not null,
  pk_column text not null,
  pk_type text not null,
  pk_has_default boolean not null,
  server_ids boolean not null,
  owner_column text,
  -- Largest (xid, id) of a purged tombstone: a pull cursor below it may have missed a delete.
  purged_xid xid8,
  purged_id text,
  enabled_at timestamptz not null default now(),
  primary key (table_schema, table_name)
);
comment on table sync.tables is 'Tables made syncable by sync_enable_table, with their key and tombstone purge horizon.';

-- Exactly-once push: the stored outcomes of a client's applied mutations, per user. A record holds
-- one outcome (seq; first_seq null) or an applied group (sync.apply_run) whose seqs run from
-- first_seq to seq (its smallest and largest).
create table if not exists sync.idempotency (
  client_id uuid not null,
  seq bigint not null,
  user_id uuid default auth.uid(),
  outcome json,
  created_at timestamptz not null default now(),
  constraint idempotency_key unique nulls not distinct (client_id, seq, user_id)
);
-- Earlier versions stored jsonb; outcomes are stored as they are answered, as json.
do $$
begin
  if (select a.atttypid from pg_catalog.pg_attribute a
       where a.attrelid = 'sync.idempotency'::regclass and a.attname = 'outcome') = 'jsonb'::pg_catalog.regtype then
    alter table sync.idempotency alter column outcome type json using outcome::json;
  end if;
end
$$;
-- Earlier versions had one record per mutation.
alter table sync.idempotency add column if not exists first_seq bigint;
-- A group's record is large and read only when a batch is retried: stored uncompressed, it costs
-- the push nothing to compress.
alter table sync.idempotency alter column outcome set storage external;
-- A group's seqs, to tell cheaply whether a seq was applied (a pipelined batch's `after`); null when
-- they are every seq from first_seq to seq (the usual case).
alter table sync.idempotency add column if not exists seqs bigint[];
create index if not exists idempotency_created_at_idx on sync.idempotency (created_at);
comment on table sync.idempotency is 'Stored outcomes of pushed mutations: one per record, or an applied group of seqs first_seq..seq.';

alter table sync.idempotency enable row level security;
drop policy if exists idempotency_own on sync.idempotency;
-- `(select auth.uid())` is evaluated once per statement, not once per row.
create policy idempotency_own on sync.idempotency
  using (user_id is not distinct from (select auth.uid()))
  with check (user_id is not distinct from (select auth.uid()));

-- A device's pushes whose transaction wrote nothing in synced tables but the rows of its own
-- mutations (which it learns from the push's answer): a pull that leaves that device's rows out
-- (p_skip_node) jumps over these transactions' rows by index instead of reading them.
create table if not exists sync.own_xids (
  user_id uuid default auth.uid(),
  node text not null,
  xid xid8 not null,
  created_at timestamptz not null default now()
);
create index if not exists own_xids_key on sync.own_xids (user_id, node, xid);
create index if not exists own_xids_created_at_idx on sync.own_xids (created_at);
comment on table sync.own_xids is 'Transactions of pushes that wrote only the pushing device''s rows, by its clock node: pulls skipping that node jump over them.';

alter table sync.own_xids enable row level security;
drop policy if exists own_xids_own on sync.own_xids;
create policy own_xids_own on sync.own_xids
  using (user_id is not distinct from (select auth.uid()))
  with check (user_id is not distinct from (select auth.uid()));

-- ---------------------------------------------------------------------------------------------
-- Hybrid logical clock, same text format as the devices' (`hlc.ts`):
--   <15-digit zero-padded wall ms>:<5-digit zero-padded counter>:<node id>
-- Zero padding makes text order (collate "C") equal clock order.
-- Checks spell the node id as `[!-9;-~]+` with a length bound on the whole stamp, not as
-- `[!-9;-~]{1,128}`: PostgreSQL's regex engine expands a bounded repeat, and matching that form
-- cost about 5 µs a stamp, on every row written. For the same reason the digits are matched as
-- `[0-9]+:[0-9]+:` with the two colons' positions (16, 22) checked apart, which is the same as
-- `[0-9]{15}:[0-9]{5}:` (a node id holds no colon) at a third of the cost (~0.4 against ~1.3 µs).
-- ---------------------------------------------------------------------------------------------

create or replace function sync.hlc_is_valid(p_hlc text) returns boolean
  language sql immutable
  set search_path = ''
as $$ select p_hlc is not null and p_hlc collate "C" ~ '^[0-9]+:[0-9]+:[!-9;-~]+$' and pg_catalog.substr(p_hlc, 16, 1) = ':' and pg_catalog.substr(p_hlc, 22, 1) = ':' and pg_catalog.length(p_hlc) <= 150 $$;

-- A writer's stamp is kept only if well formed and at most a day ahead of the server clock (the
-- devices' default drift bound), so one device with a wild clock cannot pin a row's stamp.
create or replace function sync.hlc_acceptable(p_hlc text) returns boolean
  language sql volatile
  set search_path = ''
as $$
  select sync.hlc_is_valid(p_hlc)
     and pg_catalog.left(p_hlc, 15)::bigint
         <= floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint + 86400000
$$;

-- The next server stamp after p_prev (which may be null or from another node).
create or replace function sync.hlc_next(p_prev text) returns text
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_now bigint := floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint;
  v_wall bigint := v_now;
  v_counter int := 0;
  v_prev_wall bigint;
  v_prev_counter int;
begin
  if sync.hlc_is_valid(p_prev) then
    v_prev_wall := pg_catalog.left(p_prev, 15)::bigint;
    v_prev_counter := pg_catalog.substr(p_prev, 17, 5)::int;
    if v_prev_wall >= v_now then
      v_wall := v_prev_wall;
      v_counter := v_prev_counter + 1;
      if v_counter > 99999 then
        v_wall := v_wall + 1;
        v_counter := 0;
      end if;
    end if;
  end if;
  return pg_catalog.lpad(v_wall::text, 15, '0') || ':' || pg_catalog.lpad(v_counter::text, 5, '0') || ':server';
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Triggers installed on every syncable table.
-- ---------------------------------------------------------------------------------------------

-- BEFORE INSERT OR UPDATE: every write, from the engine or from plain SQL, moves the row to the
-- writing transaction's id (the pull watermark), bumps the version and stamps the clock.
-- The clock rules of hlc_acceptable and hlc_next are spelled out inline: this runs for every row
-- written, and a call to a function with its own search_path costs more than the whole stamp.
create or replace function sync.stamp_row() returns trigger
  language plpgsql
  set search_path = ''
as $$
declare
  v_now bigint := pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint;
  -- hlc_acceptable(new._hlc): well formed and at most a day ahead of the server clock.
  v_ok boolean := new._hlc is not null
                  and new._hlc collate "C" ~ '^[0-9]+:[0-9]+:[!-9;-~]+$' and pg_catalog.substr(new._hlc, 16, 1) = ':' and pg_catalog.substr(new._hlc, 22, 1) = ':' and pg_catalog.length(new._hlc) <= 150
                  and pg_catalog.left(new._hlc, 15)::bigint <= v_now + 86400000;
  v_prev text;
  v_wall bigint;
  v_counter int;
begin
  -- A row written by another trigger (a cascade, an app's trigger) is not one a device sent: its
  -- transaction is then not recorded as the pushing device's own (see sync.own_xids).
  if pg_catalog.pg_trigger_depth() > 1 then
    perform pg_catalog.set_config('sync.foreign_write', 'on', true);
  end if;
  new._xid := pg_catalog.pg_current_xact_id();
  new.updated_at := pg_catalog.now();
  if tg_op = 'INSERT' then
    new._version := 1;
    new._deleted := coalesce(new._deleted, false);
    if not v_ok then
      new._hlc := pg_catalog.lpad(v_now::text, 15, '0') || ':00000:server';   -- hlc_next(null)
    end if;
    return new;
  end if;

  new._version := old._version + 1;
  -- Keep the writer's stamp only when it moves the clock forward; otherwise stamp past both.
  if v_ok and (old._hlc is null or new._hlc collate "C" > old._hlc collate "C") then
    return new;
  end if;
  -- Here the writer's stamp is invalid or not past the old one: hlc_next(old._hlc).
  v_prev := old._hlc;
  v_wall := v_now;
  v_counter := 0;
  if v_prev is not null and v_prev collate "C" ~ '^[0-9]+:[0-9]+:[!-9;-~]+$' and pg_catalog.substr(v_prev, 16, 1) = ':' and pg_catalog.substr(v_prev, 22, 1) = ':' and pg_catalog.length(v_prev) <= 150
     and pg_catalog.left(v_prev, 15)::bigint >= v_now then
    v_wall := pg_catalog.left(v_prev, 15)::bigint;
    v_counter := pg_catalog.substr(v_prev, 17, 5)::int + 1;
    if v_counter > 99999 then
      v_wall := v_wall + 1;
      v_counter := 0;
    end if;
  end if;
  new._hlc := pg_catalog.lpad(v_wall::text, 15, '0') || ':' || pg_catalog.lpad(v_counter::text, 5, '0') || ':server';
  return new;
end
$$;

-- BEFORE DELETE: a plain-SQL DELETE becomes a soft delete (a tombstone devices pull), except while
-- sync_purge_tombstones runs. TG_ARGV[0] is the primary key column.
create or replace function sync.soft_delete_row() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if pg_catalog.current_setting('sync.purging', true) = 'on' then
    return old;
  end if;
  if not old._deleted then
    execute pg_catalog.format('update %I.%I set _deleted = true where %I = ($1).%I',
                              tg_table_schema, tg_table_name, tg_argv[0], tg_argv[0])
      using old;
  end if;
  return null;
end
$$;

-- Installs (or replaces) a syncable table's stamping triggers: sync_stamp before an insert,
-- sync_stamp_update before an update, each running sync.stamp_row. Each is skipped (its WHEN is
-- false) for a row that already holds exactly what stamp_row would give it: the writing
-- transaction's id, now(), version 1 (an insert) or the old version + 1 (an update), not deleted
-- (an insert), and a stamp stamp_row would keep, in a write not made by another trigger. Skipping
-- it then changes nothing but the cost: a PL/pgSQL call per row, about half of what a push's
-- insert of a row costs. The column defaults sync_enable_table adds give an insert all of these
-- but the stamp; a push's set-based run (sync.apply_run) writes them all. Any other write, and
-- every write from a trigger (which marks its transaction, see stamp_row), is stamped as before.
create or replace function sync.install_stamp_triggers(p_table regclass) returns void
  language plpgsql
  set search_path = ''
as $$
declare
  -- stamp_row's v_ok: well formed, at most a day ahead of the server clock (the cast only once the
  -- form is known good).
  c_acceptable constant text := $w$case when new._hlc collate "C" ~ '^[0-9]+:[0-9]+:[!-9;-~]+$' and pg_catalog.substr(new._hlc, 16, 1) = ':' and pg_catalog.substr(new._hlc, 22, 1) = ':' and pg_catalog.length(new._hlc) <= 150
      then pg_catalog.left(new._hlc, 15)::bigint <= pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()) * 1000)::bigint + 86400000
      else false end$w$;
  c_current constant text := 'pg_catalog.pg_trigger_depth() = 0 and new._xid = pg_catalog.pg_current_xact_id() and new.updated_at = pg_catalog.now()';
begin
  -- Earlier versions had one trigger for both.
  execute pg_catalog.format(
    'create or replace trigger sync_stamp before insert on %s for each row when (not coalesce(%s and new._version = 1 and new._deleted = false and %s, false)) execute function sync.stamp_row()',
    p_table, c_current, c_acceptable);
  execute pg_catalog.format(
    'create or replace trigger sync_stamp_update before update on %s for each row when (not coalesce(%s and new._version = old._version + 1 and %s and (old._hlc is null or new._hlc collate "C" > old._hlc collate "C"), false)) execute function sync.stamp_row()',
    p_table, c_current, c_acceptable);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- sync_enable_table
-- ---------------------------------------------------------------------------------------------

-- Adds (or checks) the sync columns, the owner column, the (_xid, pk) index and the triggers, and
-- records the table. Requirements: a single-column primary key. Safe to run again.
create or replace function public.sync_enable_table(p_table regclass, p_owner_column text default 'user_id')
  returns void
  language plpgsql
  security invoker
  set search_path = ''
as $$
declare
  v_schema text;
  v_name text;
  v_pk text;
  v_pk_type text;
  v_pk_default boolean;
  v_pk_identity boolean;
  v_type text;
  v_col record;
begin
  select n.nspname, c.relname into v_schema, v_name
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = p_table and c.relkind in ('r', 'p');
  if v_name is null then
    raise exception 'sync_enable_table: % is not a table', p_table using errcode = '42809';
  end if;

  select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
         a.atthasdef, a.attidentity <> ''
    into v_pk, v_pk_type, v_pk_default, v_pk_identity
    from pg_catalog.pg_constraint k
    join pg_catalog.pg_attribute a on a.attrelid = k.conrelid and a.attnum = k.conkey[1]
   where k.conrelid = p_table and k.contype = 'p' and pg_catalog.cardinality(k.conkey) = 1;
  if v_pk is null then
    raise exception 'sync_enable_table: % needs a single-column primary key', p_table using errcode = '42P16';
  end if;
  if v_pk in ('_version', '_xid', '_deleted', '_hlc') then
    raise exception 'sync_enable_table: the primary key of % cannot be a sync column', p_table using errcode = '42P16';
  end if;

  -- Existing sync columns must have the expected types; missing ones are added.
  for v_col in
    select * from (values ('_version', 'bigint', 'bigint not null default 1'),
                          ('_xid', 'xid8', 'xid8 not null default pg_catalog.pg_current_xact_id()'),
                          ('_deleted', 'boolean', 'boolean not null default false'),
                          ('_hlc', 'text', 'text'),
                          ('updated_at', 'timestamp with time zone', 'timestamptz not null default now()'))
           as t(name, type, ddl)
  loop
    select pg_catalog.format_type(a.atttypid, a.atttypmod) into v_type
      from pg_catalog.pg_attribute a
     where a.attrelid = p_table and a.attname = v_col.name and a.attnum > 0 and not a.attisdropped;
    if v_type is null then
      execute pg_catalog.format('alter table %s add column %I %s', p_table, v_col.name, v_col.ddl);
    elsif v_type <> v_col.type
          and not (v_col.name = 'updated_at' and v_type = 'timestamp without time zone') then
      raise exception 'sync_enable_table: %.% has type %, expected %', p_table, v_col.name, v_type, v_col.type
        using errcode = '42804';
    end if;
    v_type := null;
  end loop;

  if p_owner_column is not null then
    select pg_catalog.format_type(a.atttypid, a.atttypmod) into v_type
      from pg_catalog.pg_attribute a
     where a.attrelid = p_table and a.attname = p_owner_column and a.attnum > 0 and not a.attisdropped;
    if v_type is null then
      execute pg_catalog.format('alter table %s add column %I uuid default auth.uid()', p_table, p_owner_column);
    elsif v_type <> 'uuid' then
      raise exception 'sync_enable_table: owner column %.% has type %, expected uuid', p_table, p_owner_column, v_type
        using errcode = '42804';
    elsif not exists (select 1 from pg_catalog.pg_attrdef d join pg_catalog.pg_attribute a
                        on a.attrelid = d.adrelid and a.attnum = d.adnum
                       where d.adrelid = p_table and a.attname = p_owner_column) then
      execute pg_catalog.format('alter table %s alter column %I set default auth.uid()', p_table, p_owner_column);
    end if;
  end if;

  -- The pull scans this index from the cursor: cost follows the changes returned, not the table.
  execute pg_catalog.format('create index if not exists %I on %s (_xid, %I)',
                            pg_catalog.left(v_name, 48) || '_sync_xid_idx', p_table, v_pk);
  -- With the usual policy (owner = auth.uid()) the planner can scan only the caller's rows from
  -- the cursor: a device with nothing new does not walk every other user's newer rows.
  if p_owner_column is not null then
    execute pg_catalog.format('create index if not exists %I on %s (%I, _xid, %I)',
                              pg_catalog.left(v_name, 46) || '_sync_owner_idx', p_table, p_owner_column, v_pk);
  end if;

  perform sync.install_stamp_triggers(p_table);
  execute pg_catalog.format(
    'create or replace trigger sync_soft_delete before delete on %s for each row execute function sync.soft_delete_row(%L)',
    p_table, v_pk);

  insert into sync.tables as t (table_schema, table_name, pk_column, pk_type, pk_has_default, server_ids, owner_column)
  values (v_schema, v_name, v_pk, v_pk_type, v_pk_default or v_pk_identity,
          v_pk_identity or (v_pk_default and v_pk_type not in ('uuid', 'text')),
          p_owner_column)
  on conflict (table_schema, table_name) do update
    set pk_column = excluded.pk_column, pk_type = excluded.pk_type,
        pk_has_default = excluded.pk_has_default, server_ids = excluded.server_ids,
        owner_column = excluded.owner_column;
end
$$;

comment on function public.sync_enable_table(regclass, text) is
  'Make a table syncable: adds _version, _xid, _deleted, _hlc, updated_at and the owner column (uuid default auth.uid()) '
  'if missing, indexes on (_xid, pk) and (owner, _xid, pk), stamping triggers (insert, update) and a soft-delete trigger, and records the table in sync.tables.';

-- Tables made syncable by an earlier version of this migration get the current triggers.
do $$
declare
  v_table regclass;
begin
  for v_table in
    select pg_catalog.to_regclass(pg_catalog.format('%I.%I', t.table_schema, t.table_name)) from sync.tables t
  loop
    if v_table is not null then
      perform sync.install_stamp_triggers(v_table);
    end if;
  end loop;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Internal helpers
-- ---------------------------------------------------------------------------------------------

-- The registration of a syncable table by its unqualified name in `public` (42P01 if it does not
-- exist, 55000 if it is not syncable).
create or replace function sync.table_info(p_table text) returns sync.tables
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_info sync.tables;
begin
  select * into v_info from sync.tables t where t.table_schema = 'public' and t.table_name = p_table;
  if not found then
    if p_table is null or pg_catalog.to_regclass(pg_catalog.format('public.%I', p_table)) is null then
      raise exception 'relation "%" does not exist', p_table using errcode = '42P01';
    end if;
    raise exception 'table "%" is not syncable', p_table
      using errcode = '55000', hint = 'Run select sync_enable_table(''public.' || p_table || ''') first.';
  end if;
  return v_info;
end
$$;

-- The row as devices see it: no sync columns.
create or replace function sync.public_row(p_row jsonb) returns jsonb
  language sql immutable
  set search_path = ''
as $$ select p_row operator(pg_catalog.-) '{_version,_xid,_deleted,_hlc}'::text[] $$;

-- Writable columns named in p_data (sync columns and, for update, the key dropped); raises 42703
-- for a column the table does not have.
create or replace function sync.data_columns(p_info sync.tables, p_data jsonb, p_keep_pk boolean) returns text[]
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_cols text[] := '{}';
  v_key text;
begin
  for v_key in select jsonb_object_keys(p_data) loop
    continue when v_key in ('_version', '_xid', '_deleted', '_hlc');
    continue when v_key = p_info.pk_column and not p_keep_pk;
    if not exists (select 1 from pg_catalog.pg_attribute a
                    where a.attrelid = pg_catalog.format('%I.%I', p_info.table_schema, p_info.table_name)::regclass
                      and a.attname = v_key and a.attnum > 0 and not a.attisdropped) then
      raise exception 'column "%" of relation "%" does not exist', v_key, p_info.table_name using errcode = '42703';
    end if;
    v_cols := v_cols || v_key;
  end loop;
  return v_cols;
end
$$;

-- Applies one validated mutation and returns its outcome (without seq). Errors propagate to the
-- caller's subtransaction, which turns them into a `rejected` outcome.
create or replace function sync.apply_mutation(p_table text, p_action text, p_id text, p_data jsonb,
                                               p_base_version bigint, p_hlc text) returns jsonb
  language plpgsql
  set search_path = ''
as $$
declare
  v_info sync.tables := sync.table_info(p_table);
  v_rel text := pg_catalog.format('%I.%I', v_info.table_schema, v_info.table_name);
  v_key_match text := pg_catalog.format('t.%I = cast($1 as %s)', v_info.pk_column, v_info.pk_type);
  v_data jsonb := coalesce(p_data, '{}'::jsonb);
  v_hlc text := case when sync.hlc_acceptable(p_hlc) then p_hlc end;
  v_cols text[];
  v_current jsonb;
  v_row jsonb;
begin
  if pg_catalog.jsonb_typeof(v_data) <> 'object' then
    raise exception 'data must be an object or null' using errcode = '22023';
  end if;

  if p_action = 'create' then
    if v_info.server_ids then
      v_cols := sync.data_columns(v_info, v_data, false);
    else
      v_data := v_data || pg_catalog.jsonb_build_object(v_info.pk_column, p_id);
      v_cols := sync.data_columns(v_info, v_data, true);
      execute pg_catalog.format('select to_jsonb(t) from %s t where %s', v_rel, v_key_match)
        into v_current using p_id;
      if v_current is not null then
        return pg_catalog.jsonb_build_object('status', 'conflict', 'row', sync.public_row(v_current),
          'version', v_current -> '_version', 'deleted', v_current -> '_deleted', 'hlc', v_current -> '_hlc');
      end if;
    end if;
    v_cols := v_cols || '_hlc'::text;
    v_data := v_data || pg_catalog.jsonb_build_object('_hlc', v_hlc);
    execute pg_catalog.format('insert into %s as t (%s) select %s from pg_catalog.jsonb_populate_record(null::%s, $1) r returning to_jsonb(t)',
        v_rel,
        (select pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ') from pg_catalog.unnest(v_cols) c),
        (select pg_catalog.string_agg('r.' || pg_catalog.quote_ident(c), ', ') from pg_catalog.unnest(v_cols) c),
        v_rel)
      into v_row using v_data;
    return pg_catalog.jsonb_build_object('status', 'applied', 'row', sync.public_row(v_row),
      'version', v_row -> '_version', 'hlc', v_row -> '_hlc');
  end if;

  -- update / delete: lock the visible row (RLS update policies apply to FOR UPDATE).
  execute pg_catalog.format('select to_jsonb(t) from %s t where %s for update', v_rel, v_key_match)
    into v_current using p_id;
  if v_current is null then
    raise exception 'row % of table % does not exist or is not visible', p_id, p_table using errcode = 'P0002';
  end if;

  if p_action = 'delete' and (v_current ->> '_deleted')::boolean then
    -- Already a tombstone: the desired state holds; nothing changes.
    return pg_catalog.jsonb_build_object('status', 'applied', 'row', sync.public_row(v_current),
      'version', v_current -> '_version', 'hlc', v_current -> '_hlc');
  end if;

  -- An update of a tombstone is a conflict unless the device saw that deletion (its base version
  -- is the tombstone's), in which case the write restores the row.
  if (p_base_version is not null and p_base_version <> (v_current ->> '_version')::bigint)
     or (p_action = 'update' and (v_current ->> '_deleted')::boolean and p_base_version is null) then
    return pg_catalog.jsonb_build_object('status', 'conflict', 'row', sync.public_row(v_current),
      'version', v_current -> '_version', 'deleted', v_current -> '_deleted', 'hlc', v_current -> '_hlc');
  end if;

  if p_action = 'delete' then
    execute pg_catalog.format('update %s as t set _deleted = true, _hlc = $2 where %s returning to_jsonb(t)',
                              v_rel, v_key_match)
      into v_row using p_id, v_hlc;
  else
    v_cols := sync.data_columns(v_info, v_data, false);
    execute pg_catalog.format('update %s as t set %s _deleted = false, _hlc = $2 from pg_catalog.jsonb_populate_record(null::%s, $3) r where %s returning to_jsonb(t)',
        v_rel,
        coalesce((select pg_catalog.string_agg(pg_catalog.format('%I = r.%I', c, c), ', ') || ',' from pg_catalog.unnest(v_cols) c), ''),
        v_rel, v_key_match)
      into v_row using p_id, v_hlc, v_data;
  end if;
  if v_row is null then
    -- The row was visible to select but the write affected nothing (e.g. an update policy).
    raise exception 'row % of table % is not writable', p_id, p_table using errcode = '42501';
  end if;
  return pg_catalog.jsonb_build_object('status', 'applied', 'row', sync.public_row(v_row),
    'version', v_row -> '_version', 'hlc', v_row -> '_hlc');
end
$$;

-- Applies a run of consecutive mutations of one table, one action and one set of data keys, with
-- distinct ids, as set-based statements. It gives each mutation the outcome apply_mutation would
-- give it, or raises: the caller then rolls the run back and applies its mutations one by one.
-- p_keys: the data keys without sync columns; p_data: a JSON array of the data objects; p_stamps:
-- each writer stamp if acceptable, else null. Creates of tables with server-assigned keys are not
-- handled here (the new rows cannot be matched back to their mutations by key).
-- Outcomes are built as json, not jsonb: a row goes out as text, and building jsonb for it first
-- costs more than the write itself.
-- Answers: o_outcomes, one outcome (with seq) per mutation, in order, and their seqs (o_seqs).
-- With p_partial, the applied writes whose stored values of the sent columns and stamp equal the
-- sent ones (the usual case) are answered together instead, by o_group, and only the others are
-- in o_outcomes: o_group is one applied group, column by column, its members in batch order
-- (o_group_seqs):
--   {"seqs": [...], "status": "applied", "partial": true, "version": [...] | v, "hlc": [...] | null,
--    "row": {column: [...], ...}, "same": {column: value, ...} | null}
-- whose rows hold only the columns other than the sent ones (the columns the mutations did not
-- send, the key unless sent in the data or p_key_sent, and sent columns of a type without
-- equality such as json); the device completes each from the data and the stamp it sent ("hlc" is
-- null unless a mutation sent none, the server's stamp then being the only one; p_key_sent: the
-- device left the key, each mutation's id, out of data that held it). A column whose value is the
-- same in every written row (a default, now(), the owner) is given once, in "same", and so is the
-- version (a number) when every row has the same. A write that changed a sent column (a
-- trigger, a cast) or the stamp is answered on its own, with the whole row. Building one object
-- per mutation, or one value per row of a column that is alike in all, costs more than the write.
-- Earlier versions had no p_partial, then returned json[]; their groups had "hlc": [...], and
-- "version" and "row" always per member, then no p_key_sent.
drop function if exists sync.apply_run(sync.tables, text, text[], bigint[], text[], jsonb, numeric[], text[]);
drop function if exists sync.apply_run(sync.tables, text, text[], bigint[], text[], jsonb, numeric[], text[], boolean);

-- Whether values of a type can be compared with `is not distinct from` (a default btree operator
-- class for the type, its base type or its element type); json, xml or geometric types cannot.
create or replace function sync.has_equality(p_type oid) returns boolean
  language plpgsql stable
  set search_path = ''
as $$
-- plpgsql, not sql: its plans are kept for the session, and push asks for every column it writes.
declare
  v_type oid := p_type;
  v_kind "char";
  v_category "char";
  v_next oid;
begin
  -- Down through domains (to the base type) and arrays (to the element type), at most 8 levels.
  for v_depth in 0 .. 8 loop
    select case when ty.typtype = 'd' then ty.typbasetype
                when ty.typcategory = 'A' and ty.typelem <> 0 then ty.typelem end,
           ty.typtype, ty.typcategory
      into v_next, v_kind, v_category
      from pg_catalog.pg_type ty where ty.oid = v_type;
    if not found then
      return false;
    end if;
    exit when v_next is null or v_depth = 8;
    v_type := v_next;
  end loop;
  return v_kind = 'e' or v_category = 'S'
      or exists (select 1 from pg_catalog.pg_opclass o join pg_catalog.pg_am am on am.oid = o.opcmethod
                  where am.amname = 'btree' and o.opcdefault and o.opcintype = v_type);
end
$$;

-- A set-based run's statements are built per table, action and sent columns, and are large: parsing
-- and planning one anew on every call (as `execute` does) cost ~2.5 ms, most of a small push. So
-- each runs as a prepared statement of the session, named after its text and prepared on first
-- use; its arguments go in as literals. It runs with its generic plan from the first run (planned
-- once per session, for arrays of any length): PostgreSQL would plan each of the first five runs
-- afresh, ~2 ms each for a run of 1000, before settling on that same plan. A session keeps at most
-- 32 of them, dropping the oldest. Prepared statements outlive a transaction, even one rolled
-- back, and a pooler that moves sessions between connections only makes a statement be prepared
-- again.

-- The `execute` of p_sql prepared under its name, with p_args (texts, null for null) as arguments.
create or replace function sync.prepared_call(p_sql text, p_args text[]) returns text
  language plpgsql immutable
  set search_path = ''
as $$
begin
  return pg_catalog.format('execute %I(%s)', 'sync_run_' || pg_catalog.md5(p_sql),
    pg_catalog.array_to_string(array(select pg_catalog.quote_nullable(u.a) from pg_catalog.unnest(p_args) with ordinality u(a, n)
                                      order by u.n), ', '));
end
$$;

-- Prepares p_sql (parameters of p_types, e.g. 'bigint[], jsonb') under the name prepared_call uses.
create or replace function sync.prepare_run(p_sql text, p_types text) returns void
  language plpgsql
  set search_path = ''
as $$
declare
  v_oldest text;
begin
  select p.name into v_oldest
    from pg_catalog.pg_prepared_statements p
   where p.name like 'sync\_run\_%'
   order by p.prepare_time desc
  offset 31 limit 1;
  if v_oldest is not null then
    execute pg_catalog.format('deallocate %I', v_oldest);
  end if;
  execute pg_catalog.format('prepare %I(%s) as %s', 'sync_run_' || pg_catalog.md5(p_sql), p_types, p_sql);
end
$$;

-- Executes a run's statement p_sql (parameters of p_types) with p_args as the prepared statement of
-- the session, preparing it first if the session has none (or a pooler dropped it). Every run
-- statement answers these five columns.
create or replace function sync.execute_run(p_sql text, p_types text, p_args text[],
                                            out o_outcomes json[], out o_seqs bigint[], out o_complete boolean,
                                            out o_group json, out o_group_seqs bigint[])
  language plpgsql
  set search_path = ''
  set plan_cache_mode = force_generic_plan
as $$
declare
  v_call text := sync.prepared_call(p_sql, p_args);
begin
  begin
    execute v_call into o_outcomes, o_seqs, o_complete, o_group, o_group_seqs;
  exception when invalid_sql_statement_name then
    perform sync.prepare_run(p_sql, p_types);
    execute v_call into o_outcomes, o_seqs, o_complete, o_group, o_group_seqs;
  end;
end
$$;

create or replace function sync.apply_run(p_info sync.tables, p_action text, p_keys text[], p_seqs bigint[],
                                          p_ids text[], p_data jsonb, p_bases numeric[], p_stamps text[],
                                          p_partial boolean, p_key_sent boolean,
                                          out o_outcomes json[], out o_seqs bigint[], out o_group json, out o_group_seqs bigint[])
  language plpgsql
  set search_path = ''
as $$
declare
  v_rel text := pg_catalog.format('%I.%I', p_info.table_schema, p_info.table_name);
  v_data jsonb := p_data;
  v_cols text[] := array(select k from pg_catalog.unnest(p_keys) k where k <> p_info.pk_column);
  v_row_cols text[];
  v_same_cols text[];     -- sent columns a partial answer leaves out when their values are unchanged
  v_var_cols text[];      -- the other columns (but the sync columns), which a partial answer holds
  v_uni_cols text[];      -- of those, the ones with equality: given once when alike in every written row
  v_key text;
  -- A create run's owner column when its rows leave it to its default `auth.uid()`: written as
  -- `(select auth.uid())`, the caller's id found once for the run. As a default it is evaluated for
  -- every row, and reading the id from the request's JWT claims (text parsed as jsonb) cost ~2 µs a
  -- row, a fifth of what inserting a row costs.
  v_owner text;
  v_complete boolean;
  -- Outcome builders; %1$s is the alias of a written or current row (all the table's columns),
  -- %2$s the row as devices see it (every column but the sync columns, as pull sends it).
  c_applied constant text := $f$pg_catalog.json_build_object('seq', s."sync.seq", 'status', 'applied',
      'row', pg_catalog.to_json(%2$s), 'version', %1$s._version, 'hlc', %1$s._hlc)$f$;
  c_conflict constant text := $f$pg_catalog.json_build_object('seq', s."sync.seq", 'status', 'conflict',
      'row', pg_catalog.to_json(%2$s), 'version', %1$s._version, 'deleted', %1$s._deleted, 'hlc', %1$s._hlc)$f$;
  -- The mutations, zipped with their data as records of the table. The aliased columns' names
  -- cannot clash silently with the table's: a clash makes the statement fail (and the run go one by
  -- one).
  c_rows constant text := $f$rows from (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[]),
      pg_catalog.unnest($3::text[]), pg_catalog.jsonb_populate_recordset(null::%1$s, $4))
      with ordinality as s("sync.seq", "sync.id", "sync.hlc")$f$;
  -- The same with each mutation's base version, for update and delete runs.
  c_rows_base constant text := $f$rows from (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[]),
      pg_catalog.unnest($3::text[]), pg_catalog.unnest($5::numeric[]), pg_catalog.jsonb_populate_recordset(null::%1$s, $4))
      with ordinality as s("sync.seq", "sync.id", "sync.hlc", "sync.base")$f$;
  -- Whether an update or delete may write over row %1$s, as apply_mutation decides: not a delete
  -- of a tombstone, the base version matching or absent, not an update of a tombstone unseen.
  c_writable constant text := $f$(not ($6 = 'delete' and %1$s._deleted)
      and (s."sync.base" is null or s."sync.base"::bigint = %1$s._version)
      and not ($6 = 'update' and %1$s._deleted and s."sync.base" is null))$f$;
  -- `cross join lateral (select a.c1, a.c2, ...) alias`: the row of alias `a` as devices see it.
  c_public constant text := 'cross join lateral (select %s) %s';
  v_w text;               -- alias of a written row
  v_grouped text;         -- whether a mutation's outcome goes in the group: applied, sent values kept
  v_group text;           -- the group's aggregates
  v_alike text;           -- CTEs telling which columns are alike in every written row, and their values
  -- Types sync.has_equality says true of, without asking it.
  c_equality_types constant pg_catalog.regtype[] := '{bool,int2,int4,int8,float4,float8,numeric,text,varchar,bpchar,
    uuid,date,time,timestamp,timestamptz,interval,jsonb,bytea,bool[],int2[],int4[],int8[],float4[],float8[],numeric[],
    text[],varchar[],bpchar[],uuid[],date[],timestamp[],timestamptz[],jsonb[]}';
  v_public text;          -- the laterals of a written row
  v_sql text;             -- a statement of the run (run by sync.execute_run)
begin
  -- A sent key counts as a sent column: a create's data usually holds its row's key, or the device
  -- left it out of the data (p_key_sent) as each mutation's id is that key.
  select pg_catalog.array_agg(a.attname::text order by a.attnum),
         pg_catalog.array_agg(a.attname::text order by a.attnum) filter (where a.same),
         pg_catalog.array_agg(a.attname::text order by a.attnum) filter (where not a.same),
         pg_catalog.array_agg(a.attname::text order by a.attnum) filter (where not a.same and a.eq)
    into v_row_cols, v_same_cols, v_var_cols, v_uni_cols
    from (select a.attname, a.attnum, e.eq, e.eq and (a.attname = any (p_keys) or p_key_sent and a.attname = p_info.pk_column) as same
            from pg_catalog.pg_attribute a
            -- (sync.has_equality costs ~0.1 ms a call: the common types are known)
            cross join lateral (select p_partial and (a.atttypid = any (c_equality_types)
                                                      or a.atttypid <> 'json'::pg_catalog.regtype and sync.has_equality(a.atttypid)) as eq) e
           where a.attrelid = v_rel::regclass and a.attnum > 0 and not a.attisdropped
             and a.attname not in ('_version', '_xid', '_deleted', '_hlc')) a;

  -- The key of each mutation's row. A cast is what jsonb_populate_record does for these types; for
  -- others (e.g. varchar(n), where a cast truncates) the id goes through the data. The key is
  -- computed before the row lookup: a cast is not leakproof, so with row level security a lookup
  -- by `pk = cast(...)` could not use the key's index and would read every row the owner's index
  -- gives, for every mutation. Hence `with s as materialized`: a CTE referenced once is otherwise
  -- inlined, and the cast with it.
  if p_info.pk_type in ('uuid', 'text', 'bigint', 'integer', 'smallint') then
    v_key := pg_catalog.format('cast(s."sync.id" as %s)', p_info.pk_type);
  else
    v_key := pg_catalog.format('s.%I', p_info.pk_column);
    select pg_catalog.jsonb_agg(x.d || pg_catalog.jsonb_build_object(p_info.pk_column, x.id) order by x.n) into v_data
      from rows from (pg_catalog.jsonb_array_elements(p_data), pg_catalog.unnest(p_ids)) with ordinality x(d, id, n);
  end if;

  if p_action = 'create' and p_info.owner_column is not null and not (p_info.owner_column = any (v_cols)) then
    select a.attname into v_owner
      from pg_catalog.pg_attribute a join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
     where a.attrelid = v_rel::regclass and a.attname = p_info.owner_column and not a.attisdropped
       and pg_catalog.pg_get_expr(d.adbin, d.adrelid) = 'auth.uid()';
  end if;

  -- The outcome of a written row (alias i for an insert, w for an update) and the laterals it needs.
  v_w := case when p_action = 'create' then 'i' else 'w' end;
  v_public := pg_catalog.format(c_public, (select pg_catalog.string_agg(v_w || '.' || pg_catalog.quote_ident(c), ', ') from pg_catalog.unnest(v_row_cols) c), '"sync.rw"');
  if v_same_cols is null then
    v_grouped := 'false';
    v_group := 'null::json, null::bigint[]';
    v_alike := '';
  else
    -- Grouped: written, with the sent values and the sent stamp (if any) kept.
    v_grouped := pg_catalog.format('(%s is not null and row(%s) is not distinct from row(%s) and (s."sync.hlc" is null or %s._hlc = s."sync.hlc"))',
      case when p_action = 'create' then pg_catalog.format('i.%I', p_info.pk_column) else 'w."sync.n"' end,
      (select pg_catalog.string_agg(v_w || '.' || pg_catalog.quote_ident(c), ', ') from pg_catalog.unnest(v_same_cols) c),
      -- (a key left out of the data is the mutation's id)
      (select pg_catalog.string_agg(case when p_key_sent and c = p_info.pk_column then 's."sync.key"' else 's.' || pg_catalog.quote_ident(c) end, ', ')
         from pg_catalog.unnest(v_same_cols) c),
      v_w);
    -- Which columns (and version) hold the same value in every written row ("sync.u", from the
    -- first written row "sync.f"), and those values ("sync.same"): a default, now(), the owner.
    v_alike := pg_catalog.format(
      $a$, "sync.f" as (select * from %1$s limit 1),
         "sync.u" as (select pg_catalog.bool_and(x._version = f._version) as "sync.version"%2$s from %1$s x cross join "sync.f" f),
         "sync.same" as (select pg_catalog.json_object_agg(x.k, x.v) as j
                           from "sync.f" f cross join "sync.u" u
                           cross join lateral rows from (pg_catalog.unnest(%3$s::text[]), pg_catalog.unnest(%4$s::boolean[]), pg_catalog.unnest(%5$s::json[])) x(k, alike, v)
                          where x.alike)$a$,
      case when p_action = 'create' then 'ins' else 'w' end,
      (select pg_catalog.string_agg(pg_catalog.format(', pg_catalog.bool_and(x.%1$I is not distinct from f.%1$I) as %1$I', c), '')
         from pg_catalog.unnest(v_uni_cols) c),
      pg_catalog.quote_literal(coalesce(v_uni_cols, '{}')),
      'array[' || coalesce((select pg_catalog.string_agg(pg_catalog.format('u.%I', c), ', ') from pg_catalog.unnest(v_uni_cols) c), '') || ']',
      'array[' || coalesce((select pg_catalog.string_agg(pg_catalog.format('pg_catalog.to_json(f.%I)', c), ', ') from pg_catalog.unnest(v_uni_cols) c), '') || ']');
    -- Members in batch order (`order by s.ordinality`), so a device can read a group by position:
    -- the join of written rows back to the batch follows the key order once the planner merge-joins
    -- (about a thousand rows on PostgreSQL). Sorting a presorted thousand costs nothing measurable.
    -- A column alike in every written row is in "same" and not aggregated (its filter is false).
    v_group := pg_catalog.format(
      $g$case when pg_catalog.bool_or(%1$s) then pg_catalog.json_build_object('seqs', pg_catalog.array_agg(s."sync.seq" order by s.ordinality) filter (where %1$s),
           'status', 'applied', 'partial', true,
           'version', case when (select u."sync.version" from "sync.u" u) then (select pg_catalog.to_json(f._version) from "sync.f" f)
                           else pg_catalog.json_agg(%2$s._version order by s.ordinality) filter (where %1$s and not (select u."sync.version" from "sync.u" u)) end,
           'hlc', pg_catalog.json_agg(%2$s._hlc order by s.ordinality) filter (where %1$s and (select pg_catalog.bool_or(h is null) from pg_catalog.unnest($3::text[]) h)),
           'row', coalesce((select pg_catalog.json_object_agg(x.k, x.v) from rows from (pg_catalog.unnest(%3$s::text[]), pg_catalog.unnest(array[%4$s]::json[])) x(k, v)
                             where x.v is not null), '{}'::json),
           'same', (select sm.j from "sync.same" sm)) end,
         pg_catalog.array_agg(s."sync.seq" order by s.ordinality) filter (where %1$s)$g$,
      v_grouped, v_w,
      pg_catalog.quote_literal(coalesce(v_var_cols, '{}')),
      (select pg_catalog.string_agg(pg_catalog.format('pg_catalog.json_agg(%s.%I order by s.ordinality) filter (where %s%s)', v_w, c, v_grouped,
                 case when c = any (v_uni_cols) then pg_catalog.format(' and not (select u.%I from "sync.u" u)', c) else '' end), ', ')
         from pg_catalog.unnest(v_var_cols) c));
  end if;

  if p_action = 'create' then
    if p_info.server_ids then
      raise exception 'apply_run: creates with server-assigned keys are applied one by one';
    end if;
    -- Insert every row. Usually none exists yet, and a plain insert is the cheapest: no arbiter
    -- probe before each row. If one does (a unique violation), the statement runs again with
    -- `on conflict do nothing`: a row that exists already (committed, or by a concurrent
    -- transaction that then commits) is skipped and looked up: visible, it is a conflict; invisible
    -- (another user's), the run is incomplete and its mutations go one by one, which rejects that
    -- one (23505). Any other rejected row fails the insert: the caller then finds out which, one
    -- by one.
    for v_try in 0 .. 1 loop
      begin
        v_sql := pg_catalog.format(
          $q$with s as materialized (select s.*, %4$s as "sync.key" from %1$s),
                  ins as (insert into %2$s as t (%5$s %3$I, _hlc)
                          select %6$s s."sync.key", s."sync.hlc" from s order by s.ordinality
                          %14$s
                          returning t.*),
                  cur as (select s.ordinality as "sync.n", c.*
                            from s cross join lateral (select t.* from %2$s t where t.%3$I = s."sync.key" limit 1) c
                           where %15$s and not exists (select 1 from ins where ins.%3$I = s."sync.key"))%13$s
             select pg_catalog.array_agg(case when i.%3$I is not null then %8$s else %7$s end order by s.ordinality)
                      filter (where not %11$s),
                    pg_catalog.array_agg(s."sync.seq" order by s.ordinality) filter (where not %11$s),
                    pg_catalog.bool_and(c."sync.n" is not null or i.%3$I is not null), %12$s
               from s left join ins i on i.%3$I = s."sync.key" left join cur c on c."sync.n" = s.ordinality
               %9$s %10$s$q$,
          pg_catalog.format(c_rows, v_rel), v_rel, p_info.pk_column, v_key,
          coalesce((select pg_catalog.string_agg(pg_catalog.quote_ident(c) || ', ', '') from pg_catalog.unnest(v_cols) c), '')
            || coalesce(pg_catalog.quote_ident(v_owner) || ', ', ''),
          coalesce((select pg_catalog.string_agg('s.' || pg_catalog.quote_ident(c) || ', ', '') from pg_catalog.unnest(v_cols) c), '')
            || case when v_owner is null then '' else '(select auth.uid()), ' end,
          pg_catalog.format(c_conflict, 'c', '"sync.rc"'), pg_catalog.format(c_applied, v_w, '"sync.rw"'),
          v_public,
          pg_catalog.format(c_public, (select pg_catalog.string_agg('c.' || pg_catalog.quote_ident(c), ', ') from pg_catalog.unnest(v_row_cols) c), '"sync.rc"'),
          v_grouped, v_group, v_alike,
          case when v_try = 1 then pg_catalog.format('on conflict (%I) do nothing', p_info.pk_column) else '' end,
          case when v_try = 1 then 'true' else 'false' end);
        select * into o_outcomes, o_seqs, v_complete, o_group, o_group_seqs
          from sync.execute_run(v_sql, 'bigint[], text[], text[], jsonb', array[p_seqs::text, p_ids::text, p_stamps::text, v_data::text]);
        exit;
      exception when unique_violation then
        if v_try = 1 then
          raise;
        end if;
      end;
    end loop;
  else
    -- One statement: write the rows whose current version the mutation may write over, as
    -- apply_mutation decides (not missing, not a delete of a tombstone, base version matching or
    -- absent), then answer the others from the statement's snapshot: missing, done (a delete of a
    -- tombstone) or conflict. The write's condition is on the row it writes: a row changed by a
    -- concurrent transaction is re-checked on its new version (read committed). A row the snapshot
    -- says was writable but that was not written (changed concurrently, an update policy or a
    -- trigger skipped it) leaves the run incomplete, and so does a key sent twice (an update joins
    -- a row once): the caller then applies the run one by one, locking each row.
    v_sql := pg_catalog.format(
      $q$with s as materialized (select s.*, %4$s as "sync.key" from %1$s),
              w as (update %2$s as t set %5$s
                      from s
                     where t.%3$I = s."sync.key" and %14$s
                    returning s.ordinality as "sync.n", t.*),
              -- The rows not written (usually none), then each one's current row by its key: a
              -- lateral with a limit, so it stays a lookup by key per row left, not a join with
              -- all of the owner's rows.
              rest as materialized (select s.* from s where not exists (select from w where w."sync.n" = s.ordinality)),
              cur as (select r.ordinality as "sync.n", c.*
                        from rest r cross join lateral (select t.* from %2$s t where t.%3$I = r."sync.key" limit 1) c)%13$s
         select pg_catalog.array_agg(case
                  when w."sync.n" is not null then %8$s
                  when c."sync.n" is null then pg_catalog.json_build_object('seq', s."sync.seq", 'status', 'rejected', 'code', 'P0002',
                    'message', pg_catalog.format('row %%s of table %%s does not exist or is not visible', s."sync.id", $7::text))
                  when $6 = 'delete' and c._deleted then %6$s
                  else %7$s end order by s.ordinality) filter (where not %11$s),
                pg_catalog.array_agg(s."sync.seq" order by s.ordinality) filter (where not %11$s),
                pg_catalog.bool_and(w."sync.n" is not null or c."sync.n" is null or not %15$s)
                  and pg_catalog.count(distinct s."sync.key") = pg_catalog.count(*), %12$s
           from s left join w on w."sync.n" = s.ordinality left join cur c on c."sync.n" = s.ordinality
           %9$s %10$s$q$,
      pg_catalog.format(c_rows_base, v_rel), v_rel, p_info.pk_column, v_key,
      -- Each row written with what sync.stamp_row would give it when it keeps the sent stamp, so
      -- the stamping trigger is skipped for it (see sync.install_stamp_triggers); a stamp it would
      -- not keep makes it run. A sent updated_at is the trigger's to set, as it always was.
      case when p_action = 'delete' then '_deleted = true, '
           else (select pg_catalog.string_agg(pg_catalog.format('%I = s.%I, ', c, c), '') from pg_catalog.unnest(v_cols) c where c <> 'updated_at')
                || '_deleted = false, ' end
        || '_hlc = s."sync.hlc", _version = t._version + 1, _xid = pg_catalog.pg_current_xact_id(), updated_at = pg_catalog.now()',
      pg_catalog.format(c_applied, 'c', '"sync.rc"'), pg_catalog.format(c_conflict, 'c', '"sync.rc"'),
      pg_catalog.format(c_applied, v_w, '"sync.rw"'),
      v_public,
      pg_catalog.format(c_public, (select pg_catalog.string_agg('c.' || pg_catalog.quote_ident(c), ', ') from pg_catalog.unnest(v_row_cols) c), '"sync.rc"'),
      v_grouped, v_group, v_alike, pg_catalog.format(c_writable, 't'), pg_catalog.format(c_writable, 'c'));
    select * into o_outcomes, o_seqs, v_complete, o_group, o_group_seqs
      from sync.execute_run(v_sql, 'bigint[], text[], text[], jsonb, numeric[], text, text',
                            array[p_seqs::text, p_ids::text, p_stamps::text, v_data::text, p_bases::text, p_action, p_info.table_name::text]);
  end if;
  if not v_complete then
    -- A row was neither written nor answered (e.g. a trigger skipped it): let the caller decide.
    raise exception 'apply_run: incomplete';
  end if;
  o_outcomes := coalesce(o_outcomes, '{}');
  o_seqs := coalesce(o_seqs, '{}');
end
$$;

-- Whether a client's seq is stored: as a record of its own, or as a member of a group.
create or replace function sync.applied(p_client_id uuid, p_user uuid, p_seq bigint) returns boolean
  language plpgsql stable
  set search_path = ''
as $$
-- plpgsql, not sql: with `set search_path` a SQL function is planned again on every call.
begin
  return exists (select 1 from sync.idempotency i
                  where i.client_id = p_client_id and i.user_id is not distinct from p_user
                    and i.seq >= p_seq and coalesce(i.first_seq, i.seq) <= p_seq
                    and (i.seq = p_seq or (i.first_seq is not null and i.seqs is null) or p_seq = any (i.seqs)));
end
$$;

-- The stored outcomes of a client's seqs (those stored), one per seq: a group's members are
-- answered one by one, each with its partial row. Only a retried batch comes here.
create or replace function sync.stored_outcomes(p_client_id uuid, p_user uuid, p_seqs bigint[])
  returns table (seq bigint, outcome json)
  language plpgsql stable
  set search_path = ''
as $$
-- plpgsql, not sql: every push asks, and its plan is kept for the session.
begin
  return query
  with r as (
    select i.seq, i.first_seq, i.outcome
      from sync.idempotency i
     where i.client_id = p_client_id and i.user_id is not distinct from p_user
       and i.seq >= (select pg_catalog.min(x) from pg_catalog.unnest(p_seqs) x)
       and coalesce(i.first_seq, i.seq) <= (select pg_catalog.max(x) from pg_catalog.unnest(p_seqs) x)),
  g as (select r.outcome::jsonb as o from r where r.first_seq is not null)
  select r.seq, r.outcome from r where r.first_seq is null and r.seq in (select pg_catalog.unnest(p_seqs))
  union all
  -- A member's version and columns are its element of an array, or the group's one value; without
  -- an "hlc" array its stamp is the one it sent, and its outcome says none.
  select m.seq, (pg_catalog.jsonb_build_object('seq', m.seq, 'status', 'applied', 'partial', true,
           'version', case when pg_catalog.jsonb_typeof(g.o -> 'version') = 'array' then g.o -> 'version' -> (m.k::int - 1)
                           else g.o -> 'version' end,
           'row', coalesce((select pg_catalog.jsonb_object_agg(c.key, c.value -> (m.k::int - 1))
                              from pg_catalog.jsonb_each(g.o -> 'row') c), '{}'::jsonb)
                  || case when pg_catalog.jsonb_typeof(g.o -> 'same') = 'object' then g.o -> 'same' else '{}'::jsonb end)
           || case when pg_catalog.jsonb_typeof(g.o -> 'hlc') = 'array' then pg_catalog.jsonb_build_object('hlc', g.o -> 'hlc' -> (m.k::int - 1))
                   else '{}'::jsonb end)::json
    from g cross join lateral (select (e.v #>> '{}')::bigint as seq, e.k
                                 from pg_catalog.jsonb_array_elements(g.o -> 'seqs') with ordinality e(v, k)) m
   where m.seq in (select pg_catalog.unnest(p_seqs));
end
$$;

-- ---------------------------------------------------------------------------------------------
-- sync_push
-- ---------------------------------------------------------------------------------------------

-- Two entry points share one core, sync.push_runs:
-- - sync_push_runs(jsonb), what the backends call: the batch as runs of consecutive mutations of
--   one table and one action, each field a column, in a single JSON body (PostgREST hands a
--   function with one unnamed jsonb parameter the request body as it is, parsed once):
--     {"client_id": uuid, "after": seq (optional), "runs": [{"table": t, "action": "create" | "update" | "delete",
--       "seq": [...], "id": [...], "data": [{...}, ...] | null, "base": [...] | null, "hlc": [...] | null,
--       "key": column (optional)}]}
--   "key" names the table's primary key when the device left it out of every mutation's data
--   (which held it: it is the mutation's id, sent once); a group's rows then leave it out too. A
--   malformed batch (a "key" other than the table's primary key too) fails the call (22023) and
--   changes nothing. The answer is an array holding
--   one outcome per distinct seq of the batch, in no particular order: single outcomes
--   ({seq, status, ...}) and applied groups ({seqs: [...], status: "applied", partial: true,
--   version: [...] | v, row: {column: [...]}, same: {column: value}}, see sync.apply_run; members
--   in batch order) whose partial rows the device completes from the data and stamps it sent. A stored outcome answered
--   again may be partial and without "hlc": its stamp is the one sent. A repeated seq shares its
--   first occurrence's outcome.
-- - sync_push(uuid, jsonb), for SQL callers: the batch as a list of mutation objects
--   [{seq, table, action, id, data, baseVersion, hlc}]; a malformed item is rejected on its own,
--   and the answer is one outcome per mutation, in order, with whole rows (a batch applied
--   earlier through sync_push_runs is answered from its stored, possibly partial, outcomes).
--
-- Invariants:
-- - Exactly-once per (client, seq, user): a call holds a transaction-scoped advisory lock on
--   (client, user) while it looks up stored outcomes, applies the rest and stores their outcomes
--   in the same transaction; a retry (or a concurrent duplicate, which waits for the lock until the
--   first commits) finds them stored, returns them and changes nothing. A set-based run's applied
--   group is stored as one record (seqs first_seq..seq), the other outcomes one record each. A
--   seq repeated within the batch is applied once; its later items answer with the first one's
--   outcome.
-- - Mutations apply in batch order, run by run. A run whose data objects all have the same keys
--   is one set-based statement (two for update/delete) in one subtransaction. If the run raises,
--   or its data keys differ, its mutations apply one by one, each in its own subtransaction: an
--   error becomes `rejected` with its SQLSTATE and the rest of the batch proceeds. Either way each
--   mutation gets the outcome it would get applied alone, in order. Transient errors
--   (serialization, deadlock, lock timeout, resources) fail the whole call instead, so the device
--   retries rather than storing them.
-- - A batch sent before the answer to the previous one names, as `after`, a seq of that previous
--   batch (all of whose seqs were new). If that seq is not applied when this call holds the lock,
--   the previous batch is still on its way or failed: this one answers {"deferred": true}, applies
--   nothing and stores nothing, and the device sends it again later. Batches of one client thus
--   apply in the order they were sent, however their requests race.
-- Earlier versions had no `after`.
drop function if exists sync.push_runs(uuid, jsonb, boolean);
create or replace function sync.push_runs(p_client_id uuid, p_runs jsonb, p_partial boolean, p_after bigint) returns json
  language plpgsql
  set search_path = ''
  -- A big run's statements are estimated far above their cost, and compiling them would take
  -- longer than running them (26 ms of 120 for a run of 5000 creates).
  set jit = off
as $$
declare
  v_user uuid := auth.uid();
  v_bad text;
  v_seq_json jsonb;
  v_seqs bigint[];        -- per position (the runs' mutations, in order): seq
  v_run_seq bigint[];
  v_min_seq bigint;
  v_max_seq bigint;
  v_fresh boolean[];      -- per position: applied by this call (not stored before, first occurrence)
  v_all_fresh boolean;
  v_old_seqs bigint[];    -- seqs applied by an earlier call, and their stored outcomes
  v_old json[];
  v_done_seqs bigint[] := '{}';   -- seqs applied by this call, and their outcomes, in batch order
  v_done json[] := '{}';
  v_r record;
  v_at int := 0;          -- positions before the current run
  v_keys text[];
  v_run_seqs bigint[];    -- the current run's fresh mutations, as columns
  v_ids text[];
  v_tbl text;
  v_data jsonb;           -- the run's data array, as sent
  v_run_data jsonb;       -- the fresh mutations' data
  v_bases numeric[];
  v_stamps text[];
  v_fast boolean;
  v_key_name text;        -- the key column the run's data left out (the ids are its values), if any
  v_known boolean;
  v_info sync.tables;
  v_outcomes json[];
  v_outcome_seqs bigint[];
  v_group json;
  v_group_seqs bigint[];
  v_groups json[] := '{}';  -- the applied groups of this call (see sync.apply_run)
  v_outcome jsonb;
  v_state text;
  v_message text;
begin
  if p_client_id is null then
    raise exception 'sync_push: the client id is required' using errcode = '22023';
  end if;
  if p_runs is null or pg_catalog.jsonb_typeof(p_runs) <> 'array' then
    raise exception 'sync_push: runs must be an array' using errcode = '22023';
  end if;
  if pg_catalog.jsonb_array_length(p_runs) = 0 then
    return '[]'::json;
  end if;

  -- Every seq, in order, checked. The rest of each run is checked as it is read, below: a fault
  -- fails the call, and whatever was applied before it is rolled back with the call. A run's seqs
  -- are read by one cast of the JSON array's text, as an array literal: one element at a time
  -- cost ten times more. The cast refuses what is not an integer in bigint's range.
  v_seqs := '{}';
  for v_i in 0 .. pg_catalog.jsonb_array_length(p_runs) - 1 loop
    v_run_seq := null;
    -- (#> copies only the seq array; -> would copy the whole run first)
    v_seq_json := p_runs operator(pg_catalog.#>) array[v_i::text, 'seq'];
    if pg_catalog.jsonb_typeof(v_seq_json) = 'array' and pg_catalog.jsonb_array_length(v_seq_json) > 0
       and not pg_catalog.jsonb_path_exists(v_seq_json, 'strict $[*] ? (@.type() != "number")') then
      begin
        v_run_seq := pg_catalog.translate(v_seq_json::text, '[]', '{}')::bigint[];
      exception when invalid_text_representation or numeric_value_out_of_range then
        v_run_seq := null;
      end;
    end if;
    if v_run_seq is null or (select pg_catalog.min(x) < 0 or pg_catalog.max(x) > 999999999999999999 from pg_catalog.unnest(v_run_seq) x) then
      raise exception 'sync_push: malformed batch: run %: %', v_i,
        case when pg_catalog.jsonb_typeof(p_runs -> v_i) <> 'object' then 'expected an object'
             else 'seq must be a non-empty array of integers from 0 to 10^18 - 1' end
        using errcode = '22023';
    end if;
    v_seqs := v_seqs || v_run_seq;
  end loop;
  select pg_catalog.min(x), pg_catalog.max(x) into v_min_seq, v_max_seq from pg_catalog.unnest(v_seqs) x;

  -- A batch sent while the one before it (`after`) was on the wire usually finds it applied, or
  -- being applied. If that one is not applied yet, its request may still be on its way: it gets a
  -- moment (up to ~50 ms) before this one is deferred. A predecessor being applied holds the lock
  -- taken below: waiting for that lock (in a subtransaction rolled back at once, which lets it go)
  -- wakes this call as the predecessor commits, not up to one sleep later.
  if p_after is not null then
    for v_i in 1 .. 25 loop
      exit when sync.applied(p_client_id, v_user, p_after);
      begin
        perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('sync_push'),
                                                 pg_catalog.hashtext(p_client_id::text || ':' || coalesce(v_user::text, '')));
        raise exception using errcode = 'P0004';
      exception when assert_failure then
        null;
      end;
      exit when sync.applied(p_client_id, v_user, p_after);
      perform pg_catalog.pg_sleep(0.002);
    end loop;
  end if;

  -- One call at a time per (client, user): a concurrent attempt of the same batch waits here until
  -- this transaction ends, then finds its outcomes stored. A hash collision between two clients
  -- only makes one wait for the other.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('sync_push'),
                                           pg_catalog.hashtext(p_client_id::text || ':' || coalesce(v_user::text, '')));

  -- The previous batch must have been applied first. Its `after` seq was new in it, so it is
  -- stored as a record of its own or as a member of a group.
  if p_after is not null and not sync.applied(p_client_id, v_user, p_after) then
    return pg_catalog.json_build_object('deferred', true);
  end if;

  -- Already applied (by an earlier attempt): answer with the stored outcomes. For a fresh batch (the
  -- usual case) one index probe of the seqs' range finds nothing.
  if exists (select 1 from sync.idempotency i
              where i.client_id = p_client_id and i.user_id is not distinct from v_user
                and i.seq >= v_min_seq and coalesce(i.first_seq, i.seq) <= v_max_seq) then
    select coalesce(pg_catalog.array_agg(o.seq), '{}'), coalesce(pg_catalog.array_agg(o.outcome), '{}')
      into v_old_seqs, v_old
      from sync.stored_outcomes(p_client_id, v_user, v_seqs) o;
  else
    v_old_seqs := '{}';
    v_old := '{}';
  end if;

  -- Fresh: not stored, and the first occurrence of its seq in the batch. Strictly increasing seqs
  -- (what a device sends) repeat none.
  if pg_catalog.cardinality(v_old_seqs) = 0
     and not exists (select 1 from pg_catalog.generate_subscripts(v_seqs, 1) i where i > 1 and v_seqs[i] <= v_seqs[i - 1]) then
    v_all_fresh := true;
  else
    select pg_catalog.array_agg(x.fresh order by x.n), pg_catalog.bool_and(x.fresh)
      into v_fresh, v_all_fresh
      from (select u.n, u.seq <> all (v_old_seqs) and u.n = pg_catalog.min(u.n) over (partition by u.seq) as fresh
              from pg_catalog.unnest(v_seqs) with ordinality u(seq, n)) x;
  end if;

  -- Each field of a run is taken out of the batch once: every `->` copies the value it returns.
  for v_r in
    select r.n, pg_catalog.jsonb_typeof(r.run) as kind, r.run -> 'table' as tbl_json, r.run ->> 'action' as act,
           pg_catalog.jsonb_array_length(r.run -> 'seq') as k,
           r.run -> 'id' as ids, r.run -> 'data' as data, r.run -> 'base' as bases, r.run -> 'hlc' as hlcs,
           r.run -> 'key' as key_json
      from pg_catalog.jsonb_array_elements(p_runs) with ordinality r(run, n)
     order by r.n
  loop
    v_bad := case
      when v_r.kind <> 'object' then 'expected an object'
      when pg_catalog.jsonb_typeof(v_r.tbl_json) is distinct from 'string' then 'table must be a string'
      when v_r.act is null or v_r.act not in ('create', 'update', 'delete') then 'action must be create, update or delete'
      when pg_catalog.jsonb_typeof(v_r.ids) is distinct from 'array' or pg_catalog.jsonb_array_length(v_r.ids) <> v_r.k
        then 'id must be an array as long as seq'
      when coalesce(pg_catalog.jsonb_typeof(v_r.data), 'null') not in ('array', 'null')
           or (pg_catalog.jsonb_typeof(v_r.data) = 'array' and pg_catalog.jsonb_array_length(v_r.data) <> v_r.k)
        then 'data must be null or an array as long as seq'
      when coalesce(pg_catalog.jsonb_typeof(v_r.bases), 'null') not in ('array', 'null')
           or (pg_catalog.jsonb_typeof(v_r.bases) = 'array' and pg_catalog.jsonb_array_length(v_r.bases) <> v_r.k)
        then 'base must be null or an array as long as seq'
      when coalesce(pg_catalog.jsonb_typeof(v_r.hlcs), 'null') not in ('array', 'null')
           or (pg_catalog.jsonb_typeof(v_r.hlcs) = 'array' and pg_catalog.jsonb_array_length(v_r.hlcs) <> v_r.k)
        then 'hlc must be null or an array as long as seq'
      when coalesce(pg_catalog.jsonb_typeof(v_r.key_json), 'null') not in ('string', 'null')
        then 'key must be null or a column name'
      end;
    if v_bad is not null then
      raise exception 'sync_push: malformed batch: run %: %', v_r.n - 1, v_bad using errcode = '22023';
    end if;
    v_tbl := v_r.tbl_json #>> '{}';
    v_key_name := v_r.key_json #>> '{}';
    v_data := case when pg_catalog.jsonb_typeof(v_r.data) = 'array' then v_r.data end;

    -- The data keys of the run's first mutation, but sync columns (ignored, as apply_mutation
    -- ignores them); a set-based run needs every data object to have exactly these (a delete's
    -- data does not matter).
    v_keys := case when v_r.act = 'delete' then '{}'::text[] else
      (select coalesce(pg_catalog.array_agg(k order by k), '{}')
         from pg_catalog.jsonb_object_keys(case when pg_catalog.jsonb_typeof(v_data -> 0) = 'object' then v_data -> 0 else '{}'::jsonb end) k
        where k not in ('_version', '_xid', '_deleted', '_hlc')) end;
    -- The elements' types, each array checked in one jsonpath pass (run in C: an aggregate of
    -- jsonb_typeof over the elements cost ~1 ms per 1000 mutations).
    v_bad := case
      when pg_catalog.jsonb_path_exists(v_r.ids, 'strict $[*] ? (@.type() != "string" && @.type() != "number")')
        then 'id must hold strings or numbers'
      when pg_catalog.jsonb_path_exists(v_data, 'strict $[*] ? (@.type() != "object" && @.type() != "null")')
        then 'data must hold objects or nulls'
      when pg_catalog.jsonb_typeof(v_r.bases) = 'array'
           and pg_catalog.jsonb_path_exists(v_r.bases, 'strict $[*] ? (@.type() != "number" && @.type() != "null")')
        then 'base must hold numbers or nulls'
      when pg_catalog.jsonb_typeof(v_r.hlcs) = 'array'
           and pg_catalog.jsonb_path_exists(v_r.hlcs, 'strict $[*] ? (@.type() != "string" && @.type() != "null")')
        then 'hlc must hold strings or nulls' end;
    if v_bad is not null then
      raise exception 'sync_push: malformed batch: run %: %', v_r.n - 1, v_bad using errcode = '22023';
    end if;
    -- The fresh mutations, as columns. The writer's stamp goes as sent: the row's trigger
    -- (sync.stamp_row) or apply_mutation keeps it only if acceptable (sync.hlc_acceptable). The run
    -- can be applied set-based (v_fast) if every data object has exactly the run's keys (but sync
    -- columns) and every base fits a bigint; a delete's data does not matter. JSON null data is the
    -- same as no data: {}. When every mutation is fresh (the usual case), each column is read
    -- whole, and the run's own data array goes to apply_run as it is (a null in it makes the run go
    -- one by one).
    if v_all_fresh then
      v_run_seqs := v_seqs[v_at + 1 : v_at + v_r.k];
      v_run_data := v_data;
      v_ids := array(select u.t from pg_catalog.jsonb_array_elements_text(v_r.ids) with ordinality u(t, n) order by u.n);
      v_stamps := case when pg_catalog.jsonb_typeof(v_r.hlcs) = 'array'
                       then array(select u.t from pg_catalog.jsonb_array_elements_text(v_r.hlcs) with ordinality u(t, n) order by u.n)
                       else pg_catalog.array_fill(null::text, array[v_r.k]) end;
      -- (A JSON array of numbers and nulls, as text, is an array literal once its brackets are braces.)
      v_bases := case when pg_catalog.jsonb_typeof(v_r.bases) = 'array'
                      then pg_catalog.translate(v_r.bases::text, '[]', '{}')::numeric[]
                      else pg_catalog.array_fill(null::numeric, array[v_r.k]) end;
      v_fast := (v_r.act = 'delete'
                 or coalesce((select pg_catalog.bool_and(case when pg_catalog.jsonb_typeof(z.d) = 'object'
                                                              then z.d operator(pg_catalog.?&) v_keys
                                                                   and (z.d operator(pg_catalog.-) v_keys
                                                                        operator(pg_catalog.-) '{_version,_xid,_deleted,_hlc}'::text[]) = '{}'::jsonb
                                                              else false end)
                                from pg_catalog.jsonb_array_elements(v_data) z(d)), false))
                and not exists (select 1 from pg_catalog.unnest(v_bases) x where abs(x) >= 9223372036854775807);
    else
      select pg_catalog.array_agg(z.i #>> '{}' order by z.k) filter (where z.fresh),
             pg_catalog.jsonb_agg(case when pg_catalog.jsonb_typeof(z.d) = 'object' then z.d else '{}'::jsonb end order by z.k)
               filter (where z.fresh),
             pg_catalog.array_agg(case when pg_catalog.jsonb_typeof(z.b) = 'number' then (z.b #>> '{}')::numeric end order by z.k)
               filter (where z.fresh),
             pg_catalog.array_agg(case when pg_catalog.jsonb_typeof(z.h) = 'string' then z.h #>> '{}' end order by z.k) filter (where z.fresh),
             pg_catalog.bool_and((v_r.act = 'delete'
                                  or pg_catalog.jsonb_typeof(z.d) = 'object' and z.d operator(pg_catalog.?&) v_keys
                                     and (z.d operator(pg_catalog.-) v_keys
                                          operator(pg_catalog.-) '{_version,_xid,_deleted,_hlc}'::text[]) = '{}'::jsonb)
                                 and (pg_catalog.jsonb_typeof(z.b) is distinct from 'number'
                                      or abs((z.b #>> '{}')::numeric) < 9223372036854775807)) filter (where z.fresh)
        into v_ids, v_run_data, v_bases, v_stamps, v_fast
        from (select u.*, v_fresh[v_at + u.k] as fresh
                from rows from (pg_catalog.jsonb_array_elements(v_r.ids), pg_catalog.jsonb_array_elements(v_data),
                                pg_catalog.jsonb_array_elements(case when pg_catalog.jsonb_typeof(v_r.bases) = 'array' then v_r.bases end),
                                pg_catalog.jsonb_array_elements(case when pg_catalog.jsonb_typeof(v_r.hlcs) = 'array' then v_r.hlcs end))
                     with ordinality u(i, d, b, h, k)) z;
      v_run_seqs := array(select v_seqs[v_at + i] from pg_catalog.generate_series(1, v_r.k) i where v_fresh[v_at + i] order by i);
    end if;
    if v_r.act = 'delete' then
      v_run_data := (select pg_catalog.jsonb_agg('{}'::jsonb) from pg_catalog.generate_series(1, pg_catalog.cardinality(v_run_seqs)));
    end if;
    v_at := v_at + v_r.k;
    continue when pg_catalog.cardinality(v_run_seqs) = 0;

    if v_fast or v_key_name is not null then
      select * into v_info from sync.tables t where t.table_schema = 'public' and t.table_name = v_tbl;
      v_known := found;
      -- A key left out of the data must be the one the server takes from the ids: any other column
      -- would not be written at all.
      if v_known and v_key_name <> v_info.pk_column then
        raise exception 'sync_push: malformed batch: run %: key "%" is not the primary key of table % ("%")',
          v_r.n - 1, v_key_name, v_tbl, v_info.pk_column using errcode = '22023';
      end if;
      v_fast := v_fast and v_known and not (v_r.act = 'create' and v_info.server_ids);
    end if;
    if v_fast then
      begin
        select a.o_outcomes, a.o_seqs, a.o_group, a.o_group_seqs into v_outcomes, v_outcome_seqs, v_group, v_group_seqs
          from sync.apply_run(v_info, v_r.act, v_keys, v_run_seqs, v_ids, v_run_data, v_bases, v_stamps, p_partial,
                              v_key_name is not null and not (v_info.pk_column = any (v_keys))) a;
      exception when others then
        get stacked diagnostics v_state = returned_sqlstate;
        if v_state like '40%' or v_state like '53%' or v_state = '55P03' then
          raise;
        end if;
        v_fast := false;
      end;
    end if;

    if v_fast then
      v_done_seqs := v_done_seqs || v_outcome_seqs;
      v_done := v_done || v_outcomes;
      if v_group is not null then
        -- One record for the group (under the lock above, no concurrent attempt can store it).
        insert into sync.idempotency (client_id, seq, first_seq, user_id, outcome, seqs)
        select p_client_id, pg_catalog.max(x), pg_catalog.min(x), v_user, v_group,
               case when pg_catalog.max(x) - pg_catalog.min(x) + 1 <> pg_catalog.count(*) then v_group_seqs end
          from pg_catalog.unnest(v_group_seqs) x;
        v_groups := v_groups || v_group;
      end if;
    else
      for v_i in 1 .. pg_catalog.cardinality(v_run_seqs) loop
        begin
          v_outcome := sync.apply_mutation(v_tbl, v_r.act, v_ids[v_i], nullif(v_run_data -> (v_i - 1), 'null'::jsonb),
                                           v_bases[v_i]::bigint, v_stamps[v_i]);
        exception when others then
          get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
          if v_state like '40%' or v_state like '53%' or v_state = '55P03' then
            raise;
          end if;
          v_outcome := pg_catalog.jsonb_build_object('status', 'rejected', 'code', v_state, 'message', v_message);
        end;
        v_done_seqs := pg_catalog.array_append(v_done_seqs, v_run_seqs[v_i]);
        v_done := pg_catalog.array_append(v_done, (pg_catalog.jsonb_build_object('seq', v_run_seqs[v_i]) || v_outcome)::json);
      end loop;
    end if;
  end loop;

  -- Store the outcomes (under the lock above, no concurrent attempt can have stored them).
  insert into sync.idempotency (client_id, seq, user_id, outcome)
  select p_client_id, u.seq, v_user, u.outcome from unnest(v_done_seqs, v_done) u(seq, outcome);

  if v_all_fresh then
    -- Every mutation was applied now, once each: the outcomes are already in batch order.
    return pg_catalog.array_to_json(v_done || v_groups);
  end if;
  if p_partial then
    -- One answer per distinct seq (a repeated seq shares its first occurrence's).
    return pg_catalog.array_to_json(v_done || v_groups || v_old);
  end if;
  return (select pg_catalog.json_agg(r.outcome order by m.n)
            from unnest(v_seqs) with ordinality m(seq, n)
            join unnest(v_done_seqs || v_old_seqs, v_done || v_old) r(seq, outcome) on r.seq = m.seq);
end
$$;

create or replace function public.sync_push_runs(jsonb) returns json
  language plpgsql
  security invoker
  set search_path = ''
as $$
-- The parameter has no name: PostgREST then passes the whole request body to it.
declare
  v_node text := $1 ->> 'node';
  v_out json;
begin
  if $1 is null or pg_catalog.jsonb_typeof($1) <> 'object'
     or coalesce(($1 ->> 'client_id') ~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$', false) is not true then
    raise exception 'sync_push_runs: expected {"client_id": uuid, "runs": [...]}' using errcode = '22023';
  end if;
  if coalesce(pg_catalog.jsonb_typeof($1 -> 'after'), 'null') not in ('number', 'null')
     or (pg_catalog.jsonb_typeof($1 -> 'after') = 'number' and ($1 ->> 'after') !~ '^[0-9]{1,18}$') then
    raise exception 'sync_push_runs: after must be null or a seq' using errcode = '22023';
  end if;
  -- The clock node of the batch's stamps (optional): the device's pulls leave this node's rows out.
  if coalesce(pg_catalog.jsonb_typeof($1 -> 'node'), 'null') not in ('string', 'null')
     or (v_node is not null and (v_node collate "C" !~ '^[!-9;-~]+$' or pg_catalog.length(v_node) > 128)) then
    raise exception 'sync_push_runs: node must be null or a clock node id' using errcode = '22023';
  end if;
  v_out := sync.push_runs(($1 ->> 'client_id')::uuid, $1 -> 'runs', true, ($1 ->> 'after')::bigint);
  -- A transaction that wrote only the rows of the batch's own mutations (every one answered with
  -- its row, version and stamp) is one the device's pulls may jump over.
  if v_node is not null and pg_catalog.pg_current_xact_id_if_assigned() is not null
     and pg_catalog.current_setting('sync.foreign_write', true) is distinct from 'on' then
    insert into sync.own_xids (node, xid) values (v_node, pg_catalog.pg_current_xact_id());
  end if;
  return v_out;
end
$$;

comment on function public.sync_push_runs(jsonb) is
  'Apply a batch of mutations, given as runs {client_id, node?, after?, runs: [{table, action, seq[], id[], data[], base[], hlc[], key?}]}, '
  'exactly once per (client, seq); returns one outcome per distinct seq (applied | conflict | rejected), '
  'applied writes grouped column by column.';

-- Earlier versions returned jsonb.
select sync.drop_if_returns('public.sync_push(uuid, jsonb)', 'jsonb');

create or replace function public.sync_push(p_client_id uuid, p_mutations jsonb) returns json
  language plpgsql
  security invoker
  set search_path = ''
as $$
declare
  v_seqs bigint[];        -- per position: seq of a well-formed mutation, null for a malformed one
  v_malformed json[];     -- per position: outcome of a malformed mutation
  v_runs jsonb;
  v_out json;
begin
  -- (sync.push_runs checks the client id and answers an empty batch.)
  if p_mutations is null or pg_catalog.jsonb_typeof(p_mutations) <> 'array' then
    raise exception 'sync_push: p_mutations must be an array' using errcode = '22023';
  end if;

  -- Shape checks: a malformed item is rejected on its own and not recorded.
  select pg_catalog.array_agg(case when x.ok then (x.e -> 'seq' #>> '{}')::bigint end order by x.n),
         pg_catalog.array_agg(case when not x.ok then pg_catalog.json_build_object(
           'seq', coalesce(case when pg_catalog.jsonb_typeof(x.e) = 'object' then x.e -> 'seq' end, 'null'::jsonb),
           'status', 'rejected', 'code', '22023',
           'message', 'invalid mutation: expected {seq, table, action: create|update|delete, id, data?, baseVersion, hlc?}')
           end order by x.n)
    into v_seqs, v_malformed
    from (select a.n, a.e,
                 coalesce(pg_catalog.jsonb_typeof(a.e) = 'object'
                   and pg_catalog.jsonb_typeof(a.e -> 'seq') = 'number'
                   and (a.e -> 'seq' #>> '{}') ~ '^[0-9]+$' and pg_catalog.length(a.e -> 'seq' #>> '{}') <= 18
                   and (a.e ->> 'action') in ('create', 'update', 'delete')
                   and pg_catalog.jsonb_typeof(a.e -> 'table') = 'string'
                   and coalesce(pg_catalog.jsonb_typeof(a.e -> 'id'), 'missing') in ('string', 'number')
                   and coalesce(pg_catalog.jsonb_typeof(a.e -> 'data'), 'null') in ('object', 'null')
                   and coalesce(pg_catalog.jsonb_typeof(a.e -> 'baseVersion'), 'null') in ('number', 'null')
                   and coalesce(pg_catalog.jsonb_typeof(a.e -> 'hlc'), 'null') in ('string', 'null'), false) as ok
            from pg_catalog.jsonb_array_elements(p_mutations) with ordinality a(e, n)) x;

  -- The well-formed items as runs: a run breaks where the table, the action or (but for deletes)
  -- the set of data keys changes.
  select coalesce(pg_catalog.jsonb_agg(g.run order by g.first), '[]'::jsonb) into v_runs
    from (select pg_catalog.min(f.n) as first,
                 pg_catalog.jsonb_build_object('table', pg_catalog.min(f.tbl), 'action', pg_catalog.min(f.act),
                   'seq', pg_catalog.jsonb_agg(f.e -> 'seq' order by f.n), 'id', pg_catalog.jsonb_agg(f.e -> 'id' order by f.n),
                   'data', pg_catalog.jsonb_agg(f.e -> 'data' order by f.n),
                   'base', pg_catalog.jsonb_agg(f.e -> 'baseVersion' order by f.n), 'hlc', pg_catalog.jsonb_agg(f.e -> 'hlc' order by f.n)) as run
            from (select w.*, pg_catalog.sum(w.brk) over (order by w.n) as run_no
                    from (select v.*,
                                 case when (v.tbl, v.act, v.keys) is not distinct from
                                           (pg_catalog.lag(v.tbl) over o, pg_catalog.lag(v.act) over o, pg_catalog.lag(v.keys) over o)
                                      then 0 else 1 end as brk
                            from (select a.n, a.e, a.e ->> 'table' as tbl, a.e ->> 'action' as act,
                                         case when a.e ->> 'action' <> 'delete' and pg_catalog.jsonb_typeof(a.e -> 'data') = 'object'
                                              then (select pg_catalog.array_agg(k order by k) from pg_catalog.jsonb_object_keys(a.e -> 'data') k)
                                         end as keys
                                    from pg_catalog.jsonb_array_elements(p_mutations) with ordinality a(e, n)
                                   where v_seqs[a.n] is not null) v
                          window o as (order by v.n)) w) f
           group by f.run_no) g;

  v_out := sync.push_runs(p_client_id, v_runs, false, null);
  if pg_catalog.array_position(v_seqs, null) is null then
    return v_out;
  end if;
  -- Put the malformed items' outcomes back in their places.
  return (select pg_catalog.json_agg(coalesce(m.bad, o.outcome) order by m.n)
            from (select u.*, pg_catalog.count(u.seq) over (order by u.n) as j
                    from unnest(v_seqs, v_malformed) with ordinality u(seq, bad, n)) m
            left join pg_catalog.json_array_elements(v_out) with ordinality o(outcome, k)
              on m.seq is not null and o.k = m.j);
end
$$;

comment on function public.sync_push(uuid, jsonb) is
  'Apply a batch of mutations [{seq, table, action, id, data, baseVersion, hlc}] exactly once per (client, seq); '
  'returns one outcome per mutation, in order: applied | conflict | rejected.';

-- ---------------------------------------------------------------------------------------------
-- sync_pull
-- ---------------------------------------------------------------------------------------------

-- Decodes a cursor: null, an object {x, t, i}, or a string holding one as JSON (the form sync_pull
-- returns, so devices can keep it as an opaque string).
create or replace function sync.decode_cursor(p_cursor jsonb) returns jsonb
  language plpgsql immutable
  set search_path = ''
as $$
declare
  v_cursor jsonb := p_cursor;
  v_depth int := 0;
begin
  while pg_catalog.jsonb_typeof(v_cursor) = 'string' and v_depth < 3 loop
    begin
      v_cursor := (v_cursor #>> '{}')::jsonb;
    exception when others then
      raise exception 'invalid pull cursor' using errcode = '22023';
    end;
    v_depth := v_depth + 1;
  end loop;
  if v_cursor is null or pg_catalog.jsonb_typeof(v_cursor) = 'null' then
    return null;
  end if;
  if pg_catalog.jsonb_typeof(v_cursor) <> 'object'
     or pg_catalog.jsonb_typeof(v_cursor -> 'x') is distinct from 'string'
     or (v_cursor ->> 'x') !~ '^[0-9]{1,20}$'
     or pg_catalog.jsonb_typeof(v_cursor -> 't') is distinct from 'string'
     or pg_catalog.jsonb_typeof(v_cursor -> 'i') is distinct from 'string' then
    raise exception 'invalid pull cursor' using errcode = '22023';
  end if;
  return v_cursor;
end
$$;

-- Where a table's rows resume after a pull cursor (x, t, i), as a condition on its rows `t` with
-- the cursor's xid as $1 and its key as $2: rows of tables before t from the next transaction on,
-- of t past the key, of tables after t from x on. p_ct null: no cursor, every row.
create or replace function sync.after_cursor(p_info sync.tables, p_ct text) returns text
  language sql immutable
  set search_path = ''
as $$
  select case when p_ct is null then 'true'
              when p_info.table_name collate "C" < p_ct collate "C" then 't._xid > $1'
              when p_info.table_name = p_ct then pg_catalog.format('(t._xid, t.%I) > ($1, cast($2 as %s))', p_info.pk_column, p_info.pk_type)
              else 't._xid >= $1' end
$$;

-- Whether pull position (x1, t1, i1) precedes (x2, t2, i2). Keys of one table compare in their
-- own type (p_info is the table of t2), as the pull orders them.
create or replace function sync.key_lt(p_info sync.tables, x1 xid8, t1 text, i1 text, x2 xid8, t2 text, i2 text)
  returns boolean
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_lt boolean;
begin
  if x1 <> x2 then
    return x1 < x2;
  end if;
  if t1 is distinct from t2 then
    return t1 collate "C" < t2 collate "C";
  end if;
  execute pg_catalog.format('select cast($1 as %s) < cast($2 as %s)', p_info.pk_type, p_info.pk_type)
    into v_lt using i1, i2;
  return v_lt;
end
$$;

-- Invariants:
-- - Only rows whose writing transaction precedes the snapshot's xmin are returned: every such
--   transaction has ended, so no row can later appear below the returned cursor (gapless under
--   out-of-order commits, whatever the clocks).
-- - Order is (_xid, table, key) with one cursor across all requested tables; each table contributes
--   an index range scan on (_xid, pk) bounded by the cursor and limited to p_limit + 1 rows.
-- - A cursor below a requested table's purge horizon may have missed a purged tombstone: the
--   answer is a reset. When a page ends the stream, the cursor moves past any horizon already
--   below the snapshot, so a device that resynced is not reset again.
-- - With p_skip_node, a row whose stamp (_hlc) is that node's, that is whose last write was a push
--   carrying a device's own stamp (any other write restamps it with node `server`), is left out of
--   the changes: the device that pushed it holds that state from the push's answer. The page still
--   counts it, and the cursor moves past it, so a page may hold fewer changes than asked for. A
--   page whose rows are all left out is not answered: the call skips the run of such rows after it
--   (a device's own pushes come back as long runs) and reads on, up to c_skip_pages pages in all;
--   only a call that finds nothing to send by then answers with an empty page and hasMore.
-- - A page that ends the stream says whether rows after it are held back (`pending`): rows visible
--   now but written by a transaction at or above xmin, which a later call returns. A device that
--   checks which of its rows the server still has (a resync) can only conclude once none are.
-- Earlier versions returned jsonb, and had no p_skip_node, then no pending.
select sync.drop_if_returns('public.sync_pull(text[], jsonb, int)', 'jsonb');
drop function if exists public.sync_pull(text[], jsonb, int);

-- The answer is built in one pass as json: each row is turned into JSON once, from its public
-- columns (named from the catalog), never into jsonb and back.
create or replace function public.sync_pull(p_tables text[], p_cursor jsonb, p_limit int, p_skip_node text default null) returns json
  language plpgsql
  security invoker
  set search_path = ''
  -- A page is the first rows of an index range in index order. Before a table's new rows are
  -- analyzed, the planner expects few of them and reads the whole range as a bitmap to sort it: a
  -- page of 1000 among 10,000 fresh rows cost 12 ms that way, 2 ms read in order.
  set enable_bitmapscan = off
as $$
declare
  v_start jsonb := sync.decode_cursor(p_cursor);
  v_cursor jsonb := v_start;
  v_cx xid8 := (v_cursor ->> 'x')::xid8;
  v_ct text := v_cursor ->> 't';
  v_ci text := v_cursor ->> 'i';
  v_limit int := least(greatest(coalesce(p_limit, 100), 1), 5000);
  -- When every row of a page is left out (p_skip_node), the call reads on: it first skips the run
  -- of such rows that follows, looking at up to v_window rows by key alone (no row turned into
  -- JSON: 10,000 own rows are skipped in ~15 ms, against ~25 ms page by page), then reads a page
  -- from there; at most c_skip_pages pages in all.
  c_skip_pages constant int := 4;
  v_window int := least(v_limit * 20, 20000);
  v_pages int := 0;
  v_forward boolean := false;   -- skip the run of left-out rows at the cursor before the next page
  v_runs text[];
  v_fx text;
  v_ft text;
  v_fi text;
  v_tables text[];
  v_name text;
  v_info sync.tables;
  v_xmin xid8;
  v_parts text[] := '{}';
  v_pred text;
  v_columns text;
  v_changes json;
  v_count int;
  v_has_more boolean;
  v_lx text;
  v_lt text;
  v_li text;
  v_end jsonb;
  -- Own push transactions (sync.own_xids) of p_skip_node after the cursor: their rows are jumped
  -- over, not read. A page reads rows below v_bound: the snapshot's xmin, or the next such one.
  v_skips xid8[] := '{}';
  v_bound xid8;
  v_past boolean := false;   -- the cursor stands after every row of transaction v_cx
  v_probe text[];
  v_gap int;
  v_pending boolean := false;
begin
  select coalesce(pg_catalog.array_agg(distinct t collate "C" order by t collate "C"), '{}') into v_tables
    from pg_catalog.unnest(p_tables) t;
  if pg_catalog.array_position(v_tables, null) is not null then
    raise exception 'sync_pull: table names must not be null' using errcode = '22023';
  end if;

  foreach v_name in array v_tables loop
    v_info := sync.table_info(v_name);
    if v_cursor is not null and v_info.purged_xid is not null
       and sync.key_lt(v_info, v_cx, v_ct, v_ci, v_info.purged_xid, v_info.table_name, v_info.purged_id) then
      return pg_catalog.json_build_object('changes', '[]'::json, 'cursor', null, 'hasMore', false, 'reset', true);
    end if;
  end loop;

  v_xmin := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());

  if pg_catalog.cardinality(v_tables) = 0 then
    return pg_catalog.json_build_object('changes', '[]'::json, 'cursor', p_cursor, 'hasMore', false, 'reset', false);
  end if;

  v_bound := v_xmin;
  if p_skip_node is not null then
    select coalesce(pg_catalog.array_agg(o.xid order by o.xid), '{}') into v_skips
      from (select o.xid from sync.own_xids o
             where o.user_id is not distinct from (select auth.uid()) and o.node = p_skip_node
               and o.xid >= coalesce(v_cx, '0'::xid8) and o.xid < v_xmin
             order by o.xid limit 1000) o;
  end if;
  if pg_catalog.cardinality(v_skips) > 0 then
    -- The rows after the cursor fall in gaps between the skipped transactions: gap 0 runs from the
    -- cursor to the first, gap k from the k-th to the next (the last, to xmin). The page starts in
    -- the first gap with a row (one index probe per gap and table) and stops at its end.
    v_probe := '{}';
    foreach v_name in array v_tables loop
      v_info := sync.table_info(v_name);
      v_probe := v_probe || pg_catalog.format(
        'exists (select from %I.%I t where %s and t._xid < $3)', v_info.table_schema, v_info.table_name,
        sync.after_cursor(v_info, v_ct));
    end loop;
    v_gap := null;
    if v_cx is null or v_cx < v_skips[1] then
      execute 'select case when ' || pg_catalog.array_to_string(v_probe, ' or ') || ' then 0 end'
        into v_gap using v_cx, v_ci, v_skips[1];
    end if;
    if v_gap is null then
      v_probe := '{}';
      foreach v_name in array v_tables loop
        v_info := sync.table_info(v_name);
        v_probe := v_probe || pg_catalog.format('exists (select from %I.%I t where t._xid > g.lo and t._xid < g.hi)',
                                                v_info.table_schema, v_info.table_name);
      end loop;
      execute 'select pg_catalog.min(g.n)::int from unnest($1, $2) with ordinality g(lo, hi, n) where '
              || pg_catalog.array_to_string(v_probe, ' or ')
        into v_gap using v_skips, v_skips[2:] || v_xmin;
    end if;
    if v_gap = 0 then
      v_bound := v_skips[1];
    elsif v_gap is not null then
      -- Past every row of the gap's first transaction, to the next one.
      v_cx := v_skips[v_gap];
      v_past := true;
      v_bound := coalesce(v_skips[v_gap + 1], v_xmin);
    else
      -- Every row left below xmin belongs to a skipped transaction: the cursor moves to the last.
      v_probe := '{}';
      foreach v_name in array v_tables loop
        v_info := sync.table_info(v_name);
        v_probe := v_probe || pg_catalog.format(
          '(select t._xid as x, %L::text collate "C" as tbl, t.%I::text as id from %I.%I t where %s and t._xid <= $3 order by t._xid desc, t.%I desc limit 1)',
          v_info.table_name, v_info.pk_column, v_info.table_schema, v_info.table_name,
          sync.after_cursor(v_info, v_ct), v_info.pk_column);
      end loop;
      execute 'select u.x::text, u.tbl::text, u.id from (' || pg_catalog.array_to_string(v_probe, ' union all ')
              || ') u order by u.x desc, u.tbl desc limit 1'
        into v_fx, v_ft, v_fi using v_cx, v_ci, v_skips[pg_catalog.cardinality(v_skips)];
      if v_fx is not null then
        v_cursor := pg_catalog.jsonb_build_object('x', v_fx, 't', v_ft, 'i', v_fi);
        v_cx := v_fx::xid8;
        v_ct := v_ft;
        v_ci := v_fi;
      end if;
    end if;
  end if;

  loop
    v_parts := '{}';
    v_runs := '{}';
    foreach v_name in array v_tables loop
      v_info := sync.table_info(v_name);
      -- Where this table's rows resume relative to the cursor (x, t, i).
      v_pred := case when v_past then 't._xid > $1' else sync.after_cursor(v_info, v_ct) end;
      if v_forward then
        -- The rows by key alone, and whether each is left out (see v_window).
        v_runs := v_runs || pg_catalog.format(
          $q$(select t._xid as x, %L::text collate "C" as tbl, row_number() over (order by t._xid, t.%I) as ord,
                     t.%I::text as id, coalesce(pg_catalog.right(t._hlc, pg_catalog.length($5) + 1) = ':' || $5, false) as sk
                from %I.%I t
               where %s and t._xid < $3 order by t._xid, t.%I limit $4)$q$,
          v_info.table_name, v_info.pk_column, v_info.pk_column, v_info.table_schema, v_info.table_name, v_pred,
          v_info.pk_column);
        continue;
      end if;
      -- The row as devices see it: every column but the sync columns.
      select pg_catalog.string_agg(pg_catalog.format('s.%I', a.attname), ', ' order by a.attnum) into v_columns
        from pg_catalog.pg_attribute a
       where a.attrelid = pg_catalog.format('%I.%I', v_info.table_schema, v_info.table_name)::regclass
         and a.attnum > 0 and not a.attisdropped and a.attname not in ('_version', '_xid', '_deleted', '_hlc');
      -- ord numbers the rows in key order, so the merge can order by (x, table, ord) across key types.
      -- sk: left out (p_skip_node's own write); such a row is not turned into JSON.
      v_parts := v_parts || pg_catalog.format(
        $q$(select s._xid as x, %L::text collate "C" as tbl, row_number() over (order by s._xid, s."sync.k") as ord,
                   s."sync.k"::text as id, s."sync.sk" as sk,
                   case when not s."sync.sk" then pg_catalog.to_json(r) end as r, s._version as v, s._deleted as d, s._hlc as h
              from (select t.*, t.%I as "sync.k",
                           coalesce(pg_catalog.right(t._hlc, pg_catalog.length($6) + 1) = ':' || $6, false) as "sync.sk"
                      from %I.%I t
                     where %s and t._xid < $3 order by t._xid, t.%I limit $4) s
              cross join lateral (select %s) r)$q$,
        v_info.table_name, v_info.pk_column, v_info.table_schema, v_info.table_name, v_pred, v_info.pk_column,
        v_columns);
    end loop;

    if v_forward then
      v_forward := false;
      -- The last row of the run of left-out rows at the cursor (within the window), if any.
      execute pg_catalog.format(
        $q$with w as (select u.x, u.tbl, u.id, u.sk, pg_catalog.row_number() over (order by u.x, u.tbl, u.ord) as n
                        from (select * from (%s) b order by b.x, b.tbl, b.ord limit $4) u),
                f as (select coalesce(pg_catalog.min(w.n) filter (where not w.sk) - 1, pg_catalog.count(*)) as p from w)
           select w.x::text, w.tbl::text, w.id from w join f on w.n = f.p$q$,
        pg_catalog.array_to_string(v_runs, ' union all '))
        into v_fx, v_ft, v_fi using v_cx, v_ci, v_bound, v_window, p_skip_node;
      if v_fx is not null then
        -- Past the run (the tables' bounds depend on the cursor).
        v_cursor := pg_catalog.jsonb_build_object('x', v_fx, 't', v_ft, 'i', v_fi);
        v_cx := v_fx::xid8;
        v_ct := v_ft;
        v_ci := v_fi;
        v_past := false;
      end if;
      -- Then a page from there.
      continue;
    end if;

    -- One row more than the page tells whether there is more; the page's last row is the cursor.
    execute pg_catalog.format(
      $q$select pg_catalog.count(*)::int,
                pg_catalog.json_agg(pg_catalog.json_build_object('table', u.tbl, 'id', u.id, 'row', u.r,
                  'version', u.v, 'deleted', u.d, 'hlc', u.h) order by u.n) filter (where u.n <= $5 and not u.sk),
                (pg_catalog.array_agg(u.x::text order by u.n desc) filter (where u.n <= $5))[1],
                (pg_catalog.array_agg(u.tbl::text order by u.n desc) filter (where u.n <= $5))[1],
                (pg_catalog.array_agg(u.id order by u.n desc) filter (where u.n <= $5))[1]
           from (select a.*, pg_catalog.row_number() over (order by a.x, a.tbl, a.ord) as n
                   from (select * from (%s) b order by b.x, b.tbl, b.ord limit $4) a) u$q$,
      pg_catalog.array_to_string(v_parts, ' union all '))
      into v_count, v_changes, v_lx, v_lt, v_li using v_cx, v_ci, v_bound, v_limit + 1, v_limit, p_skip_node;

    v_has_more := v_count > v_limit;
    if v_count = 0 then
      -- (A gap found with a row holds none any more when the row was written again meanwhile.)
      v_end := case when v_past then v_start else v_cursor end;
    else
      v_end := pg_catalog.jsonb_build_object('x', v_lx, 't', v_lt, 'i', v_li);
    end if;
    v_pages := v_pages + 1;
    -- A page of rows all left out: read on from its end, within this call.
    exit when v_changes is not null or not v_has_more or p_skip_node is null or v_pages >= c_skip_pages;
    v_cursor := v_end;
    v_cx := (v_cursor ->> 'x')::xid8;
    v_ct := v_cursor ->> 't';
    v_ci := v_cursor ->> 'i';
    v_past := false;
    v_forward := true;
  end loop;
  -- A page that stopped at a skipped transaction: more may follow it.
  if v_bound < v_xmin then
    v_has_more := true;
  end if;

  -- At the end of the stream: whether rows the page could not return wait above xmin (committed
  -- while an older transaction is still running), one index probe per table.
  if not v_has_more then
    v_probe := '{}';
    foreach v_name in array v_tables loop
      v_info := sync.table_info(v_name);
      v_probe := v_probe || pg_catalog.format('exists (select from %I.%I t where t._xid >= $1)', v_info.table_schema, v_info.table_name);
    end loop;
    execute 'select ' || pg_catalog.array_to_string(v_probe, ' or ') into v_pending using v_xmin;
  end if;

  -- At the end of the stream, step past horizons already below the snapshot (see invariants).
  if not v_has_more and v_end is not null then
    for v_info in
      select * from sync.tables t
       where t.table_schema = 'public' and t.table_name = any (v_tables)
         and t.purged_xid is not null and t.purged_xid < v_xmin
    loop
      if sync.key_lt(v_info, (v_end ->> 'x')::xid8, v_end ->> 't', v_end ->> 'i',
                     v_info.purged_xid, v_info.table_name, v_info.purged_id) then
        v_end := pg_catalog.jsonb_build_object('x', v_info.purged_xid::text, 't', v_info.table_name,
                                               'i', v_info.purged_id);
      end if;
    end loop;
  end if;

  return pg_catalog.json_build_object(
    'changes', coalesce(v_changes, '[]'::json),
    'cursor', case when v_end is null then null
                   when v_end = v_start then p_cursor
                   else pg_catalog.to_jsonb(v_end::text) end,
    'hasMore', v_has_more,
    'reset', false,
    'pending', v_pending);
end
$$;

comment on function public.sync_pull(text[], jsonb, int, text) is
  'Gapless page of changes after a cursor across the given tables: {changes: [{table, id, row, version, deleted, hlc}], '
  'cursor, hasMore, reset, pending}. The cursor is an opaque string; pass null to start from the beginning. '
  'p_skip_node leaves out rows last written by a push stamped by that node (the cursor still moves past them).';

-- ---------------------------------------------------------------------------------------------
-- sync_checksum
-- ---------------------------------------------------------------------------------------------

-- Same definition as checksumOf in src/core/checksum.ts: the sum modulo 2^64 of the first 8 hex
-- digits of md5(id || ':' || version), over the caller's live rows.
create or replace function public.sync_checksum(p_tables text[]) returns jsonb
  language plpgsql stable
  security invoker
  set search_path = ''
as $$
declare
  v_name text;
  v_info sync.tables;
  v_count bigint;
  v_sum numeric;
  v_out jsonb := '[]'::jsonb;
begin
  foreach v_name in array coalesce(p_tables, '{}') loop
    v_info := sync.table_info(v_name);
    execute pg_catalog.format(
      $q$select count(*), coalesce(sum(('x' || pg_catalog.left(pg_catalog.md5(t.%I::text || ':' || t._version), 8))::bit(32)::bigint), 0)
           from %I.%I t where not t._deleted$q$,
      v_info.pk_column, v_info.table_schema, v_info.table_name)
      into v_count, v_sum;
    v_out := v_out || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
      'table', v_name, 'count', v_count, 'checksum', pg_catalog.mod(v_sum, 18446744073709551616::numeric)::text));
  end loop;
  return v_out;
end
$$;

comment on function public.sync_checksum(text[]) is
  'Per-table {table, count, checksum} over the caller''s live rows; see checksumOf in the client package.';

-- ---------------------------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------------------------

-- Hard-deletes tombstones last written before now() - p_older_than and raises each table's purge
-- horizon to the largest (_xid, key) removed. Returns the number of rows removed.
create or replace function public.sync_purge_tombstones(p_older_than interval default '30 days') returns bigint
  language plpgsql
  security invoker
  set search_path = ''
as $$
declare
  v_info sync.tables;
  v_max record;
  v_count bigint;
  v_total bigint := 0;
begin
  perform pg_catalog.set_config('sync.purging', 'on', true);
  for v_info in select * from sync.tables order by table_schema, table_name for update loop
    execute pg_catalog.format(
      $q$with gone as (delete from %I.%I t where t._deleted and t.updated_at < pg_catalog.now() - $1
                        returning t._xid, t.%I as k)
         select (select count(*) from gone) as n, g._xid as x, g.k::text as id
           from (select 1) one left join (select * from gone order by _xid desc, k desc limit 1) g on true$q$,
      v_info.table_schema, v_info.table_name, v_info.pk_column)
      into v_max using p_older_than;
    v_count := v_max.n;
    if v_count > 0 and (v_info.purged_xid is null
                        or sync.key_lt(v_info, v_info.purged_xid, v_info.table_name, v_info.purged_id,
                                       v_max.x, v_info.table_name, v_max.id)) then
      update sync.tables t set purged_xid = v_max.x, purged_id = v_max.id
       where t.table_schema = v_info.table_schema and t.table_name = v_info.table_name;
    end if;
    v_total := v_total + v_count;
  end loop;
  perform pg_catalog.set_config('sync.purging', 'off', true);
  return v_total;
end
$$;

comment on function public.sync_purge_tombstones(interval) is
  'Hard-delete tombstones older than the horizon; devices whose cursor predates it are told to resync (reset).';

-- Deletes push idempotency records older than p_older_than; a device retrying a batch older than
-- that would apply it again, so keep this well above the longest offline period.
create or replace function public.sync_purge_idempotency(p_older_than interval default '30 days') returns bigint
  language sql
  security invoker
  set search_path = ''
as $$
  -- The own-transaction records go with them: they only spare pulls some reading.
  with gone as (delete from sync.idempotency i where i.created_at < pg_catalog.now() - p_older_than returning 1),
       own as (delete from sync.own_xids o where o.created_at < pg_catalog.now() - p_older_than)
  select count(*) from gone
$$;

comment on function public.sync_purge_idempotency(interval) is
  'Delete push idempotency records (and records of own push transactions, sync.own_xids) older than the given age.';

-- ---------------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------------

revoke all on function public.sync_enable_table(regclass, text) from public;
revoke all on function sync.install_stamp_triggers(regclass) from public;
revoke all on function public.sync_push(uuid, jsonb) from public;
revoke all on function public.sync_push_runs(jsonb) from public;
revoke all on function public.sync_pull(text[], jsonb, int, text) from public;
revoke all on function public.sync_checksum(text[]) from public;
revoke all on function public.sync_purge_tombstones(interval) from public;
revoke all on function public.sync_purge_idempotency(interval) from public;
revoke all on all tables in schema sync from public;

do $$
declare
  v_role text;
begin
  -- Supabase grants every new public function to anon and authenticated by default privileges.
  foreach v_role in array array['anon', 'authenticated', 'service_role'] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = v_role) then
      execute pg_catalog.format('revoke all on function public.sync_enable_table(regclass, text) from %I', v_role);
      execute pg_catalog.format('revoke all on function public.sync_purge_tombstones(interval) from %I', v_role);
      execute pg_catalog.format('revoke all on function public.sync_purge_idempotency(interval) from %I', v_role);
      execute pg_catalog.format('revoke all on function public.sync_push(uuid, jsonb) from %I', v_role);
      execute pg_catalog.format('revoke all on function public.sync_push_runs(jsonb) from %I', v_role);
      execute pg_catalog.format('revoke all on function public.sync_pull(text[], jsonb, int, text) from %I', v_role);
      execute pg_catalog.format('revoke all on function public.sync_checksum(text[]) from %I', v_role);
      execute pg_catalog.format('revoke all on all tables in schema sync from %I', v_role);
      -- Trigger functions run as the writer, whoever that is.
      execute pg_catalog.format('grant usage on schema sync to %I', v_role);
    end if;
  end loop;
  foreach v_role in array array['authenticated', 'service_role'] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = v_role) then
      execute pg_catalog.format('grant execute on function public.sync_push(uuid, jsonb) to %I', v_role);
      execute pg_catalog.format('grant execute on function public.sync_push_runs(jsonb) to %I', v_role);
      execute pg_catalog.format('grant execute on function public.sync_pull(text[], jsonb, int, text) to %I', v_role);
      execute pg_catalog.format('grant execute on function public.sync_checksum(text[]) to %I', v_role);
      execute pg_catalog.format('grant select on sync.tables to %I', v_role);
      execute pg_catalog.format('grant select, insert, update on sync.idempotency to %I', v_role);
      execute pg_catalog.format('grant select, insert on sync.own_xids to %I', v_role);
    end if;
  end loop;
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    grant execute on function public.sync_purge_tombstones(interval) to service_role;
    grant execute on function public.sync_purge_idempotency(interval) to service_role;
    grant update on sync.tables to service_role;
    grant delete on sync.idempotency to service_role;
    grant delete on sync.own_xids to service_role;
  end if;
end
$$;
