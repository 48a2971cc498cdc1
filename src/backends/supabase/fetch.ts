/**
 * Seeing response headers through supabase-js.
 *
 * postgrest-js reads the `Response` itself and hands back only `{ data, error, status }`, so the
 * `Retry-After` of a 429 never reaches the caller. The one public seam is the `fetch` given to
 * `createClient`: this module wraps it and records the headers the backend needs, keyed by the
 * request's `AbortSignal`. The backend gives every call a signal of its own (postgrest-js and
 * supabase-js pass it through to `fetch` unchanged), so a record belongs to exactly one call, with
 * no race between concurrent calls and nothing left behind (the map is weak).
 *
 * ```ts
 * const responses = createResponseRecorder()
 * const client = createClient(url, key, { global: { fetch: responses.fetch } })
 * const backend = createSupabaseBackend({ client, responses })
 * ```
 * Without a recorder a 429 is still classified `rate-limit`, only without `retryAfterMs` (the
 * engine then backs off on its own schedule).
 */

/** Headers of one response that the backend classifies with. */
export interface RecordedResponse {
  status: number
  retryAfter: string | null
  date: string | null
}

/** A `fetch` wrapper that remembers response headers per request signal. */
export interface ResponseRecorder {
  /** Give this to `createClient(url, key, { global: { fetch } })`. */
  readonly fetch: typeof fetch
  /** The recorded answer to the request made with `signal`, forgotten once read. */
  take(signal: AbortSignal): RecordedResponse | undefined
}

/** Options of {@link createResponseRecorder}. */
export interface ResponseRecorderOptions {
  /** The fetch to wrap (default: the global `fetch`, looked up at call time). */
  fetch?: typeof fetch
}

/** Creates a {@link ResponseRecorder}. */
export function createResponseRecorder(options: ResponseRecorderOptions = {}): ResponseRecorder {
  const inner = options.fetch
  const records = new WeakMap<AbortSignal, RecordedResponse>()
  const wrapped = async (input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> => {
    const response = await (inner ?? globalThis.fetch)(input, init)
    const signal = init?.signal
    // Only failures carry what the backend needs; successful answers are not recorded.
    if (signal && !response.ok) {
      records.set(signal, {
        status: response.status,
        retryAfter: response.headers.get('retry-after'),
        date: response.headers.get('date'),
      })
    }
    return response
  }
  return {
    fetch: wrapped as typeof fetch,
    take(signal) {
      const record = records.get(signal)
      records.delete(signal)
      return record
    },
  }
}
