import { constants } from 'node:fs'
import { mkdir, open as openFile, readFile, rename, rm, writeFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import * as zlib from 'node:zlib'
import { StorageError } from '../core/errors.js'
import type { StorageEntry, StorageOp } from '../core/storage.js'
import { decodeValue, encodeValue, toStorageError } from './codec.js'
import { excerpt, notify } from './corruption.js'
import type { CorruptionListener, InspectableStorage, LogDamageReason, StorageCorruption } from './corruption.js'
import { createGate } from './gate.js'
import { createSerial } from './serial.js'
import { SortedKeys } from './sortedKeys.js'

/**
 * A storage adapter for Node: the whole store in memory, made durable by an append-only log file.
 *
 * File format: an 8-byte header `SOLOG001`, then records
 *   [u32le payload length][u32le crc32(length bytes ‖ payload)][payload]
 *   payload = u8 flags (1 = last record of a commit, 2 = reset: start from an empty store)
 *             then ops: u8 type (1 set, 2 delete), u32le key bytes, key (UTF-16LE, lossless for any
 *             JS string), and for a set: u32le value bytes, value (UTF-8 JSON text).
 * A commit is one record; a snapshot is one reset commit split over several records.
 *
 * Invariants:
 * - one writer: commits are written in call order by one serial queue (commits that arrive while
 *   a write is in flight go out together in the next write: group commit);
 * - memory always equals the replay of the log's bytes up to `offset`; a commit changes memory
 *   only after its bytes are written;
 * - replay applies a commit only once its last record is read whole with a good checksum, and
 *   stops at the first bad record. So after any crash or damage the state is that after some
 *   prefix of the commits; the rest of the file is moved aside, reported, and cut off;
 * - compaction never touches the live log: it writes a snapshot of the state at one instant to
 *   `<path>.compacting`, appends the commits made since, fsyncs, then renames over the log. A crash
 *   at any point leaves either the old log or the new one, both complete.
 *
 * Durability (`fsync` option):
 * - `'interval'` (default): a commit resolves once its bytes are written to the OS (it survives a
 *   process crash); the file is fsynced every `fsyncIntervalMs` (default 1000 ms) when dirty, on
 *   `sync()`, and on `close()`. An OS crash or power loss can lose the commits of that last
 *   interval, never part of one.
 * - `'always'`: a commit resolves only after fdatasync (survives power loss); slower.
 * - `'never'`: only the OS decides when data reaches the disk (tests, caches).
 *
 * Cost: a commit writes only its own ops (O(size of the commit), plus O(log n) per key in memory);
 * `get` is a map lookup and `scan` a binary search in a sorted key index. Compaction runs in the
 * background once the log is larger than `ratio` × the live data (and at least `minBytes`).
 *
 * Only one instance may use a file at a time: `<path>.lock` holds the owner's pid, and a lock left
 * by a process that is gone is taken over.
 */

/** When the log is fsynced; see the durability notes of {@link createFileStorage}. */
export type FsyncMode = 'always' | 'interval' | 'never'

/** Options for {@link createFileStorage}. */
export interface FileStorageOptions {
  /** The log file; created, with its directory, when missing. */
  path: string
  /** Default `'interval'`. */
  fsync?: FsyncMode
  /** For `fsync: 'interval'`; default 1000. */
  fsyncIntervalMs?: number
  /**
   * Background compaction once the log exceeds max(`minBytes`, `ratio` × live data);
   * default `{ minBytes: 4 MiB, ratio: 2 }`; `false` leaves compaction to {@link FileStorageAdapter.compact}.
   */
  compaction?: false | { minBytes?: number; ratio?: number }
  /** Move a damaged log tail to `<path>.damaged-<time>` rather than dropping it (default true). */
  keepDamaged?: boolean
  /** Refuse to open a file another live instance holds (default true). */
  lock?: boolean
  /** Called with each damage found: a cut log at open, a corrupt value on read. */
  onCorrupt?: CorruptionListener
}

/** Figures about the log, for tests and benchmarks. */
export interface FileStorageStats {
  entries: number
  /** Bytes in the log file. */
  logBytes: number
  /** Approximate bytes a snapshot of the current state takes. */
  liveBytes: number
  compactions: number
  /** The last background compaction or fsync failure, if any; the log stays valid either way. */
  lastBackgroundError: StorageError | null
}

/** A storage over a log file. */
export interface FileStorageAdapter extends InspectableStorage {
  /** Open and replay the log (done on first use anyway); rejects with the open failure. */
  open(): Promise<void>
  /** fsync the log now. */
  sync(): Promise<void>
  /** Rewrite the log as a snapshot of the current state. */
  compact(): Promise<void>
  stats(): FileStorageStats
}

const MAGIC = Buffer.from('SOLOG001', 'latin1')
const HEADER = MAGIC.length
const FLAG_END = 1
const FLAG_RESET = 2
const OP_SET = 1
const OP_DELETE = 2
const SNAPSHOT_RECORD_BYTES = 256 * 1024
/** Start time of this process, to tell our own lock from one left by a dead process with our pid. */
const PROCESS_START = Math.round(Date.now() - process.uptime() * 1000)

type Change = [key: string, text: string | null]

interface PendingCommit {
  bytes: Buffer
  changes: Change[]
  resolve: () => void
  reject: (error: unknown) => void
}

interface Compacting {
  /** Value at the snapshot instant of each key changed since (undefined: absent then). */
  preImage: Map<string, string | undefined>
  /** Records written to the live log since the snapshot instant. */
  tail: Buffer[]
}

function resolveOptions(options: FileStorageOptions) {
  if (typeof options.path !== 'string' || options.path === '') throw new TypeError('file storage: path must be a non-empty string')
  const fsync = options.fsync ?? 'interval'
  if (fsync !== 'always' && fsync !== 'interval' && fsync !== 'never') throw new TypeError(`file storage: unknown fsync mode ${String(fsync)}`)
  return {
    path: options.path,
    fsync,
    fsyncIntervalMs: options.fsyncIntervalMs ?? 1000,
    compaction: options.compaction === false ? null : { minBytes: options.compaction?.minBytes ?? 4 * 1024 * 1024, ratio: options.compaction?.ratio ?? 2 },
    keepDamaged: options.keepDamaged ?? true,
    lock: options.lock ?? true,
    onCorrupt: options.onCorrupt,
  }
}

/** Create a storage over the log file at `options.path`. */
export function createFileStorage(options: FileStorageOptions): FileStorageAdapter {
  const config = resolveOptions(options)
  const { path } = config
  const tmpPath = `${path}.compacting`
  const lockPath = `${path}.lock`

  const values = new Map<string, string>()
  let order = SortedKeys.from([])
  let liveBytes = 0
  let fh: FileHandle | undefined
  let offset = 0
  let dirty = false
  let dirDirty = false
  let syncing: Promise<void> | undefined
  let timer: ReturnType<typeof setInterval> | undefined
  let queue: PendingCommit[] = []
  let flushQueued = false
  /** A failed write could not be cut back off the log: refuse commits until reopened. */
  let poisoned = false
  let compacting: Compacting | undefined
  let compactionRun: Promise<void> | undefined
  let nextAutoCompactAt = 0
  let compactions = 0
  let lastBackgroundError: StorageError | null = null
  const logDamage: StorageCorruption[] = []
  const corruptEntries = new Map<string, StorageCorruption>()
  let closing: Promise<void> | undefined
  let opening: Promise<void> | undefined
  const serial = createSerial()
  const gate = createGate('file storage')

  /** Open once; a failed open is retried by the next call. */
  function ready(): Promise<void> {
    opening ??= load().catch((error: unknown) => {
      opening = undefined
      throw toStorageError(error, `file storage: cannot open ${path}`)
    })
    return opening
  }

  async function load(): Promise<void> {
    await mkdir(dirname(path), { recursive: true })
    if (config.lock) await acquireLock(lockPath, path)
    let handle: FileHandle | undefined
    try {
      await rm(tmpPath, { force: true })
      handle = await openFile(path, constants.O_RDWR | constants.O_CREAT, 0o644)
      const bytes = await handle.readFile()
      const replayed = replay(bytes)
      for (const [key, text] of replayed.state) {
        values.set(key, text)
        liveBytes += entryBytes(key, text)
      }
      order = SortedKeys.from(values.keys())
      offset = replayed.validEnd
      if (replayed.damage) {
        const { reason } = replayed.damage
        const cut = replayed.validEnd
        let savedTo: string | null = null
        if (config.keepDamaged) {
          savedTo = `${path}.damaged-${Date.now()}`
          await writeFile(savedTo, bytes.subarray(cut))
        }
        await handle.truncate(cut)
        const report: StorageCorruption = { kind: 'log', offset: cut, discardedBytes: bytes.length - cut, reason, savedTo }
        logDamage.push(report)
        notify(config.onCorrupt, report)
      }
      if (offset < HEADER) {
        await handle.truncate(0)
        await writeAll(handle, MAGIC, 0)
        offset = HEADER
      }
      if (replayed.damage || bytes.length === 0) {
        if (config.fsync !== 'never') {
          await handle.datasync()
          await syncDirectory(path)
        }
      }
    } catch (error) {
      await handle?.close().catch(() => undefined)
      if (config.lock) await rm(lockPath, { force: true }).catch(() => undefined)
      throw error
    }
    fh = handle
    nextAutoCompactAt = config.compaction ? config.compaction.minBytes : Infinity
    if (config.fsync === 'interval') {
      timer = setInterval(() => {
        if (dirty) syncNow().catch((error: unknown) => (lastBackgroundError = toStorageError(error, 'file storage: fsync failed')))
      }, config.fsyncIntervalMs)
      timer.unref?.()
    }
  }

  function syncNow(): Promise<void> {
    const handle = fh
    if (!handle) return Promise.resolve()
    const previous = syncing ?? Promise.resolve()
    const run = previous
      .catch(() => undefined)
      .then(async () => {
        dirty = false
        await handle.datasync()
        if (dirDirty) {
          dirDirty = false
          await syncDirectory(path)
        }
      })
    const tracked = run.finally(() => {
      if (syncing === tracked) syncing = undefined
    })
    syncing = tracked
    return tracked
  }

  function applyChanges(changes: readonly Change[]): void {
    for (const [key, text] of changes) {
      const old = values.get(key)
      if (compacting && !compacting.preImage.has(key)) compacting.preImage.set(key, old)
      if (old !== undefined) liveBytes -= entryBytes(key, old)
      if (text === null) {
        if (old !== undefined) {
          values.delete(key)
          order.remove(key)
        }
      } else {
        if (old === undefined) order.insert(key)
        values.set(key, text)
        liveBytes += entryBytes(key, text)
      }
      corruptEntries.delete(key)
    }
  }

  /** Write every commit queued so far in one write (group commit). */
  async function flush(): Promise<void> {
    flushQueued = false
    const batch = queue
    queue = []
    if (batch.length === 0) return
    const handle = fh as FileHandle
    if (poisoned) {
      const error = new StorageError('io', 'file storage: an earlier failed write could not be undone; reopen the store')
      for (const commit of batch) commit.reject(error)
      return
    }
    const bytes = batch.length === 1 ? (batch[0] as PendingCommit).bytes : Buffer.concat(batch.map((commit) => commit.bytes))
    try {
      await writeAll(handle, bytes, offset)
      if (config.fsync === 'always') await handle.datasync()
    } catch (error) {
      // Cut off whatever part of the write landed, so the log still ends at a whole commit.
      try {
        await handle.truncate(offset)
      } catch {
        poisoned = true
      }
      const failure = toStorageError(error, 'file storage: commit failed')
      for (const commit of batch) commit.reject(failure)
      return
    }
    offset += bytes.length
    dirty = true
    compacting?.tail.push(bytes)
    for (const commit of batch) {
      applyChanges(commit.changes)
      commit.resolve()
    }
    maybeCompact()
  }

  function maybeCompact(): void {
    if (!config.compaction || compactionRun || gate.closed || offset < nextAutoCompactAt) return
    if (offset < config.compaction.ratio * (liveBytes + HEADER)) return
    compact().then(
      () => {
        nextAutoCompactAt = config.compaction?.minBytes ?? 0
      },
      (error: unknown) => {
        lastBackgroundError = toStorageError(error, 'file storage: compaction failed')
        // Back off: try again once the log has doubled.
        nextAutoCompactAt = offset * 2
      },
    )
  }

  function compact(): Promise<void> {
    compactionRun ??= runCompaction().finally(() => {
      compactionRun = undefined
    })
    return compactionRun
  }

  async function runCompaction(): Promise<void> {
    await ready()
    // The snapshot instant sits between two writes, where memory equals the log.
    const keys = await serial.run(async () => {
      compacting = { preImage: new Map(), tail: [] }
      return order.toArray()
    })
    const state = compacting as Compacting
    const valueAt = (key: string): string => (state.preImage.has(key) ? state.preImage.get(key) : values.get(key)) as string
    let tmp: FileHandle | undefined
    try {
      tmp = await openFile(tmpPath, 'w', 0o644)
      let position = await writeAll(tmp, MAGIC, 0)
      let start = 0
      do {
        const ops: Change[] = []
        let size = 0
        while (start < keys.length && size < SNAPSHOT_RECORD_BYTES) {
          const key = keys[start++] as string
          const text = valueAt(key)
          ops.push([key, text])
          size += entryBytes(key, text)
        }
        const flags = (position === HEADER ? FLAG_RESET : 0) | (start >= keys.length ? FLAG_END : 0)
        position += await writeAll(tmp, encodeRecord(flags, ops), position)
      } while (start < keys.length)
      if (config.fsync !== 'never') await tmp.datasync()
      const snapshotFile = tmp
      await serial.run(async () => {
        if (state.tail.length > 0) position += await writeAll(snapshotFile, Buffer.concat(state.tail), position)
        if (config.fsync === 'always') await snapshotFile.datasync()
        await rename(tmpPath, path)
        const old = fh as FileHandle
        fh = snapshotFile
        tmp = undefined
        offset = position
        compacting = undefined
        compactions++
        if (config.fsync === 'always') await syncDirectory(path)
        else {
          dirty = true
          dirDirty = true
        }
        // A background fsync may still be using the old handle.
        await syncing?.catch(() => undefined)
        await old.close()
      })
    } catch (error) {
      compacting = undefined
      await tmp?.close().catch(() => undefined)
      await rm(tmpPath, { force: true }).catch(() => undefined)
      throw toStorageError(error, 'file storage: compaction failed')
    }
  }

  function read(key: string): unknown {
    const text = values.get(key)
    if (text === undefined) return undefined
    try {
      return decodeValue(key, text)
    } catch (error) {
      reportEntry(key, text)
      throw error
    }
  }

  function reportEntry(key: string, text: string): void {
    if (corruptEntries.has(key)) return
    const report: StorageCorruption = { kind: 'entry', key, found: excerpt(text), reason: 'stored value is not valid JSON' }
    corruptEntries.set(key, report)
    notify(config.onCorrupt, report)
  }

  return {
    open: () => gate.admit(ready),
    get: (key) =>
      gate.admit(async () => {
        await ready()
        return read(key)
      }),
    getMany: (keys) =>
      gate.admit(async () => {
        await ready()
        return keys.map(read)
      }),
    scan: (prefix) => gate.admit(async () => {
      await ready()
      const out: StorageEntry[] = []
      for (const key of order.withPrefix(prefix)) {
        const text = values.get(key) as string
        try {
          out.push({ key, value: decodeValue(key, text) })
        } catch {
          reportEntry(key, text)
        }
      }
      return out
    }),
    commit: (ops: readonly StorageOp[]) => gate.admit(async () => {
      await ready()
      // Encode before queueing so a bad value fails this commit alone, before anything is written.
      const byKey = new Map<string, string | null>()
      for (const op of ops) {
        if (typeof op.key !== 'string') throw new TypeError('file storage: keys must be strings')
        byKey.set(op.key, op.type === 'set' ? encodeValue(op.key, op.value) : null)
      }
      if (byKey.size === 0) return
      const changes = [...byKey]
      const bytes = encodeRecord(FLAG_END, changes)
      await new Promise<void>((resolve, reject) => {
        queue.push({ bytes, changes, resolve, reject })
        if (!flushQueued) {
          flushQueued = true
          void serial.run(flush)
        }
      })
    }),
    corruption: () => gate.admit(async () => {
      await ready()
      for (const [key, text] of values) {
        try {
          JSON.parse(text)
        } catch {
          reportEntry(key, text)
        }
      }
      return [...logDamage, ...corruptEntries.values()]
    }),
    sync: () =>
      gate.admit(async () => {
        await ready()
        await serial.idle()
        await syncNow()
      }),
    compact: () => gate.admit(compact),
    stats() {
      return { entries: values.size, logBytes: offset, liveBytes, compactions, lastBackgroundError }
    },
    close() {
      closing ??= (async () => {
        await gate.close()
        await opening?.catch(() => undefined)
        await compactionRun?.catch(() => undefined)
        await serial.idle()
        if (timer) clearInterval(timer)
        const handle = fh
        if (!handle) return
        fh = undefined
        await syncing?.catch(() => undefined)
        try {
          if (config.fsync !== 'never' && (dirty || dirDirty)) {
            await handle.datasync()
            if (dirDirty) await syncDirectory(path)
          }
        } finally {
          await handle.close()
          if (config.lock) await rm(lockPath, { force: true })
        }
      })()
      return closing
    },
  }
}

/** Bytes a key and value take in a snapshot record (UTF-16 key, value counted per char). */
function entryBytes(key: string, text: string): number {
  return 9 + 2 * key.length + text.length
}

/** Encode one record (header included). */
function encodeRecord(flags: number, ops: readonly Change[]): Buffer {
  let size = 1
  const valueBytes: number[] = []
  for (const [key, text] of ops) {
    size += 5 + 2 * key.length
    if (text !== null) {
      const bytes = Buffer.byteLength(text, 'utf8')
      valueBytes.push(bytes)
      size += 4 + bytes
    }
  }
  const buf = Buffer.allocUnsafe(8 + size)
  buf.writeUInt32LE(size, 0)
  let o = 8
  buf[o++] = flags
  let v = 0
  for (const [key, text] of ops) {
    buf[o++] = text === null ? OP_DELETE : OP_SET
    buf.writeUInt32LE(2 * key.length, o)
    o += 4
    o += buf.write(key, o, 'utf16le')
    if (text !== null) {
      buf.writeUInt32LE(valueBytes[v++] as number, o)
      o += 4
      o += buf.write(text, o, 'utf8')
    }
  }
  buf.writeUInt32LE(recordChecksum(buf.subarray(0, 4), buf.subarray(8)), 4)
  return buf
}

/** The state a log holds, where its valid part ends, and why the rest (if any) is not valid. */
export interface Replayed {
  state: Map<string, string>
  /** Offset just past the last whole commit (or 0 when even the header is bad). */
  validEnd: number
  damage: { reason: LogDamageReason } | null
}

/** Replay log bytes: see the invariants of {@link createFileStorage}. Exported for tests. */
export function replay(bytes: Buffer): Replayed {
  const state = new Map<string, string>()
  if (bytes.length === 0) return { state, validEnd: 0, damage: null }
  if (bytes.length < HEADER || !bytes.subarray(0, HEADER).equals(MAGIC)) return { state, validEnd: 0, damage: { reason: 'bad-header' } }
  let validEnd = HEADER
  let o = HEADER
  let group: { reset: boolean; ops: Change[] } | null = null
  const fail = (reason: LogDamageReason): Replayed => ({ state, validEnd, damage: { reason } })
  while (o < bytes.length) {
    if (o + 8 > bytes.length) return fail('torn-record')
    const size = bytes.readUInt32LE(o)
    if (size < 1 || o + 8 + size > bytes.length) return fail('torn-record')
    const payload = bytes.subarray(o + 8, o + 8 + size)
    if (recordChecksum(bytes.subarray(o, o + 4), payload) !== bytes.readUInt32LE(o + 4)) return fail('checksum-mismatch')
    const decoded = decodePayload(payload)
    if (!decoded) return fail('malformed-record')
    if (group === null) group = { reset: (decoded.flags & FLAG_RESET) !== 0, ops: [] }
    for (const op of decoded.ops) group.ops.push(op)
    o += 8 + size
    if (decoded.flags & FLAG_END) {
      if (group.reset) state.clear()
      for (const [key, text] of group.ops) {
        if (text === null) state.delete(key)
        else state.set(key, text)
      }
      group = null
      validEnd = o
    }
  }
  return group === null ? { state, validEnd, damage: null } : fail('incomplete-commit')
}

function decodePayload(payload: Buffer): { flags: number; ops: Change[] } | null {
  const flags = payload[0] as number
  if (flags & ~(FLAG_END | FLAG_RESET)) return null
  const ops: Change[] = []
  let o = 1
  while (o < payload.length) {
    const type = payload[o++]
    if ((type !== OP_SET && type !== OP_DELETE) || o + 4 > payload.length) return null
    const keyBytes = payload.readUInt32LE(o)
    o += 4
    if (keyBytes % 2 !== 0 || o + keyBytes > payload.length) return null
    const key = payload.toString('utf16le', o, o + keyBytes)
    o += keyBytes
    if (type === OP_DELETE) {
      ops.push([key, null])
      continue
    }
    if (o + 4 > payload.length) return null
    const valueBytes = payload.readUInt32LE(o)
    o += 4
    if (o + valueBytes > payload.length) return null
    ops.push([key, payload.toString('utf8', o, o + valueBytes)])
    o += valueBytes
  }
  return { flags, ops }
}

function recordChecksum(lengthBytes: Uint8Array, payload: Uint8Array): number {
  return crc32(payload, crc32(lengthBytes, 0))
}

let crcTable: Uint32Array | undefined

/** CRC-32 (IEEE); Node's native one where it exists (20.15+), else a table-driven fallback. */
export function crc32(data: Uint8Array, seed = 0): number {
  const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32
  if (native) return native(data, seed)
  if (!crcTable) {
    crcTable = new Uint32Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
      crcTable[n] = c >>> 0
    }
  }
  let crc = (seed ^ 0xffffffff) >>> 0
  for (let i = 0; i < data.length; i++) crc = (crcTable[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

/** Write all of `bytes` at `position`; returns the number written. */
async function writeAll(handle: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  let done = 0
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done)
    if (bytesWritten <= 0) throw new StorageError('io', 'file storage: write made no progress')
    done += bytesWritten
  }
  return done
}

/** Make a rename or a file creation durable. Some platforms cannot fsync a directory; skip there. */
async function syncDirectory(file: string): Promise<void> {
  let dir: FileHandle | undefined
  try {
    dir = await openFile(dirname(file), 'r')
    await dir.sync()
  } catch {
    // EISDIR / EPERM on platforms without directory fsync: nothing more can be done.
  } finally {
    await dir?.close().catch(() => undefined)
  }
}

async function acquireLock(lockPath: string, path: string): Promise<void> {
  const token = `${process.pid} ${PROCESS_START}`
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(lockPath, token, { flag: 'wx' })
      return
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const held = (await readFile(lockPath, 'utf8').catch(() => '')).trim()
    const [pid, start] = held.split(' ')
    if (lockIsLive(Number(pid), Number(start))) {
      throw new StorageError('io', `file storage: ${path} is in use (lock ${lockPath} held by process ${pid})`)
    }
    // Left by a process that is gone: take it over.
    await rm(lockPath, { force: true })
  }
  throw new StorageError('io', `file storage: cannot take the lock ${lockPath}`)
}

function lockIsLive(pid: number, start: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  // Our pid: held by another instance in this process, unless a dead process had the pid before us.
  if (pid === process.pid) return Math.abs(start - PROCESS_START) <= 1000
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
