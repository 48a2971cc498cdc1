/**
 * The contacts demo: starts a local Supabase-like stack, bundles the web app with esbuild (in
 * memory), and serves it with the stack's API under the same origin.
 *
 * `npm start` runs this file. Environment: `PORT` (default 5173, or a free port when 5173 is taken),
 * `DATABASE_URL` (use that PostgreSQL server instead of embedded PGlite; the stack works in a fresh
 * database there and drops it on exit), `DEMO_TEST_HOOKS=1` (enable the loopback-only
 * `POST /__demo/sql` endpoint browser tests use to change data server-side).
 *
 * The page talks to the stack through this server (`/rest/v1/*` is proxied) so it needs no CORS,
 * and a device's offline switch is a `fetch` wrapper in the page, not a property of the server.
 * The page gets JWTs for the demo user from this server without signing in: it listens on loopback
 * only by default, and is a local demo, never a deployment.
 */
import { createServer, request as httpRequest } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { readFile } from 'node:fs/promises'
import { mkdirSync } from 'node:fs'
import { dirname, extname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build } from 'esbuild'
import { startLocalStack } from '../src/testing/index.js'
import type { LocalStack } from '../src/testing/index.js'
import type { DemoConfig } from './app/config.js'

const DEMO_DIR = dirname(fileURLToPath(import.meta.url))
const ROOT_DIR = resolve(DEMO_DIR, '..')

/** The one user both demo devices sign in as (a fixed id, so persisted data stays theirs). */
export const DEMO_USER = { id: '00000000-0000-4000-8000-00000000d3e0', email: 'demo@example.com' } as const

/** Options of {@link startDemoServer}. */
export interface DemoServerOptions {
  /**
   * Port to listen on; `0` for a free one. Default `PORT`, else 5173 (then a free port if 5173 is
   * taken). An explicit port that is taken is an error.
   */
  port?: number
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string
  /**
   * PGlite directory, so data persists between runs; `false` keeps the database in memory.
   * Default `.data/pglite` in the package. Ignored when a PostgreSQL URL is in use.
   */
  dataDir?: string | false
  /** PostgreSQL server URL; default `DATABASE_URL`, else embedded PGlite. */
  databaseUrl?: string
  /** Enable `POST /__demo/sql` (loopback only). Default: `DEMO_TEST_HOOKS=1`. */
  testHooks?: boolean
  /** Lifetime of the JWTs handed to the page, seconds. Default 12 h. */
  tokenSeconds?: number
  /** Where progress lines go. Default `console.log`. */
  log?: (line: string) => void
}

interface ResolvedDemoOptions {
  port: number
  portIsExplicit: boolean
  host: string
  dataDir: string | undefined
  databaseUrl: string | undefined
  testHooks: boolean
  tokenSeconds: number
  log: (line: string) => void
}

/** A running demo. */
export interface DemoServer {
  /** The page to open, e.g. `http://127.0.0.1:5173/`. */
  url: string
  port: number
  /** The stack behind the page (tests may query it directly). */
  stack: LocalStack
  /** Stops the http server and the stack. Safe to call twice. */
  close: () => Promise<void>
}

function resolveOptions(options: DemoServerOptions): ResolvedDemoOptions {
  const envPort = process.env.PORT ? Number(process.env.PORT) : undefined
  const port = options.port ?? envPort ?? 5173
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TypeError(`invalid port: ${String(port)}`)
  const databaseUrl = options.databaseUrl ?? (process.env.DATABASE_URL || undefined)
  return {
    port,
    portIsExplicit: options.port !== undefined || envPort !== undefined,
    host: options.host ?? '127.0.0.1',
    dataDir: databaseUrl || options.dataDir === false ? undefined : resolve(ROOT_DIR, options.dataDir ?? '.data/pglite'),
    databaseUrl,
    testHooks: options.testHooks ?? process.env.DEMO_TEST_HOOKS === '1',
    tokenSeconds: options.tokenSeconds ?? 12 * 3600,
    log: options.log ?? ((line) => console.log(line)),
  }
}

/** Bundles the app in memory; returns the files by URL path. */
async function bundleApp(): Promise<Map<string, { body: Uint8Array; type: string }>> {
  const result = await build({
    entryPoints: [join(DEMO_DIR, 'app', 'main.tsx')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    jsx: 'automatic',
    minify: true,
    sourcemap: 'linked',
    outdir: '/assets',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
  })
  const files = new Map<string, { body: Uint8Array; type: string }>()
  for (const file of result.outputFiles) {
    const name = file.path.slice(file.path.lastIndexOf('/assets/'))
    files.set(name, { body: file.contents, type: contentType(name) })
  }
  return files
}

function contentType(path: string): string {
  const types: Record<string, string> = {
    '.js': 'text/javascript; charset=utf-8',
    '.map': 'application/json',
    '.css': 'text/css; charset=utf-8',
    '.html': 'text/html; charset=utf-8',
    '.svg': 'image/svg+xml',
    '.json': 'application/json',
  }
  return types[extname(path)] ?? 'application/octet-stream'
}

function isLoopback(req: IncomingMessage): boolean {
  const address = req.socket.remoteAddress ?? ''
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1'
}

async function readBody(req: IncomingMessage, limit = 1_000_000): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) throw new Error('request body too large')
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
  res.end(JSON.stringify(value))
}

/** Passes a request on to the stack's gateway unchanged (body streamed both ways). */
function proxy(req: IncomingMessage, res: ServerResponse, target: URL): void {
  const upstream = httpRequest(
    {
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: target.host },
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    },
  )
  upstream.on('error', (error) => {
    if (!res.headersSent) sendJson(res, 502, { message: `stack unreachable: ${error.message}` })
    else res.destroy()
  })
  req.pipe(upstream)
}

async function listen(server: Server, port: number, host: string, fallback: boolean): Promise<number> {
  const attempt = (p: number) =>
    new Promise<number>((resolveListen, reject) => {
      const onError = (error: Error) => {
        server.off('listening', onListening)
        reject(error)
      }
      const onListening = () => {
        server.off('error', onError)
        resolveListen((server.address() as AddressInfo).port)
      }
      server.once('error', onError)
      server.once('listening', onListening)
      server.listen(p, host)
    })
  try {
    return await attempt(port)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error
    if (!fallback) throw new Error(`port ${port} is already in use: choose another PORT`, { cause: error })
    return attempt(0)
  }
}

/**
 * Starts the demo: the stack, the bundle, and the http server. Resolves once the page can be
 * opened; on failure, whatever was started is stopped again.
 */
export async function startDemoServer(options: DemoServerOptions = {}): Promise<DemoServer> {
  const o = resolveOptions(options)
  if (o.dataDir) mkdirSync(o.dataDir, { recursive: true })
  o.log(o.databaseUrl ? 'Starting the local stack on PostgreSQL…' : `Starting the local stack on PGlite (${o.dataDir ?? 'in memory'})…`)
  const stack = await startLocalStack({ databaseUrl: o.databaseUrl, dataDir: o.dataDir })
  let server: Server | undefined
  try {
    await stack.query('insert into auth.users (id, email) values ($1, $2) on conflict do nothing', [DEMO_USER.id, DEMO_USER.email])
    const [files, indexHtml, styles] = await Promise.all([
      bundleApp(),
      readFile(join(DEMO_DIR, 'public', 'index.html'), 'utf8'),
      readFile(join(DEMO_DIR, 'public', 'styles.css')),
    ])
    files.set('/styles.css', { body: styles, type: contentType('/styles.css') })
    const stackUrl = new URL(stack.url)

    const page = (origin: string): string => {
      const config: DemoConfig = {
        supabaseUrl: origin,
        anonKey: stack.anonKey,
        user: { ...DEMO_USER },
        accessToken: stack.signJwt(DEMO_USER.id, { expiresInSeconds: o.tokenSeconds }),
        tokenUrl: `${origin}/__demo/token`,
        database: stack.kind,
        testHooks: o.testHooks,
      }
      // `<` escaped so no value can close the script element.
      const json = JSON.stringify(config).replace(/</g, '\\u003c')
      return indexHtml.replace('<!--DEMO_CONFIG-->', `<script>window.__DEMO_CONFIG__ = ${json}</script>`)
    }

    const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      const url = new URL(req.url ?? '/', 'http://localhost')
      const origin = `http://${req.headers.host ?? `${o.host}:${port}`}`
      if (url.pathname.startsWith('/rest/v1/') || url.pathname.startsWith('/auth/v1/')) return proxy(req, res, stackUrl)
      if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/index.html')) {
        res.writeHead(200, { 'content-type': contentType('index.html'), 'cache-control': 'no-store' })
        res.end(page(origin))
        return
      }
      if (req.method === 'GET' && url.pathname === '/__demo/token') {
        return sendJson(res, 200, { accessToken: stack.signJwt(DEMO_USER.id, { expiresInSeconds: o.tokenSeconds }) })
      }
      if (url.pathname === '/__demo/sql') {
        if (!o.testHooks) return sendJson(res, 404, { message: 'test hooks are disabled (set DEMO_TEST_HOOKS=1)' })
        if (!isLoopback(req)) return sendJson(res, 403, { message: 'loopback only' })
        if (req.method !== 'POST') return sendJson(res, 405, { message: 'POST { sql, params? }' })
        const body = JSON.parse(await readBody(req)) as { sql?: unknown; params?: unknown }
        if (typeof body.sql !== 'string') return sendJson(res, 400, { message: 'expected { sql: string, params?: unknown[] }' })
        const rows = await stack.query(body.sql, Array.isArray(body.params) ? body.params : [])
        return sendJson(res, 200, { rows })
      }
      const file = req.method === 'GET' || req.method === 'HEAD' ? files.get(url.pathname) : undefined
      if (!file) return sendJson(res, 404, { message: 'not found' })
      res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-cache' })
      res.end(req.method === 'HEAD' ? undefined : file.body)
    }

    server = createServer((req, res) => {
      handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { message: error instanceof Error ? error.message : String(error) })
        else res.destroy()
      })
    })
    const port = await listen(server, o.port, o.host, !o.portIsExplicit)
    const url = `http://${o.host}:${port}/`

    let closing: Promise<void> | undefined
    const runningServer = server
    const close = () =>
      (closing ??= (async () => {
        await new Promise<void>((done) => {
          runningServer.close(() => done())
          runningServer.closeAllConnections()
        })
        await stack.stop()
      })())
    return { url, port, stack, close }
  } catch (error) {
    server?.close()
    await stack.stop()
    throw error
  }
}

/** `npm start`: run until Ctrl+C, then stop everything. */
async function main(): Promise<void> {
  const demo = await startDemoServer()
  console.log(`\nContacts demo (${demo.stack.kind}) ready:\n\n  ${demo.url}\n\nPress Ctrl+C to stop.`)
  let stopping = false
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    console.log(`\n${signal}: stopping…`)
    demo.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('stopping failed:', error)
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  })
}
