/**
 * The local record store: every synced record of every collection, in memory and in storage.
 *
 * Storage layout: one key per record, `r/<collection>/<id>` → {@link StoredEnvelope} (the envelope,
 * with `base: 'data'` when the base holds exactly the data's fields: the row is stored once);
 * aliases for server-assigned ids, `a/<collection>/<localId>` → remote id. A write touches one
 * record key, so a local write costs O(1) storage ops whatever the number of records.
 *
 * Invariants:
 * - `data` is what the app sees (local-only fields included); `base` is the last row confirmed by
 *   the server (local-only fields excluded) and `version` its server version; both `null` until the
 *   server has confirmed the record once.
 * - A record deleted locally stays as an envelope with `deleted: true` until the server confirms the
 *   delete; the app no longer sees it.
 */
import { z } from 'zod'
import type { Row } from './protocol.js'
import { deleteOp, setOp, type StorageOp } from './storage.js'
import type { RecordSyncState } from './types.js'

/** Persisted state of one record. */
export interface RecordEnvelope {
  data: Row
  base: Row | null
  version: number | null
  deleted: boolean
  /** HLC of the last local change, or of the server version when there is none. */
  hlc: string | null
  state: RecordSyncState
}

/**
 * An envelope as stored: `base` is the string `'data'` when it has exactly `data`'s fields with the
 * same values (a synced record without local-only fields, the usual case), so the row is stored
 * once instead of twice.
 */
export type StoredEnvelope = Omit<RecordEnvelope, 'base'> & { base: Row | null | 'data' }

const rowSchema = z.record(z.string(), z.unknown())

/** Validates a persisted envelope ({@link StoredEnvelope}). */
export const recordEnvelopeSchema = z.object({
  data: rowSchema,
  base: z.union([rowSchema, z.literal('data')]).nullable(),
  version: z.number().int().nullable(),
  deleted: z.boolean(),
  hlc: z.string().nullable(),
  state: z.enum(['synced', 'pending', 'conflict', 'failed']),
})

/** Whether `a` and `b` have the same own fields holding the same values (`===`). */
function sameFields(a: Row, b: Row): boolean {
  let count = 0
  for (const key in a) {
    if (!Object.hasOwn(a, key)) continue
    if (!Object.hasOwn(b, key) || a[key] !== b[key]) return false
    count++
  }
  for (const key in b) if (Object.hasOwn(b, key)) count--
  return count === 0
}

/** What is stored for `envelope`: the row once when its base equals its data field for field. */
export function storedEnvelope(envelope: RecordEnvelope): StoredEnvelope {
  const { data, base } = envelope
  if (base === null || (base !== data && !sameFields(data, base))) return envelope
  return { data, base: 'data', version: envelope.version, deleted: envelope.deleted, hlc: envelope.hlc, state: envelope.state }
}

/** The envelope a stored one stands for; a base stored as `'data'` becomes a copy of the data. */
export function loadedEnvelope(stored: StoredEnvelope): RecordEnvelope {
  if (stored.base !== 'data') return stored as RecordEnvelope
  return { data: stored.data, base: { ...stored.data }, version: stored.version, deleted: stored.deleted, hlc: stored.hlc, state: stored.state }
}

/** Storage key of a record. */
export function recordKey(collection: string, id: string): string {
  return `r/${collection}/${id}`
}

/** Storage key of a local→remote id alias. */
export function aliasKey(collection: string, localId: string): string {
  return `a/${collection}/${localId}`
}

/** Something found in storage that could not be used, kept for repair. */
export interface DamagedEntry {
  key: string
  value: unknown
  problem: string
}

/** In-memory index of one collection's records. */
export class RecordTable {
  readonly records = new Map<string, RecordEnvelope>()
  readonly aliases = new Map<string, string>()
  private listCache: readonly Row[] | null = null
  private filtered = new WeakMap<(row: any) => boolean, readonly Row[]>()

  constructor(readonly name: string) {}

  /** Resolve a local id to the id the record is stored under. */
  resolve(id: string): string {
    // (Only tables with server-assigned ids ever have aliases.)
    return this.aliases.size === 0 ? id : (this.aliases.get(id) ?? id)
  }

  get(id: string): RecordEnvelope | undefined {
    return this.records.get(this.resolve(id))
  }

  /** Ops to store `envelope` under `id`, and the in-memory update to run once committed. */
  put(id: string, envelope: RecordEnvelope): { ops: StorageOp[]; apply: () => void } {
    return {
      ops: [setOp(recordKey(this.name, id), storedEnvelope(envelope))],
      apply: () => {
        this.records.set(id, envelope)
        this.invalidate()
      },
    }
  }

  remove(id: string): { ops: StorageOp[]; apply: () => void } {
    return {
      ops: [deleteOp(recordKey(this.name, id))],
      apply: () => {
        this.records.delete(id)
        this.invalidate()
      },
    }
  }

  alias(localId: string, remoteId: string): { ops: StorageOp[]; apply: () => void } {
    return {
      ops: [setOp(aliasKey(this.name, localId), remoteId)],
      apply: () => {
        this.aliases.set(localId, remoteId)
      },
    }
  }

  /** Live rows as one stable array between changes. */
  list(filter?: (row: Row) => boolean): readonly Row[] {
    if (!this.listCache) {
      const rows: Row[] = []
      for (const env of this.records.values()) if (!env.deleted) rows.push(env.data)
      this.listCache = Object.freeze(rows)
    }
    if (!filter) return this.listCache
    let cached = this.filtered.get(filter)
    if (!cached) {
      cached = Object.freeze(this.listCache.filter(filter))
      this.filtered.set(filter, cached)
    }
    return cached
  }

  invalidate(): void {
    // A filtered list is cached only beside the whole one: with none, there is nothing to drop.
    if (this.listCache === null) return
    this.listCache = null
    this.filtered = new WeakMap()
  }
}

/** Parse one persisted entry into the tables; damaged entries are returned, never dropped. */
export function loadRecordEntry(
  tables: Map<string, RecordTable>,
  key: string,
  value: unknown,
): DamagedEntry | null {
  const parts = /^([ra])\/([^/]+)\/(.*)$/s.exec(key)
  if (!parts) return { key, value, problem: 'unrecognised key' }
  const [, kind, collection, id] = parts as unknown as [string, string, string, string]
  const table = tables.get(collection)
  if (!table) return { key, value, problem: `unknown collection "${collection}"` }
  if (kind === 'a') {
    if (typeof value !== 'string') return { key, value, problem: 'alias is not a string' }
    table.aliases.set(id, value)
    return null
  }
  const parsed = recordEnvelopeSchema.safeParse(value)
  if (!parsed.success) return { key, value, problem: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') }
  table.records.set(id, loadedEnvelope(parsed.data as StoredEnvelope))
  return null
}
