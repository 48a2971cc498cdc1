/**
 * Typed errors. Backends classify failures from HTTP status and SQLSTATE codes, never message text;
 * the engine decides what to do from `kind` alone.
 */

/** How the engine must treat a failure. */
export type SyncErrorKind =
  /** No connection, DNS, reset, timeout: back off and retry; never drop an item for it. */
  | 'network'
  /** 5xx and other transient server faults: back off and retry. */
  | 'server'
  /** 401 / expired or invalid JWT: refresh the session, then retry. */
  | 'auth'
  /** 429: wait for `retryAfterMs`, then retry. */
  | 'rate-limit'
  /** 409 / unique violation: resolve through the conflict strategy. */
  | 'conflict'
  /**
   * 413: the request is larger than the server accepts. The engine sends the batch again in
   * smaller parts; a single mutation too large on its own is dead-lettered (`PAYLOAD_TOO_LARGE`).
   */
  | 'too-large'
  /** Any other 4xx or data error: will never succeed as is; dead-letter with the reason. */
  | 'permanent'

/** Options for {@link SyncError}. */
export interface SyncErrorOptions {
  status?: number
  code?: string
  retryAfterMs?: number
  cause?: unknown
}

/** A classified failure of a backend call. */
export class SyncError extends Error {
  readonly kind: SyncErrorKind
  /** HTTP status, where there was a response. */
  readonly status: number | undefined
  /** SQLSTATE or PostgREST error code, where known. */
  readonly code: string | undefined
  /** For `rate-limit`: how long the server asked us to wait. */
  readonly retryAfterMs: number | undefined

  constructor(kind: SyncErrorKind, message: string, options: SyncErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'SyncError'
    this.kind = kind
    this.status = options.status
    this.code = options.code
    this.retryAfterMs = options.retryAfterMs
  }

  /** Whether retrying the same request later may succeed. */
  get retryable(): boolean {
    return this.kind === 'network' || this.kind === 'server' || this.kind === 'auth' || this.kind === 'rate-limit'
  }
}

/**
 * Why a storage operation failed. `incompatible`: the store was written by a newer version of the
 * engine (its `meta/format` is above what this version reads); nothing in it was changed.
 */
export type StorageErrorKind = 'quota-exceeded' | 'corrupt' | 'io' | 'closed' | 'incompatible'

/** A failure of a storage adapter. Nothing already stored is lost when one is thrown. */
export class StorageError extends Error {
  readonly kind: StorageErrorKind
  constructor(kind: StorageErrorKind, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'StorageError'
    this.kind = kind
  }
}

/** Thrown by waits and in-flight calls cancelled through an `AbortSignal` (e.g. by `stopSync()`). */
export class AbortError extends Error {
  constructor(message = 'aborted') {
    super(message)
    this.name = 'AbortError'
  }
}

/** True for an {@link AbortError} or a DOM `AbortError`. */
export function isAbortError(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError'
}
