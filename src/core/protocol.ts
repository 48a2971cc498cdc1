/**
 * The sync protocol between a device and the server, and the backend port that carries it.
 *
 * Invariants the server side guarantees (see `sql/`):
 * - Push is exactly-once per `(clientId, seq)`: a retried batch returns the stored outcomes and
 *   changes nothing.
 * - Each mutation in a batch is applied in its own subtransaction; a rejected one never blocks or
 *   loses the rest of its batch. Outcomes come back in the order of the mutations.
 * - Pull is gapless: a cursor never skips a committed row, whatever the commit order or clocks.
 */

/** A plain row as stored locally and on the server (JSON-compatible values). */
export type Row = Record<string, unknown>

/** What a queued change does to its record. */
export type MutationAction = 'create' | 'update' | 'delete'

/** One change sent to the server. */
export interface Mutation {
  /** Per-client sequence number; strictly increasing for a client, never reused. */
  seq: number
  /** Table name (unqualified, in the schema the server migration syncs; default `public`). */
  table: string
  action: MutationAction
  /**
   * Primary key of the record, as text. For tables whose ids the server assigns, a create carries
   * the device's local id here and the server's answer carries the real one.
   */
  id: string
  /** Fields to write (create: the full row; update: changed fields only; delete: omitted). */
  data?: Row
  /**
   * The field of `data` that holds the row's primary key, when known. The server takes a row's key
   * from `id` alone, so a backend may leave this field out of the data it sends.
   */
  key?: string
  /** Server version this change was based on; `null` for a create or to skip the check. */
  baseVersion: number | null
  /** Hybrid logical clock stamp of the change (see `hlc.ts`). */
  hlc?: string
}

/** The server's answer for one mutation. */
export type MutationOutcome =
  | {
      seq: number
      status: 'applied'
      /** The row as stored after the write (includes a server-assigned id; no sync columns). */
      row: Row | null
      version: number
      hlc: string | null
    }
  | {
      seq: number
      status: 'conflict'
      /** The current server row; `null` when it does not exist (or is not visible to the caller). */
      row: Row | null
      version: number | null
      deleted: boolean
      hlc: string | null
    }
  | {
      seq: number
      status: 'rejected'
      /** PostgreSQL SQLSTATE, e.g. `23502` (not null), `23514` (check), `42501` (RLS). */
      code: string
      message: string
    }
  | {
      seq: number
      /**
       * Not applied, nothing stored: the batch named a predecessor ({@link PushOptions.after}) the
       * server had not applied yet. Send the mutation again; only such a batch is ever deferred, and
       * then every mutation in it is.
       */
      status: 'deferred'
    }

/** One row change returned by a pull. */
export interface Change {
  table: string
  /** Primary key as text. */
  id: string
  /**
   * The row's current server state without the sync columns (a tombstone still carries its last
   * fields). Sync columns (`_version`, `_deleted`, `_xid`, `_hlc`) never appear in a `row`.
   */
  row: Row
  version: number
  deleted: boolean
  /** HLC stamp of the write that produced this version (server-stamped for plain-SQL writes). */
  hlc: string | null
}

/** Opaque pull cursor; `null` means "from the beginning". */
export type Cursor = string | null

/** Ask for changes after a cursor. */
export interface PullRequest {
  tables: readonly string[]
  cursor: Cursor
  /** Maximum number of changes in the answer. */
  limit: number
  /**
   * Leave out rows whose last write was a push stamped by this HLC node (the caller's own writes,
   * whose state it holds from the push answers). The page still counts them and the cursor moves
   * past them, so a page can hold fewer changes than `limit`, even none, with `hasMore`. Only for a
   * caller that applied the answer of every push it stamped with this node.
   */
  skipNode?: string
}

/** One page of changes. */
export interface PullResult {
  changes: Change[]
  /** Cursor to persist once `changes` are applied. */
  cursor: Cursor
  /** More changes are ready now; pull again. */
  hasMore: boolean
  /**
   * The cursor is older than the tombstone retention horizon: the device must resync from scratch
   * (pull from `null`), keeping its pending writes.
   */
  reset: boolean
  /**
   * Set on a page that ends the stream (`hasMore` false) when rows after its cursor are held back:
   * committed, but by a transaction that began while an older one is still running, so a later
   * pull returns them. A resync knows which rows the server has only once a page says none are.
   * Absent from servers that do not tell (then taken as false).
   */
  pending?: boolean
}

/**
 * Per-table checksum over the caller's live (non-deleted) rows, to verify a device holds what the
 * server holds. `checksum` is the decimal sum, modulo 2^64, over rows of the first 8 hex digits of
 * `md5(id || ':' || version)` read as an unsigned 32-bit integer — order-independent, so a device
 * computes the same figure from its records (see `checksum.ts`).
 */
export interface TableChecksum {
  table: string
  count: number
  checksum: string
}

/** Options every backend call takes. */
export interface CallOptions {
  signal?: AbortSignal
}

/** Options of {@link Backend.push}. */
export interface PushOptions extends CallOptions {
  /**
   * A seq of the batch sent just before this one, whose answer has not arrived: the server applies
   * this batch only if that one is applied already, and otherwise answers every mutation
   * `deferred`. Every seq of that earlier batch must have been new in it (never sent before), so
   * that being stored means that batch was applied. Lets a device send its next batch while the
   * previous one is on the wire without the two racing.
   */
  after?: number
}

/**
 * The backend port: everything the engine needs from a server. Implementations never decide retry
 * policy; they throw {@link SyncError} (see `errors.ts`) whose `kind` the engine acts on.
 */
export interface Backend {
  /** Push a batch; resolves to one outcome per mutation, in order. */
  push(clientId: string, mutations: readonly Mutation[], options?: PushOptions): Promise<MutationOutcome[]>
  /** Pull one page of changes after `request.cursor`. */
  pull(request: PullRequest, options?: CallOptions): Promise<PullResult>
  /** Checksums of the caller's live (non-deleted) rows, per table. */
  checksum(tables: readonly string[], options?: CallOptions): Promise<TableChecksum[]>
}
