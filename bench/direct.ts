/**
 * supabase-js clients for benchmarks that talk to PostgREST straight, as an app's client talks to
 * its project's API: the local stack's gateway runs inside the benchmark's own process, so going
 * through it would count a proxy's work (reading and writing every body on the same event loop)
 * as the measured client's. Figures then compare like with like: every contender uses the same
 * direct route.
 */
import type { SupabaseClient } from '@supabase/supabase-js'
import type { LocalStack } from '../src/testing/index.js'

/** A client for `user` whose `/rest/v1` requests go to the stack's PostgREST instead of its gateway. */
export function directClient(stack: LocalStack, user: string, options: { expiresInSeconds?: number } = {}): SupabaseClient {
  const gateway = `${stack.url}/rest/v1`
  const direct = (url: string): string => (url.startsWith(gateway) ? stack.postgrestUrl + url.slice(gateway.length) : url)
  return stack.createClient(user, {
    ...options,
    fetch: ((input: RequestInfo | URL, init?: RequestInit) =>
      input instanceof Request ? fetch(new Request(direct(input.url), input), init) : fetch(direct(String(input)), init)) as typeof fetch,
  })
}
