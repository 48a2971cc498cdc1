/**
 * Classification of a failed supabase-js (PostgREST) call into a {@link SyncError}, from the HTTP
 * status, the PostgREST / SQLSTATE code and the `Retry-After` header — never from message text.
 *
 * | answer                                                   | kind         |
 * |----------------------------------------------------------|--------------|
 * | status 0 (the fetch rejected: offline, DNS, reset)       | `network`    |
 * | 429                                                      | `rate-limit` (`retryAfterMs` from `Retry-After`) |
 * | 401, or code PGRST301/302/303 (JWT invalid, expired, missing), or SQLSTATE class 28 | `auth` |
 * | 409, or SQLSTATE 23505 (unique violation)                | `conflict`   |
 * | 408 (the request timed out before the server read it)    | `server`     |
 * | 413 (the request body is larger than the server accepts) | `too-large`  |
 * | 5xx (PGRST000-003: database unreachable → 503/504)       | `server`     |
 * | any other 4xx (403 permission, 404 missing function, …)  | `permanent`  |
 * | a 2xx that carries an error (body not JSON)              | `server`     |
 *
 * An aborted call is not classified here: the backend rethrows it as an `AbortError`.
 */
import { SyncError } from '../../core/errors.js'

/** What a failed supabase-js call tells us. */
export interface SupabaseFailure {
  /** HTTP status; `0` when the fetch itself rejected (no response). */
  status: number
  /** PostgREST (`PGRST…`) or SQLSTATE code from the error body, when there is one. */
  code?: string | null | undefined
  /** Human-readable message, kept for the error's text only (never classified on). */
  message?: string | null | undefined
  /** Value of the `Retry-After` response header, when it could be seen. */
  retryAfter?: string | null | undefined
  /** Value of the `Date` response header: the server's clock for an HTTP-date `Retry-After`. */
  date?: string | null | undefined
  /** Current time, ms since epoch (default `Date.now()`). */
  now?: number
  /** The original error, kept as `cause`. */
  cause?: unknown
}

const AUTH_CODES = new Set(['PGRST301', 'PGRST302', 'PGRST303'])
const HTTP_DATE_START = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,? /

/**
 * `Retry-After` as a delay in ms: either delta-seconds (`"120"`) or an HTTP-date. A date is measured
 * against the response's own `Date` header when present, so a device with a skewed clock still waits
 * as long as the server meant. `undefined` when absent or unreadable; never negative.
 */
export function parseRetryAfter(value: string | null | undefined, options: { now?: number; date?: string | null } = {}): number | undefined {
  if (value === null || value === undefined) return undefined
  const text = value.trim()
  if (text === '') return undefined
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000)
  // Date.parse alone is too lenient ("-5" and "later" parse); an HTTP-date opens with a day name.
  if (!HTTP_DATE_START.test(text)) return undefined
  const at = Date.parse(text)
  if (Number.isNaN(at)) return undefined
  const serverNow = options.date ? Date.parse(options.date) : Number.NaN
  const now = Number.isNaN(serverNow) ? (options.now ?? Date.now()) : serverNow
  return Math.max(0, at - now)
}

/** Maps a failed call to the {@link SyncError} the engine acts on (see the table above). */
export function classifySupabaseError(failure: SupabaseFailure): SyncError {
  const { status } = failure
  const code = failure.code ?? undefined
  const text = failure.message ?? ''
  const base = { status, code: code === '' ? undefined : code, cause: failure.cause }
  const describe = (what: string): string => `${what} (HTTP ${status}${base.code ? `, ${base.code}` : ''})${text ? `: ${text}` : ''}`

  if (status === 0) return new SyncError('network', describe('request failed before a response'), { ...base, status: undefined })
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(failure.retryAfter, { now: failure.now, date: failure.date })
    return new SyncError('rate-limit', describe('rate limited'), { ...base, retryAfterMs })
  }
  if (status === 401 || (code !== undefined && (AUTH_CODES.has(code) || code.startsWith('28')))) {
    return new SyncError('auth', describe('not authorized'), base)
  }
  if (status === 409 || code === '23505') return new SyncError('conflict', describe('conflict'), base)
  if (status === 408 || status >= 500) return new SyncError('server', describe('server error'), base)
  if (status === 413) return new SyncError('too-large', describe('request too large'), base)
  if (status >= 400) return new SyncError('permanent', describe('request refused'), base)
  // A success status with an error means the body could not be read as JSON (e.g. a proxy's page).
  return new SyncError('server', describe('unreadable answer'), base)
}
