/**
 * Run as a child process by the engine benchmark: one device of a new user writes a 10,000-change
 * backlog offline and syncs it through PostgREST straight, in a process that has never run the
 * engine's code (V8 compiles it while it syncs); then a second device of the same user, with empty
 * storage, pulls those rows. Both are watched as the benchmark watches its own (see
 * engineParts.ts). Prints one JSON line: a {@link ChildFigures}.
 *
 * Argument: what `childArgument` (direct.ts) gives, read by `childClient`.
 * `ENGINE_STORAGE`, `ENGINE_BATCH` and `ENGINE_NOISE_PROBE` as for the benchmark;
 * `ENGINE_CHILD_PRIORITY=realtime` raises the main thread's priority first (raiseMainThreadPriority).
 */
import { rmSync } from 'node:fs'
import { childClient } from './direct.js'
import { N, backlog, makeDevice, newStorage, raiseMainThreadPriority, storageKindFromEnv, timedSync, type ChildFigures } from './engineParts.js'

const unavailable = process.env.ENGINE_CHILD_PRIORITY === 'realtime' ? raiseMainThreadPriority() : undefined
if (unavailable !== undefined) {
  console.log(JSON.stringify({ unavailable } satisfies ChildFigures))
  process.exit(0)
}
const client = childClient(process.argv[2])
// An app has made requests before its first sync (signing in, a first read): so has this process,
// as the benchmark's own process has (its bulk limit) when its first sync is measured.
const { error } = await client.from('contacts').select('id').limit(1)
if (error) throw new Error(`first read failed: ${error.message}`)
const dirs: string[] = []
const storage = storageKindFromEnv()
const pusher = makeDevice(client, newStorage(storage, dirs))
const puller = makeDevice(client, newStorage(storage, dirs))
try {
  const push = await backlog(pusher, 'fresh-process backlog sync')
  await puller.sync.ready
  puller.env.setOnline(true)
  const pull = await timedSync(puller.sync, 'fresh-process pull')
  const pulled = puller.contacts.list().length
  if (pulled !== N) throw new Error(`the pull brought ${pulled} rows, not ${N}`)
  console.log(JSON.stringify({ push, pull } satisfies ChildFigures))
} finally {
  await pusher.sync.close()
  await puller.sync.close()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
}
