import type { Storage } from '../core/storage.js'

/**
 * What an adapter found damaged in its backing store. Adapters never crash at open over damage and
 * never drop it silently: each finding goes to the `onCorrupt` option when it is found, and stays
 * listed by `corruption()` until repaired (for entries) or the store is reopened (for the rest).
 */
export type StorageCorruption =
  /** A stored value that is not valid JSON. Reads of the key throw `StorageError('corrupt')`,
   *  `scan` skips it; committing a `set` or `delete` of the key repairs it. */
  | { kind: 'entry'; key: string; found: string; reason: string }
  /** One of the adapter's own records (journal, key log) was unreadable; `action` says what was done. */
  | { kind: 'record'; record: string; found: string; reason: string; action: string }
  /** The file log was damaged from `offset` on; those bytes were moved aside to `savedTo` (or
   *  dropped when `savedTo` is null) and the log was cut back to the last whole commit. */
  | { kind: 'log'; offset: number; discardedBytes: number; reason: LogDamageReason; savedTo: string | null }

/** Why a log was cut short. */
export type LogDamageReason =
  /** The file does not start with the log header. */
  | 'bad-header'
  /** A record runs past the end of the file (a write torn by a crash). */
  | 'torn-record'
  /** A record's checksum does not match its bytes. */
  | 'checksum-mismatch'
  /** A record passed its checksum but cannot be decoded. */
  | 'malformed-record'
  /** The file ends inside a commit that spans several records. */
  | 'incomplete-commit'

/** Receives each finding as it is made. */
export type CorruptionListener = (report: StorageCorruption) => void

/** A storage adapter that can say what damage it found, for a repair step to report. */
export interface InspectableStorage extends Storage {
  /** Damage found and not yet repaired. */
  corruption(): Promise<StorageCorruption[]>
}

/** At most `max` characters of damaged text, so a report stays small. */
export function excerpt(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} chars)`
}

/** Call a listener without letting its failure disturb the adapter. */
export function notify(listener: CorruptionListener | undefined, report: StorageCorruption): void {
  if (!listener) return
  try {
    listener(report)
  } catch {
    // A reporting callback must not break storage; the finding is still listed by corruption().
  }
}
