/** What the demo server gives the page, in `window.__DEMO_CONFIG__`. */
export interface DemoConfig {
  /** The Supabase URL for supabase-js (the demo server, which proxies the stack's API). */
  supabaseUrl: string
  anonKey: string
  user: { id: string; email: string }
  /** A JWT for the demo user, signed server-side with the stack's secret. */
  accessToken: string
  /** Where to get a fresh JWT when that one expires. */
  tokenUrl: string
  /** Which database serves the stack. */
  database: 'pglite' | 'postgres'
  /** Test hooks are on: the page exposes its devices as `window.__demo` for browser tests. */
  testHooks: boolean
}

/** Reads the config the server injected; throws when the page was not served by the demo server. */
export function readConfig(): DemoConfig {
  const config = (globalThis as { __DEMO_CONFIG__?: DemoConfig }).__DEMO_CONFIG__
  if (!config) throw new Error('No demo config: open the page served by `npm start`.')
  return config
}
