/**
 * Run as a child process by the engine benchmark: one device of a new user syncs a backlog of
 * 3,000 creates through PostgREST straight, so that PostgREST's pooled database sessions have run
 * the sync functions (PL/pgSQL compiles a function once per session, and each session prepares a
 * push run's statement on its first use) before the measured device's first sync, as the long-lived
 * sessions of a deployed project have. A process of its own: the benchmark's process must not run
 * the engine's code before its first sync.
 *
 * Argument: what `childArgument` (direct.ts) gives, read by `childClient`.
 */
import { createSyncOrchestrator } from '../src/core/orchestrator.js'
import { createSupabaseBackend } from '../src/backends/supabase/index.js'
import { createMemoryStorage } from '../src/storage/memory.js'
import { createManualEnvironment } from '../src/env/manual.js'
import { childClient } from './direct.js'

const client = childClient(process.argv[2])
const env = createManualEnvironment({ now: Date.now(), online: false })
const sync = createSyncOrchestrator({ storage: createMemoryStorage(), backend: createSupabaseBackend({ client }), environment: env, collections: { contacts: {} } })
const contacts = sync.collection('contacts')
await sync.ready
for (let i = 0; i < 3000; i++) await contacts.insert({ name: `w${i}` })
env.setOnline(true)
const result = await sync.forceSyncAll()
await sync.close()
if (!result.ok) {
  console.error(`warm-up sync failed: ${result.message}`)
  process.exitCode = 1
}
