import { StorageError } from '../core/errors.js'
import type { StorageEntry, StorageOp } from '../core/storage.js'
import { decodeValue, encodeValue, isJson, isQuotaError, toStorageError } from './codec.js'
import { excerpt, notify } from './corruption.js'
import type { CorruptionListener, InspectableStorage, StorageCorruption } from './corruption.js'
import { createGate } from './gate.js'
import { createSerial } from './serial.js'
import { SortedKeys } from './sortedKeys.js'

/**
 * The engine behind the Web Storage and AsyncStorage adapters: atomic multi-key commits over a
 * string key-value store that has no transactions, with the whole namespace cached in memory.
 *
 * Layout, under `root = encodeURIComponent(namespace) + ':'` (an encoded namespace holds no `:`,
 * so no namespace's keys can start with another's root):
 *   root + 'd:' + key      the JSON text of an entry
 *   root + 'j'             the rollback journal of the commit in progress
 *   root + 'm'             key log pointer (key-log membership only)
 *   root + 'l:' + n        key log segment n: keys added and removed by one commit
 *   root + 's:' + g + ':' + i   chunk i of key snapshot generation g
 *
 * Commit protocol, run by one writer at a time:
 *   1. write the journal (skipped when the commit is a single write: single-key writes are atomic);
 *   2. write the new texts and removals;
 *   3. remove the journal.
 * The journal is an undo journal (the current text, or absence, of every key the commit writes)
 * unless no write of the commit grows anything (deletes, same-size or smaller values): then it is a
 * redo journal (the commit's own writes, for deletes just keys).
 * - At open, a journal left by a crash is undone (written back in reverse order) or redone, then
 *   removed. So after a crash at any point either all of a commit is visible or none of it.
 * - When a write fails while the process lives, the commit is undone from the cache (in reverse
 *   order) and rejected; if that fails too, it is undone before the next commit runs.
 *
 * Invariants:
 * - the backend's single-key writes are atomic (old or new text, never a mix); multi-key writes
 *   are not: a crash may leave any of them applied;
 * - the cache changes only after step 3, and a commit that rejected never shows in it;
 * - going back in reverse order only passes through states the commit already passed through,
 *   and rolling a redo journal forward only shrinks the store: so under a byte quota no recovery
 *   needs more room than the store had, and a full store can still delete its way out.
 *
 * Membership. `enumerate` lists the backend's keys at open (Web Storage can). `key-log` keeps the
 * namespace's own list of keys, so open costs O(namespace) and needs no `getAllKeys`: a commit that
 * adds or removes keys also writes one segment (inside the same journaled commit); once the
 * segments outnumber max(`keyLogCompactAfter`, keys / 16), they are folded into a new snapshot:
 *   a. pointer += pending snapshot g;  b. write chunks of g;  c. pointer = snapshot g, live
 *   segments from now, old snapshot and segments marked garbage;  d. remove garbage, clean pointer.
 * Each step is one atomic write or idempotent removals, and open finishes or undoes a compaction a
 * crash interrupted (removing `pending` or `garbage`).
 */

/** One write to a backend: `null` removes the key. */
export type KvWrite = readonly [key: string, value: string | null]

/** The string key-value store under the engine. */
export interface KvBackend {
  /** One slot per key, `null` when absent. */
  read(keys: readonly string[]): Promise<(string | null)[]>
  /** Apply writes in order. Not atomic: a failure or crash may leave any prefix applied. */
  write(writes: readonly KvWrite[]): Promise<void>
  /** Every key of the backing store, all namespaces included. */
  listKeys?(): Promise<readonly string[]>
}

/** Options for {@link createJournaledKv}. */
export interface JournaledKvOptions {
  backend: KvBackend
  namespace: string
  /** How the namespace's keys are found at open; `enumerate` needs `backend.listKeys`. */
  membership: 'enumerate' | 'key-log'
  /** Names the adapter in error messages. */
  label: string
  onCorrupt: CorruptionListener | undefined
  /** Fold the key log into a snapshot once it has at least this many segments. */
  keyLogCompactAfter: number
}

/** A storage over a {@link KvBackend}. */
export interface JournaledKv extends InspectableStorage {
  /** Load the namespace (done on first use anyway); rejects with the open failure. */
  open(): Promise<void>
}

interface Snapshot {
  gen: number
  chunks: number
}

interface KeyLogPointer {
  v: 1
  snap: Snapshot | null
  /** First live segment. */
  seg: number
  pending?: Snapshot
  garbage?: { snap: Snapshot | null; from: number; to: number }
}

const READ_BATCH = 500
const SEGMENT_BATCH = 64
const CHUNK_CHARS = 128 * 1024

/** Create a journaled storage over `options.backend`. */
export function createJournaledKv(options: JournaledKvOptions): JournaledKv {
  const { backend, label } = options
  if (typeof options.namespace !== 'string' || options.namespace === '') {
    throw new TypeError(`${label}: namespace must be a non-empty string`)
  }
  if (options.membership === 'enumerate' && !backend.listKeys) {
    throw new TypeError(`${label}: enumerate membership needs backend.listKeys`)
  }
  const keyLog = options.membership === 'key-log'
  const root = `${encodeURIComponent(options.namespace)}:`
  const dataPrefix = `${root}d:`
  const journalKey = `${root}j`
  const pointerKey = `${root}m`
  const segmentPrefix = `${root}l:`
  const chunkPrefix = `${root}s:`
  const segmentKey = (n: number): string => `${segmentPrefix}${n}`
  const chunkKey = (gen: number, i: number): string => `${chunkPrefix}${gen}:${i}`

  const values = new Map<string, string>()
  let order = SortedKeys.from([])
  const corruptEntries = new Map<string, StorageCorruption>()
  const recordDamage: StorageCorruption[] = []
  let pointer: KeyLogPointer = { v: 1, snap: null, seg: 0 }
  let nextSegment = 0
  let compactionQueued = false
  let compactionOff = false
  /** The undo writes of a failed commit whose rollback failed too: settled before the next commit. */
  let unsettled: KvWrite[] | null = null
  let opening: Promise<void> | undefined
  let closing: Promise<void> | undefined
  const serial = createSerial()
  const gate = createGate(label)

  function reportRecord(record: string, found: string, reason: string, action: string): void {
    const report: StorageCorruption = { kind: 'record', record, found: excerpt(found), reason, action }
    recordDamage.push(report)
    notify(options.onCorrupt, report)
  }

  function markCorrupt(key: string, text: string): void {
    const report: StorageCorruption = { kind: 'entry', key, found: excerpt(text), reason: 'stored value is not valid JSON' }
    corruptEntries.set(key, report)
    notify(options.onCorrupt, report)
  }

  /** Load once; a failed load is retried by the next call. */
  function ready(): Promise<void> {
    opening ??= load().catch((error: unknown) => {
      opening = undefined
      throw toStorageError(error, `${label}: open failed`)
    })
    return opening
  }

  async function load(): Promise<void> {
    await recover()
    let rebuild: string[] | undefined
    let keys: Iterable<string>
    if (keyLog) {
      const found = await loadKeyLog()
      keys = found.keys
      rebuild = found.rebuild
    } else {
      keys = dataKeysOf(await (backend.listKeys as () => Promise<readonly string[]>)())
    }
    const list = [...keys]
    for (let i = 0; i < list.length; i += READ_BATCH) {
      const batch = list.slice(i, i + READ_BATCH)
      const texts = await backend.read(batch.map((key) => dataPrefix + key))
      batch.forEach((key, j) => {
        const text = texts[j]
        if (text == null) {
          reportRecord('key log', key, 'lists a key whose value is missing', 'treated as absent')
          return
        }
        values.set(key, text)
        if (!isJson(text)) markCorrupt(key, text)
      })
    }
    order = SortedKeys.from(values.keys())
    if (rebuild) {
      try {
        await compactKeyLog(rebuild)
      } catch {
        // The rebuilt index stays in memory; the next open rebuilds it again from getAllKeys.
        compactionOff = true
      }
    }
  }

  function dataKeysOf(all: readonly string[]): string[] {
    const out: string[] = []
    for (const key of all) if (key.startsWith(dataPrefix)) out.push(key.slice(dataPrefix.length))
    return out
  }

  /** Finish (redo journal) or undo (undo journal) a commit that a crash left half-done. */
  async function recover(): Promise<void> {
    const [text] = await backend.read([journalKey])
    if (text == null) return
    const journal = parseJournal(text)
    if (!journal) {
      reportRecord('journal', text, 'the journal of an interrupted commit is unreadable', 'removed; that commit may be partly applied')
    } else {
      await backend.write(journal.undo ? journal.undo.slice().reverse() : journal.redo)
    }
    await backend.write([[journalKey, null]])
  }

  async function loadKeyLog(): Promise<{ keys: Set<string>; rebuild: string[] | undefined }> {
    let keys = new Set<string>()
    let damaged = false
    const [text] = await backend.read([pointerKey])
    if (text != null) {
      const parsed = parsePointer(text)
      if (parsed) {
        pointer = parsed
      } else {
        damaged = true
        if (!backend.listKeys) {
          throw new StorageError('corrupt', `${label}: the key log pointer ${pointerKey} is unreadable; pass getAllKeys so it can be rebuilt`)
        }
        reportRecord('key log pointer', text, 'unreadable', 'key log rebuilt from getAllKeys')
      }
    }
    if (!damaged) {
      await collectGarbage()
      if (pointer.snap) {
        const { gen, chunks } = pointer.snap
        const texts = await readAll(Array.from({ length: chunks }, (_, i) => chunkKey(gen, i)))
        texts.forEach((chunk, i) => {
          const list = chunk == null ? undefined : parseStringArray(chunk)
          if (list) for (const key of list) keys.add(key)
          else {
            damaged = true
            reportRecord(chunkKey(gen, i), chunk ?? '(missing)', 'key snapshot chunk unreadable', backend.listKeys ? 'key log rebuilt from getAllKeys' : 'its keys are not visible until rewritten')
          }
        })
      }
      let n = pointer.seg
      for (let done = false; !done; ) {
        const texts = await backend.read(Array.from({ length: SEGMENT_BATCH }, (_, i) => segmentKey(n + i)))
        for (const segText of texts) {
          if (segText == null) {
            done = true
            break
          }
          const segment = parseSegment(segText)
          if (segment) {
            for (const key of segment.a) keys.add(key)
            for (const key of segment.r) keys.delete(key)
          } else {
            damaged = true
            reportRecord(segmentKey(n), segText, 'key log segment unreadable', backend.listKeys ? 'key log rebuilt from getAllKeys' : 'its changes are not visible until rewritten')
          }
          n++
        }
      }
      nextSegment = n
    }
    if (!damaged || !backend.listKeys) return { keys, rebuild: undefined }
    // Rebuild membership from the backend and replace every key log record, numbering past
    // anything already stored so no stale segment or chunk can be read as live.
    const all = await backend.listKeys()
    keys = new Set(dataKeysOf(all))
    const stale = all.filter((key) => key.startsWith(segmentPrefix) || key.startsWith(chunkPrefix) || key === pointerKey)
    let maxSegment = nextSegment - 1
    let maxGen = pointer.snap?.gen ?? 0
    for (const key of stale) {
      if (key.startsWith(segmentPrefix)) maxSegment = Math.max(maxSegment, Number(key.slice(segmentPrefix.length)) || 0)
      else if (key.startsWith(chunkPrefix)) maxGen = Math.max(maxGen, Number(key.slice(chunkPrefix.length).split(':')[0]) || 0)
    }
    nextSegment = maxSegment + 1
    pointer = { v: 1, snap: { gen: maxGen, chunks: 0 }, seg: nextSegment }
    return { keys, rebuild: stale.filter((key) => key !== pointerKey) }
  }

  async function readAll(keys: readonly string[]): Promise<(string | null)[]> {
    const out: (string | null)[] = []
    for (let i = 0; i < keys.length; i += READ_BATCH) out.push(...(await backend.read(keys.slice(i, i + READ_BATCH))))
    return out
  }

  /** Finish what an interrupted or completed compaction left to remove. */
  async function collectGarbage(): Promise<void> {
    const removals: string[] = []
    const chunkKeysOf = (snap: Snapshot | null | undefined): string[] =>
      snap ? Array.from({ length: snap.chunks }, (_, i) => chunkKey(snap.gen, i)) : []
    removals.push(...chunkKeysOf(pointer.pending))
    if (pointer.garbage) {
      removals.push(...chunkKeysOf(pointer.garbage.snap))
      for (let n = pointer.garbage.from; n < pointer.garbage.to; n++) removals.push(segmentKey(n))
    }
    if (!pointer.pending && !pointer.garbage) return
    if (removals.length > 0) await backend.write(removals.map((key): KvWrite => [key, null]))
    const clean: KeyLogPointer = { v: 1, snap: pointer.snap, seg: pointer.seg }
    await backend.write([[pointerKey, JSON.stringify(clean)]])
    pointer = clean
  }

  /**
   * Fold the live segments into a new key snapshot (steps a–d above). `rebuildGarbage` is set when
   * the stored pointer was unusable: then step a is skipped (writing a pointer before the chunks
   * exist would make a crash look like an empty namespace; an unreadable pointer just rebuilds
   * again) and the listed stale records are removed once the new pointer is in place.
   */
  async function compactKeyLog(rebuildGarbage?: readonly string[]): Promise<void> {
    const chunks = chunkKeys(order.toArray())
    const snap: Snapshot = { gen: (pointer.snap?.gen ?? 0) + 1, chunks: chunks.length }
    if (!rebuildGarbage) await backend.write([[pointerKey, JSON.stringify({ ...pointer, pending: snap })]])
    await backend.write(chunks.map((text, i): KvWrite => [chunkKey(snap.gen, i), text]))
    const next: KeyLogPointer = { v: 1, snap, seg: nextSegment, garbage: { snap: pointer.snap, from: pointer.seg, to: nextSegment } }
    await backend.write([[pointerKey, JSON.stringify(next)]])
    pointer = next
    if (rebuildGarbage && rebuildGarbage.length > 0) await backend.write(rebuildGarbage.map((key): KvWrite => [key, null]))
    await collectGarbage()
  }

  function maybeCompact(): void {
    if (!keyLog || compactionOff || compactionQueued) return
    if (nextSegment - pointer.seg < Math.max(options.keyLogCompactAfter, values.size >>> 4)) return
    compactionQueued = true
    serial
      .run(async () => {
        if (gate.closed || unsettled) return
        await compactKeyLog()
      })
      // Compaction is housekeeping: a failure leaves a valid log (open cleans up), so stop trying
      // until the next open rather than fail anyone's commit.
      .catch(() => {
        compactionOff = true
      })
      .finally(() => {
        compactionQueued = false
      })
  }

  /** Put back what the cache says for keys a failed commit may have written, then drop its journal. */
  async function settle(undo: readonly KvWrite[]): Promise<void> {
    await backend.write(undo.slice().reverse())
    await backend.write([[journalKey, null]])
  }

  async function apply(changes: Map<string, string | null>): Promise<void> {
    if (unsettled) {
      try {
        await settle(unsettled)
        unsettled = null
      } catch (error) {
        throw toStorageError(error, `${label}: an earlier failed commit could not be rolled back yet`)
      }
    }
    const writes: KvWrite[] = []
    const undo: KvWrite[] = []
    const added: string[] = []
    const removed: string[] = []
    for (const [key, text] of changes) {
      const old = values.get(key)
      if (text === null) {
        if (old === undefined) continue
        removed.push(key)
      } else if (old === undefined) {
        added.push(key)
      }
      writes.push([dataPrefix + key, text])
      undo.push([dataPrefix + key, old ?? null])
    }
    const logged = keyLog && (added.length > 0 || removed.length > 0)
    if (logged) {
      writes.push([segmentKey(nextSegment), JSON.stringify({ a: added, r: removed })])
      undo.push([segmentKey(nextSegment), null])
    }
    if (writes.length === 0) return

    if (writes.length > 1) {
      // Undo journal unless no write grows anything: then a redo journal (often just keys) is
      // smaller, and rolling it forward only shrinks the store, so it fits any quota. That is what
      // lets a full store delete its way out.
      const grows = writes.some(([, text], i) => text !== null && text.length > ((undo[i] as KvWrite)[1]?.length ?? -1))
      const journal = grows ? { v: 1, undo } : { v: 1, redo: writes }
      try {
        await backend.write([[journalKey, JSON.stringify(journal)]])
      } catch (error) {
        // A quota failure wrote nothing; anything else may have left a journal behind.
        if (!isQuotaError(error)) unsettled = undo
        throw toStorageError(error, `${label}: commit failed`)
      }
    }
    // A single write needs no journal: single-key writes are atomic.
    try {
      await backend.write(writes)
      if (writes.length > 1) await backend.write([[journalKey, null]])
    } catch (error) {
      // Going back in reverse passes only through states this commit already passed through, so
      // under a quota it always fits.
      try {
        await settle(undo)
      } catch {
        unsettled = undo
      }
      throw toStorageError(error, `${label}: commit failed`)
    }

    for (const [key, text] of changes) {
      if (text === null) {
        if (values.delete(key)) order.remove(key)
      } else {
        if (!values.has(key)) order.insert(key)
        values.set(key, text)
      }
      corruptEntries.delete(key)
    }
    if (logged) nextSegment++
    maybeCompact()
  }

  function read(key: string): unknown {
    if (corruptEntries.has(key)) throw new StorageError('corrupt', `${label}: the stored value for key ${JSON.stringify(key)} is not valid JSON`)
    const text = values.get(key)
    return text === undefined ? undefined : decodeValue(key, text)
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
        if (corruptEntries.has(key)) continue
        out.push({ key, value: decodeValue(key, values.get(key) as string) })
      }
      return out
    }),
    commit: (ops: readonly StorageOp[]) => gate.admit(async () => {
      await ready()
      // Encode before queueing so a bad value fails this commit alone, before anything is written.
      const changes = new Map<string, string | null>()
      for (const op of ops) {
        if (typeof op.key !== 'string') throw new TypeError(`${label}: keys must be strings`)
        changes.set(op.key, op.type === 'set' ? encodeValue(op.key, op.value) : null)
      }
      if (changes.size === 0) return
      await serial.run(() => apply(changes))
    }),
    corruption: () =>
      gate.admit(async () => {
        await ready()
        return [...recordDamage, ...corruptEntries.values()]
      }),
    close() {
      closing ??= (async () => {
        await gate.close()
        // Housekeeping queued by the last commits (key log compaction) finishes too.
        await serial.idle()
      })()
      return closing
    },
  }
}

function parseJournal(text: string): { undo: KvWrite[]; redo?: never } | { redo: KvWrite[]; undo?: never } | undefined {
  try {
    const parsed = JSON.parse(text) as { undo?: unknown; redo?: unknown } | null
    const writes = parsed?.undo ?? parsed?.redo
    if (!Array.isArray(writes)) return undefined
    for (const write of writes) {
      if (!Array.isArray(write) || typeof write[0] !== 'string' || (typeof write[1] !== 'string' && write[1] !== null)) return undefined
    }
    return parsed?.undo ? { undo: writes as KvWrite[] } : { redo: writes as KvWrite[] }
  } catch {
    return undefined
  }
}

function isSnapshot(value: unknown): value is Snapshot {
  const snap = value as Snapshot | null
  return typeof snap === 'object' && snap !== null && Number.isInteger(snap.gen) && Number.isInteger(snap.chunks)
}

function parsePointer(text: string): KeyLogPointer | undefined {
  try {
    const p = JSON.parse(text) as KeyLogPointer
    if (typeof p !== 'object' || p === null || p.v !== 1 || !Number.isInteger(p.seg)) return undefined
    if (p.snap !== null && !isSnapshot(p.snap)) return undefined
    if (p.pending !== undefined && !isSnapshot(p.pending)) return undefined
    if (p.garbage !== undefined) {
      const g = p.garbage
      if (typeof g !== 'object' || g === null || (g.snap !== null && !isSnapshot(g.snap))) return undefined
      if (!Number.isInteger(g.from) || !Number.isInteger(g.to)) return undefined
    }
    return p
  } catch {
    return undefined
  }
}

function parseStringArray(text: string): string[] | undefined {
  try {
    const list: unknown = JSON.parse(text)
    return Array.isArray(list) && list.every((key) => typeof key === 'string') ? (list as string[]) : undefined
  } catch {
    return undefined
  }
}

function parseSegment(text: string): { a: string[]; r: string[] } | undefined {
  try {
    const seg = JSON.parse(text) as { a?: unknown; r?: unknown }
    const ok = (list: unknown): list is string[] => Array.isArray(list) && list.every((key) => typeof key === 'string')
    return typeof seg === 'object' && seg !== null && ok(seg.a) && ok(seg.r) ? { a: seg.a, r: seg.r } : undefined
  } catch {
    return undefined
  }
}

/** Split keys into JSON arrays of about `CHUNK_CHARS` characters (some backends cap value size). */
function chunkKeys(keys: readonly string[]): string[] {
  const chunks: string[] = []
  let current: string[] = []
  let size = 0
  for (const key of keys) {
    current.push(key)
    size += key.length + 3
    if (size >= CHUNK_CHARS) {
      chunks.push(JSON.stringify(current))
      current = []
      size = 0
    }
  }
  if (current.length > 0 || chunks.length === 0) chunks.push(JSON.stringify(current))
  return chunks
}
