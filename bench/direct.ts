/**
 * supabase-js clients for benchmarks that talk to PostgREST straight, as an app's client talks to
 * its project's API: the local stack's gateway runs inside the benchmark's own process, so going
 * through it would count a proxy's work (reading and writing every body on the same event loop)
 * as the measured client's. Figures then compare like with like: every contender uses the same
 * direct route.
 */
import { createClient, type SupabaseClient } from '@supabase/supabase-js'
import ws from 'ws'
import type { LocalStack } from '../src/testing/index.js'

/** A `fetch` that sends requests for `gatewayUrl`'s `/rest/v1` to `postgrestUrl` instead. */
export function directFetch(gatewayUrl: string, postgrestUrl: string): typeof fetch {
  const gateway = `${gatewayUrl}/rest/v1`
  const direct = (url: string): string => (url.startsWith(gateway) ? postgrestUrl + url.slice(gateway.length) : url)
  return ((input: RequestInfo | URL, init?: RequestInit) =>
    input instanceof Request ? fetch(new Request(direct(input.url), input), init) : fetch(direct(String(input)), init)) as typeof fetch
}

/** A client for `user` whose `/rest/v1` requests go to the stack's PostgREST instead of its gateway. */
export function directClient(stack: LocalStack, user: string, options: { expiresInSeconds?: number } = {}): SupabaseClient {
  return stack.createClient(user, { ...options, fetch: directFetch(stack.url, stack.postgrestUrl) })
}

/** What the engine benchmark passes a child process (see {@link childArgument}). */
export interface ChildArgument {
  /** The stack's gateway and PostgREST addresses, its anon key, a signed JWT of the child's user. */
  url: string
  postgrestUrl: string
  anonKey: string
  token: string
}

/** The argument for a child process syncing as a new user of `stack` (JSON of a {@link ChildArgument}). */
export function childArgument(stack: LocalStack, user: string): string {
  const arg: ChildArgument = { url: stack.url, postgrestUrl: stack.postgrestUrl, anonKey: stack.anonKey, token: stack.signJwt(user) }
  return JSON.stringify(arg)
}

/** In a child process: the client its argument (JSON of a {@link ChildArgument}) describes, to PostgREST straight. */
export function childClient(argument: string | undefined): SupabaseClient {
  const { url, postgrestUrl, anonKey, token } = JSON.parse(argument ?? '{}') as ChildArgument
  return createClient(url, anonKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: ws as never },
    global: { headers: { Authorization: `Bearer ${token}` }, fetch: directFetch(url, postgrestUrl) },
  })
}
