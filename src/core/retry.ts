/**
 * Retry policy: exponential backoff with jitter and a cap, and the mapping from a {@link SyncError}
 * kind to what the caller does next. Pure: no timers here; the scheduler owns waiting.
 */
import type { SyncError } from './errors.js'

/**
 * How a delay is drawn below the exponential ceiling `c`:
 * - `full`: uniform in [0, c] — spreads a crowd of clients the most (the usual choice);
 * - `equal`: uniform in [c/2, c] — keeps a floor, so a retry is never almost immediate;
 * - `none`: exactly `c` (deterministic; for tests and tools).
 */
export type Jitter = 'full' | 'equal' | 'none'

/** Options of {@link createBackoff}. */
export interface BackoffOptions {
  /** Ceiling of the first delay, ms (default 1000). */
  baseMs?: number
  /** Cap on every delay, ms (default 5 minutes). */
  maxMs?: number
  /** Growth of the ceiling per consecutive failure (default 2). */
  factor?: number
  /** Default `full`. */
  jitter?: Jitter
  /** Uniform source in [0, 1) (default `Math.random`); inject a seeded one to replay a sequence. */
  random?: () => number
}

/** Resolved {@link BackoffOptions}. */
export type ResolvedBackoffOptions = Required<BackoffOptions>

/** A backoff sequence: one delay per consecutive failure, back to the start on success. */
export interface Backoff {
  /** Records a failure and returns the delay before the next attempt, ms. */
  next(): number
  /** Forgets every failure (call after a success). */
  reset(): void
  /** Consecutive failures recorded since the last reset. */
  readonly failures: number
}

/** Defaults of {@link createBackoff}, resolved in one place. */
export function resolveBackoffOptions(options: BackoffOptions = {}): ResolvedBackoffOptions {
  const resolved: ResolvedBackoffOptions = {
    baseMs: options.baseMs ?? 1000,
    maxMs: options.maxMs ?? 5 * 60_000,
    factor: options.factor ?? 2,
    jitter: options.jitter ?? 'full',
    random: options.random ?? Math.random,
  }
  if (!(resolved.baseMs > 0)) throw new RangeError(`backoff baseMs must be > 0, got ${resolved.baseMs}`)
  if (!(resolved.maxMs >= resolved.baseMs)) throw new RangeError(`backoff maxMs must be >= baseMs, got ${resolved.maxMs}`)
  if (!(resolved.factor >= 1)) throw new RangeError(`backoff factor must be >= 1, got ${resolved.factor}`)
  return resolved
}

/**
 * Exponential backoff: the n-th consecutive failure (n from 1) gets a delay drawn below the ceiling
 * `min(maxMs, baseMs * factor^(n-1))` according to `jitter`. Delays are whole milliseconds.
 */
export function createBackoff(options: BackoffOptions = {}): Backoff {
  const { baseMs, maxMs, factor, jitter, random } = resolveBackoffOptions(options)
  let failures = 0
  const draw = (): number => {
    // A misbehaving random source must not produce a negative or runaway delay.
    const r = random()
    return Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0
  }
  return {
    next() {
      // factor^failures overflows to Infinity long before failures does; min() caps it.
      const ceiling = Math.min(maxMs, baseMs * factor ** failures)
      failures += 1
      const delay = jitter === 'full' ? draw() * ceiling : jitter === 'equal' ? ceiling / 2 + (draw() * ceiling) / 2 : ceiling
      return Math.min(Math.floor(delay), maxMs)
    },
    reset() {
      failures = 0
    },
    get failures() {
      return failures
    },
  }
}

/** What to do after a failed sync run. */
export type RetryDecision =
  /** Transient (network, server, auth after a refresh): wait `delayMs`, then try again. */
  | { action: 'backoff'; delayMs: number }
  /** The server asked for a pause: make no request before `delayMs` has passed. */
  | { action: 'rate-limit'; delayMs: number }
  /** The session is stale: refresh it, then retry at once (only once per failure streak step). */
  | { action: 'refresh-auth' }
  /** `conflict` / `permanent` / `too-large`: retrying the same request cannot help; not a retry. */
  | { action: 'give-up' }

/** Input of {@link decideRetry}. */
export interface RetryDecisionInput {
  error: SyncError
  /** Advanced by one failure for every decision that waits. */
  backoff: Backoff
  /** Whether the attempt that failed was already the immediate retry after a session refresh. */
  authRefreshed: boolean
}

/**
 * Maps a failure to the next step:
 * - `network`, `server` → backoff;
 * - `rate-limit` → wait `max(retryAfterMs, backoff)`: the server's Retry-After is a floor we never
 *   undercut, and the backoff still grows so a server that keeps answering 429 with a short (or no)
 *   Retry-After is not hit at a steady rate;
 * - `auth` → refresh the session and retry at once; if the attempt right after a refresh fails with
 *   `auth` again, back off instead (a refresh that does not help must not become a tight loop);
 * - `conflict`, `permanent`, `too-large` → give up (those items are resolved, split or
 *   dead-lettered, not retried as they are).
 */
export function decideRetry(input: RetryDecisionInput): RetryDecision {
  const { error, backoff, authRefreshed } = input
  switch (error.kind) {
    case 'network':
    case 'server':
      return { action: 'backoff', delayMs: backoff.next() }
    case 'rate-limit': {
      const retryAfter = error.retryAfterMs !== undefined && Number.isFinite(error.retryAfterMs) ? Math.max(0, error.retryAfterMs) : 0
      return { action: 'rate-limit', delayMs: Math.max(retryAfter, backoff.next()) }
    }
    case 'auth':
      return authRefreshed ? { action: 'backoff', delayMs: backoff.next() } : { action: 'refresh-auth' }
    case 'conflict':
    case 'permanent':
    case 'too-large':
      return { action: 'give-up' }
  }
}
