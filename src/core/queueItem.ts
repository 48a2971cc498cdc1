/**
 * What the durable queue stores: one queued change per key, validated on load.
 *
 * Storage layout (prefixes configurable in `createQueue`):
 * - `q/<seq, 16 digits>` → {@link QueueItem}, one key per queued change;
 * - `s/<mark, 16 digits>` → {@link SentMark}, one key per slice handed to the server: the attempt
 *   each of its items made, applied over the `q/` entries at load;
 * - `f/<seq, 16 digits>` → {@link FailedItem}, the dead-letter store;
 * - `meta/nextSeq` → the next sequence number to hand out (never decreases).
 * Zero-padding makes `scan`'s key order the sequence order (and the marks' order of writing).
 */
import { z } from 'zod'
import type { MutationAction, Row } from './protocol.js'
import type { Priority } from './types.js'

/** Why an attempt failed, as kept on the item (`kind` is a `SyncErrorKind` for backend failures). */
export interface QueueError {
  kind: string
  /** SQLSTATE or HTTP-level code, where known. */
  code?: string
  message: string
}

/**
 * One queued change to one record. Items are immutable: every change to an item stores a new
 * object under the same seq.
 */
export interface QueueItem {
  /** Unique id of the item (stable across coalescing and `retryFailed`). */
  readonly id: string
  /** Per-client sequence number: strictly increasing, never reused; the server's exactly-once key. */
  readonly seq: number
  readonly action: MutationAction
  /** Server table the record lives in. */
  readonly entityType: string
  /** Key of the record's queue: its local primary key, or its server id once `remap` has run. */
  readonly recordId: string
  /** The record's local primary key when the change was made. */
  readonly localId: string
  /** The server's id for the record, once known (server-assigned ids); `null` until then. */
  readonly remoteId: string | null
  /** create: the full row; update: the changed fields; delete: `null`. */
  readonly data: Readonly<Row> | null
  /** Server version the change was based on; `null` when none (a create, or no check). */
  readonly baseVersion: number | null
  /** Hybrid logical clock stamp of the latest local write folded into this item. */
  readonly hlc: string
  /** When the first write folded into this item was queued (ms since epoch). */
  readonly timestamp: number
  /** How many times the item was handed to the server (`markSent`). */
  readonly attempts: number
  /** When it was last handed to the server; `null` before the first time. */
  readonly lastAttempt: number | null
  /** The last failure seen for it; `null` when none. */
  readonly error: QueueError | null
  /** Requested priority (the record's queue runs at the highest priority among its items). */
  readonly priority: Priority
  /** Ever handed to the server: from then on its content is frozen (the server may have applied it). */
  readonly sent: boolean
}

/** A queue item that failed permanently, in the dead-letter store. */
export interface FailedItem extends QueueItem {
  readonly error: QueueError
  /** When it was moved to the dead-letter store. */
  readonly failedAt: number
}

/** Highest sequence number: keys stay 16 digits and numbers stay exact. */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER

const SEQ_DIGITS = 16

const rowSchema = z.record(z.string(), z.unknown())

/** Validates a {@link QueueError}. */
export const queueErrorSchema = z.object({
  kind: z.string(),
  code: z.string().optional(),
  message: z.string(),
})

const itemShape = {
  id: z.string().min(1),
  seq: z.number().int().min(1).max(MAX_SEQ),
  action: z.enum(['create', 'update', 'delete']),
  entityType: z.string().min(1),
  recordId: z.string().min(1),
  localId: z.string(),
  remoteId: z.string().nullable(),
  data: rowSchema.nullable(),
  baseVersion: z.number().int().nullable(),
  hlc: z.string(),
  timestamp: z.number(),
  attempts: z.number().int().min(0),
  lastAttempt: z.number().nullable(),
  error: queueErrorSchema.nullable(),
  priority: z.enum(['high', 'normal', 'low']),
  sent: z.boolean(),
}

/** A delete carries no data; a create or update always does. */
function dataMatchesAction(item: { action: string; data: unknown }): boolean {
  return item.action === 'delete' ? item.data === null : item.data !== null
}

const dataRule = { message: 'data must be null for a delete and an object for a create or update', path: ['data'] }

/** Validates a stored {@link QueueItem}. */
export const queueItemSchema = z.object(itemShape).refine(dataMatchesAction, dataRule)

/** Validates a stored {@link FailedItem}. */
export const failedItemSchema = z
  .object({ ...itemShape, error: queueErrorSchema, failedAt: z.number() })
  .refine(dataMatchesAction, dataRule)

/**
 * One `markSent` call as stored: for each item, by position, the attempt count and base version
 * it was sent with, all at `at`. Writing this one record instead of every item whole is what makes
 * freezing a slice cheap. At load an entry counts only when its attempt count is higher than the
 * item's own `attempts`: an item written whole later (an error kept on it, a remap) already holds
 * what the entry says, and a later mark of the same item holds a higher count.
 */
export interface SentMark {
  /** When the slice was handed to the server (the items' `lastAttempt`). */
  readonly at: number
  readonly seqs: readonly number[]
  /** Each item's `attempts` after this attempt. */
  readonly attempts: readonly number[]
  /** Each item's base version as sent. */
  readonly bases: ReadonlyArray<number | null>
}

/** Validates a stored {@link SentMark}. */
export const sentMarkSchema = z
  .object({
    at: z.number(),
    seqs: z.array(z.number().int().min(1).max(MAX_SEQ)),
    attempts: z.array(z.number().int().min(1)),
    bases: z.array(z.number().int().nullable()),
  })
  .refine((m) => m.seqs.length === m.attempts.length && m.seqs.length === m.bases.length, {
    message: 'seqs, attempts and bases must have one entry per item',
  })

/** Storage key of the item with `seq` under `prefix`. */
export function seqKey(prefix: string, seq: number): string {
  return prefix + String(seq).padStart(SEQ_DIGITS, '0')
}

/** The seq encoded in `key` under `prefix`, or `null` when the key is not one of ours. */
export function seqOfKey(prefix: string, key: string): number | null {
  if (!key.startsWith(prefix)) return null
  const digits = key.slice(prefix.length)
  if (digits.length !== SEQ_DIGITS || !/^\d+$/.test(digits)) return null
  const seq = Number(digits)
  return seq >= 1 && seq <= MAX_SEQ ? seq : null
}
