/**
 * Classification of a failed `pg` call into a {@link SyncError}, from the SQLSTATE of a server error
 * or the Node error code of a socket error — never from message text.
 *
 * | failure                                                        | kind        |
 * |----------------------------------------------------------------|-------------|
 * | Node socket codes (ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE, ENOTFOUND, EAI_AGAIN, …) | `network` |
 * | no code, while connecting or after the connection was lost     | `network`   |
 * | class 08 (connection exception)                                | `server`    |
 * | class 53 (insufficient resources, e.g. 53300 too many connections) | `server` |
 * | class 57 (57P01 admin shutdown, 57P03 cannot connect now, 57014 statement timeout) | `server` |
 * | class 40 (40001 serialization failure, 40P01 deadlock): retrying succeeds | `server` |
 * | class 55 (55P03 lock not available, 55006 object in use), 58 (system I/O), XX (internal) | `server` |
 * | class 28 (invalid authorization: bad password, no such role)   | `auth`      |
 * | 42501 insufficient privilege, acting as `anon`                 | `auth`      |
 * | 42501 insufficient privilege, acting as any other role         | `permanent` |
 * | 23505 unique violation                                         | `conflict`  |
 * | class 54 (program limit exceeded, e.g. a batch's JSON over a size limit) | `too-large` |
 * | anything else (including a bug: an error with no code on a live connection) | `permanent` |
 *
 * Choices: class 28 is `auth` so that a rotated or misconfigured credential never dead-letters a
 * user's writes (the engine refreshes and backs off instead); 42501 is `permanent` because the
 * acting role lacks a grant that no retry or session refresh will give it (row level security
 * refusals inside `sync_push` are not affected: they come back as `rejected` outcomes). Both match
 * PostgREST, which answers 42501 with 401 for `anon` (sign in) and 403 for a signed-in caller.
 */
import { SyncError } from '../../core/errors.js'

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTCONN',
])

const SERVER_CLASSES = new Set(['08', '40', '53', '55', '57', '58', 'XX'])

/** Where the failure happened, as far as the backend could tell. */
export interface PostgresFailureContext {
  /** The error came from acquiring a connection (`pool.connect()`). */
  connecting?: boolean
  /** The connection ended or reported an error while the call held it. */
  connectionLost?: boolean
  /** The call acted as the `anon` role (no signed-in user). */
  anonymous?: boolean
}

function codeOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' && code !== '' ? code : undefined
}

const isSqlState = (code: string): boolean => /^[0-9A-Z]{5}$/.test(code)

/** Maps a `pg` failure to the {@link SyncError} the engine acts on (see the table above). */
export function classifyPostgresError(error: unknown, context: PostgresFailureContext = {}): SyncError {
  const code = codeOf(error)
  const text = error instanceof Error ? error.message : String(error)
  const make = (kind: SyncError['kind'], what: string): SyncError =>
    new SyncError(kind, `${what}${code ? ` (${code})` : ''}: ${text}`, { code, cause: error })

  if (code !== undefined && NETWORK_CODES.has(code)) return make('network', 'database unreachable')
  if (code !== undefined && isSqlState(code)) {
    if (code === '23505') return make('conflict', 'unique violation')
    if (code === '42501') return context.anonymous ? make('auth', 'not signed in') : make('permanent', 'insufficient privilege')
    const cls = code.slice(0, 2)
    if (cls === '28') return make('auth', 'database refused the credentials')
    if (SERVER_CLASSES.has(cls)) return make('server', 'transient database failure')
    if (cls === '54') return make('too-large', 'request exceeds a database limit')
    return make('permanent', 'database error')
  }
  if (context.connecting || context.connectionLost) return make('network', 'database connection failed')
  return make('permanent', 'unexpected failure')
}
