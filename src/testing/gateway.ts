/**
 * A tiny HTTP gateway shaped like a Supabase project's API: `/rest/v1/*` is proxied to PostgREST
 * (supabase-js always prefixes that path), `/auth/v1/token` issues fresh JWTs for the refresh-token
 * and password grants, so `supabase.auth.refreshSession()` and `signInWithPassword()` work against
 * a local stack.
 */
import { createServer, request as httpRequest } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'

/** A user the token endpoint signs in: its id, and email when known. */
export interface GatewayUser {
  id: string
  email?: string
}

/** What the gateway needs from its stack. */
export interface GatewayOptions {
  /** Port PostgREST listens on (loopback). */
  postgrestPort: number
  /** Signs an access token for a user, valid for `expiresInSeconds`. */
  signAccessToken: (userId: string, expiresInSeconds: number) => string
  /**
   * Resolves a password sign-in to a user, or `null` to refuse it. The stack finds or creates the
   * user in `auth.users` by email; passwords are not checked (test stacks only).
   */
  resolvePasswordUser: (email: string) => Promise<GatewayUser | null>
  /** Lifetime of issued access tokens. Default 3600 s. */
  accessTokenSeconds?: number
}

/** A running gateway. */
export interface Gateway {
  /** Base URL, e.g. `http://127.0.0.1:54321`; give it to `createClient`. */
  url: string
  /** Issues a refresh token for a user (what a sign-in would hand out). */
  issueRefreshToken: (user: GatewayUser) => string
  /** Stops listening and closes open connections. */
  close: () => Promise<void>
}

/** Starts a gateway on a free loopback port. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const accessTokenSeconds = options.accessTokenSeconds ?? 3600
  // Refresh tokens rotate: each is valid once, as Supabase Auth does by default.
  const refreshTokens = new Map<string, GatewayUser>()

  const issueRefreshToken = (user: GatewayUser): string => {
    const token = randomBytes(24).toString('base64url')
    refreshTokens.set(token, user)
    return token
  }

  const session = (user: GatewayUser) => {
    const now = Math.floor(Date.now() / 1000)
    return {
      access_token: options.signAccessToken(user.id, accessTokenSeconds),
      token_type: 'bearer',
      expires_in: accessTokenSeconds,
      expires_at: now + accessTokenSeconds,
      refresh_token: issueRefreshToken(user),
      user: {
        id: user.id,
        aud: 'authenticated',
        role: 'authenticated',
        email: user.email ?? '',
        app_metadata: { provider: 'email' },
        user_metadata: {},
        created_at: new Date(0).toISOString(),
      },
    }
  }

  const sendJson = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }

  const authError = (res: ServerResponse, status: number, code: string, message: string) =>
    sendJson(res, status, { code: status, error_code: code, msg: message, error: code, error_description: message })

  const handleToken = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const body = await readJson(req)
    const grant = url.searchParams.get('grant_type')
    if (grant === 'refresh_token') {
      const token = typeof body?.refresh_token === 'string' ? body.refresh_token : ''
      const user = refreshTokens.get(token)
      if (!user) return authError(res, 400, 'refresh_token_not_found', 'Invalid Refresh Token: Refresh Token Not Found')
      refreshTokens.delete(token)
      return sendJson(res, 200, session(user))
    }
    if (grant === 'password') {
      const email = typeof body?.email === 'string' ? body.email : ''
      const user = email ? await options.resolvePasswordUser(email) : null
      if (!user) return authError(res, 400, 'invalid_credentials', 'Invalid login credentials')
      return sendJson(res, 200, session(user))
    }
    return authError(res, 400, 'unsupported_grant_type', `unsupported grant_type: ${grant ?? ''}`)
  }

  const proxy = (req: IncomingMessage, res: ServerResponse, path: string) => {
    const headers = { ...req.headers, host: `127.0.0.1:${options.postgrestPort}` }
    const upstream = httpRequest(
      { host: '127.0.0.1', port: options.postgrestPort, method: req.method, path, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    upstream.on('error', (error) => {
      if (!res.headersSent) sendJson(res, 502, { message: `gateway: PostgREST unreachable: ${error.message}` })
      else res.destroy(error)
    })
    req.pipe(upstream)
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://gateway')
    if (url.pathname.startsWith('/rest/v1/') || url.pathname === '/rest/v1') {
      const rest = (req.url ?? '/').slice('/rest/v1'.length)
      return proxy(req, res, rest.startsWith('/') ? rest : `/${rest}`)
    }
    if (url.pathname === '/auth/v1/token' && req.method === 'POST') {
      handleToken(req, res, url).catch((error: unknown) =>
        authError(res, 500, 'unexpected_failure', error instanceof Error ? error.message : String(error)),
      )
      return
    }
    if (url.pathname === '/auth/v1/logout') {
      res.writeHead(204)
      return res.end()
    }
    sendJson(res, 404, { message: `gateway: no route for ${req.method} ${url.pathname}` })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}`,
    issueRefreshToken,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | null> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  const text = Buffer.concat(chunks).toString('utf8')
  if (!text) return null
  try {
    const value: unknown = JSON.parse(text)
    return value && typeof value === 'object' ? (value as Record<string, unknown>) : null
  } catch {
    return null
  }
}
