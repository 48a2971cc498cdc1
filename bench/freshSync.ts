/**
 * Run as a child process by the engine benchmark: one device of a new user writes a 10,000-change
 * backlog offline and syncs it through PostgREST straight, in a process that has never run the
 * engine's code (V8 compiles it while it syncs), watched as the benchmark watches its own first
 * sync (see engineParts.ts). Prints one JSON line: {@link SyncFigures}.
 *
 * Argument: what `childArgument` (direct.ts) gives, read by `childClient`.
 * `ENGINE_STORAGE`, `ENGINE_BATCH` and `ENGINE_NOISE_PROBE` as for the benchmark.
 */
import { rmSync } from 'node:fs'
import { childClient } from './direct.js'
import { backlog, makeDevice, newStorage, storageKindFromEnv } from './engineParts.js'

const client = childClient(process.argv[2])
// An app has made requests before its first sync (signing in, a first read): so has this process,
// as the benchmark's own process has (its bulk limit) when its first sync is measured.
const { error } = await client.from('contacts').select('id').limit(1)
if (error) throw new Error(`first read failed: ${error.message}`)
const dirs: string[] = []
const device = makeDevice(client, newStorage(storageKindFromEnv(), dirs))
try {
  const figures = await backlog(device, 'fresh-process backlog sync')
  console.log(JSON.stringify(figures))
} finally {
  await device.sync.close()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
}
