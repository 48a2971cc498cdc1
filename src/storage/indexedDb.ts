import { StorageError } from '../core/errors.js'
import type { StorageEntry, StorageOp } from '../core/storage.js'
import { decodeValue, encodeValue, toStorageError } from './codec.js'
import { excerpt, notify } from './corruption.js'
import type { CorruptionListener, InspectableStorage, StorageCorruption } from './corruption.js'
import { createGate } from './gate.js'
import { prefixUpperBound } from './sortedKeys.js'

/** Options for {@link createIndexedDbStorage}. */
export interface IndexedDbStorageOptions {
  /** Database name; one database per store, so the name is the namespace. */
  name: string
  /** Default `globalThis.indexedDB`. */
  indexedDB?: IDBFactory
  /** Default `globalThis.IDBKeyRange` (pass fake-indexeddb's outside a browser). */
  IDBKeyRange?: typeof IDBKeyRange
  /**
   * Durability hint for commit transactions (default `'default'`, the browser's choice).
   * `'strict'` waits for the disk; `'relaxed'` resolves once the OS has the data.
   */
  durability?: IDBTransactionDurability
  /** Called with each damaged entry found (once per key per instance). */
  onCorrupt?: CorruptionListener
}

/** A storage over IndexedDB. */
export interface IndexedDbStorageAdapter extends InspectableStorage {
  /** Open the database (done on first use anyway); rejects with the open failure. */
  open(): Promise<void>
}

const STORE = 'entries'
const VERSION = 1

/**
 * A storage adapter over IndexedDB: one database holding one object store of JSON texts keyed by
 * the entry key.
 *
 * - A commit is one `readwrite` transaction, so it is atomic across crashes by IndexedDB's own
 *   guarantee; IndexedDB orders transactions on the store, so commits apply in call order.
 * - `scan(prefix)` reads one key range, `[prefix, successor(prefix))`, in IndexedDB's code-unit
 *   key order: no in-memory copy of the store is kept.
 * - Quota exhaustion aborts the transaction and rejects with `StorageError('quota-exceeded')`.
 * - A value that is not a JSON text (tampered storage): `get` throws `StorageError('corrupt')`,
 *   `scan` skips it and reports it through `onCorrupt`; `corruption()` walks the whole store.
 * - When another connection upgrades or deletes the database, this one closes itself (so it never
 *   blocks that) and further calls reject with `StorageError('closed')`.
 */
export function createIndexedDbStorage(options: IndexedDbStorageOptions): IndexedDbStorageAdapter {
  const resolved = resolveOptions(options)
  let db: IDBDatabase | undefined
  let opening: Promise<IDBDatabase> | undefined
  /** Set when another connection upgraded or deleted the database and this one gave way. */
  let lost = false
  let closing: Promise<void> | undefined
  const gate = createGate('indexedDB storage')
  const reported = new Set<string>()
  const lostError = (): StorageError =>
    new StorageError('closed', 'indexedDB storage closed: another connection upgraded or deleted the database')

  /** Open once; a failed open is retried by the next call. */
  function open(): Promise<IDBDatabase> {
    opening ??= openDatabase(resolved.factory, resolved.name).then(
      (opened) => {
        opened.onversionchange = () => {
          opened.close()
          lost = true
        }
        db = opened
        return opened
      },
      (error: unknown) => {
        opening = undefined
        throw toStorageError(error, `indexedDB: cannot open ${JSON.stringify(resolved.name)}`)
      },
    )
    return opening
  }

  async function transaction(mode: IDBTransactionMode): Promise<IDBTransaction> {
    const database = await open()
    if (lost) throw lostError()
    try {
      return mode === 'readwrite'
        ? database.transaction(STORE, mode, { durability: resolved.durability })
        : database.transaction(STORE, mode)
    } catch (error) {
      throw lost ? lostError() : toStorageError(error, 'indexedDB: cannot start a transaction')
    }
  }

  function decode(key: string, stored: unknown): unknown {
    if (typeof stored !== 'string') throw new StorageError('corrupt', `indexedDB: the stored value for key ${JSON.stringify(key)} is not a JSON text`)
    return decodeValue(key, stored)
  }

  function corruptReport(key: string, stored: unknown): StorageCorruption {
    const found = typeof stored === 'string' ? stored : `(${typeof stored})`
    return { kind: 'entry', key, found: excerpt(found), reason: typeof stored === 'string' ? 'stored value is not valid JSON' : 'stored value is not a JSON text' }
  }

  function readValue(key: string, stored: unknown): unknown {
    if (stored === undefined) return undefined
    try {
      return decode(key, stored)
    } catch (error) {
      reportOnce(key, stored)
      throw error
    }
  }

  function reportOnce(key: string, stored: unknown): void {
    if (reported.has(key)) return
    reported.add(key)
    notify(resolved.onCorrupt, corruptReport(key, stored))
  }

  return {
    open: () =>
      gate.admit(async () => {
        await open()
      }),
    get: (key) =>
      gate.admit(async () => {
        const tx = await transaction('readonly')
        const stored = await request(tx.objectStore(STORE).get(key))
        return readValue(key, stored)
      }),
    getMany: (keys) =>
      gate.admit(async () => {
        const tx = await transaction('readonly')
        const store = tx.objectStore(STORE)
        const stored = await Promise.all(keys.map((key) => request(store.get(key))))
        return keys.map((key, i) => readValue(key, stored[i]))
      }),
    scan: (prefix) =>
      gate.admit(async () => {
        const tx = await transaction('readonly')
        const store = tx.objectStore(STORE)
        const upper = prefixUpperBound(prefix)
        const { keyRange } = resolved
        const range = prefix === '' ? undefined : upper === undefined ? keyRange.lowerBound(prefix) : keyRange.bound(prefix, upper, false, true)
        // Both requests run in one transaction, so keys and values line up.
        const [keys, stored] = await Promise.all([request(store.getAllKeys(range)), request(store.getAll(range))])
        const out: StorageEntry[] = []
        keys.forEach((key, i) => {
          if (typeof key !== 'string') return
          try {
            out.push({ key, value: decode(key, stored[i]) })
          } catch {
            reportOnce(key, stored[i])
          }
        })
        return out
      }),
    commit: (ops: readonly StorageOp[]) =>
      gate.admit(async () => {
        // Encode first so a bad value fails the commit before a transaction exists.
        const writes: [string, string | null][] = ops.map((op) => {
          if (typeof op.key !== 'string') throw new TypeError('indexedDB: keys must be strings')
          return [op.key, op.type === 'set' ? encodeValue(op.key, op.value) : null]
        })
        const tx = await transaction('readwrite')
        const done = completion(tx)
        try {
          const store = tx.objectStore(STORE)
          for (const [key, text] of writes) {
            if (text === null) store.delete(key)
            else store.put(text, key)
          }
        } catch (error) {
          tx.abort()
          await done.catch(() => undefined)
          throw toStorageError(error, 'indexedDB: commit failed')
        }
        await done
        for (const [key] of writes) reported.delete(key)
      }),
    corruption: () =>
      gate.admit(async () => {
        const tx = await transaction('readonly')
        const store = tx.objectStore(STORE)
        const [keys, stored] = await Promise.all([request(store.getAllKeys()), request(store.getAll())])
        const found: StorageCorruption[] = []
        keys.forEach((key, i) => {
          if (typeof key !== 'string') return
          try {
            decode(key, stored[i])
          } catch {
            found.push(corruptReport(key, stored[i]))
          }
        })
        return found
      }),
    close() {
      closing ??= (async () => {
        await gate.close()
        await opening?.catch(() => undefined)
        // IndexedDB's close() lets transactions already started finish.
        db?.close()
      })()
      return closing
    },
  }
}

function resolveOptions(options: IndexedDbStorageOptions): {
  name: string
  factory: IDBFactory
  keyRange: typeof IDBKeyRange
  durability: IDBTransactionDurability
  onCorrupt: CorruptionListener | undefined
} {
  if (typeof options.name !== 'string' || options.name === '') throw new TypeError('indexedDB: name must be a non-empty string')
  const factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB
  if (!factory) throw new TypeError('indexedDB: no globalThis.indexedDB here; pass options.indexedDB')
  const keyRange = options.IDBKeyRange ?? (globalThis as { IDBKeyRange?: typeof IDBKeyRange }).IDBKeyRange
  if (!keyRange) throw new TypeError('indexedDB: no globalThis.IDBKeyRange here; pass options.IDBKeyRange')
  return { name: options.name, factory, keyRange, durability: options.durability ?? 'default', onCorrupt: options.onCorrupt }
}

function openDatabase(factory: IDBFactory, name: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = factory.open(name, VERSION)
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE)
    }
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error)
    // `blocked` only delays the open until older connections close; keep waiting.
  })
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(toStorageError(req.error, 'indexedDB: request failed'))
  })
}

function completion(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve()
    const fail = (error: unknown): void => reject(toStorageError(error ?? new Error('transaction aborted'), 'indexedDB: commit failed'))
    // A failed request aborts the transaction (nothing is written); its error, bubbled up here
    // before the abort, says why (tx.error is only set once the abort runs). First settle wins.
    tx.onerror = (event) => fail((event.target as IDBRequest | null)?.error ?? tx.error)
    tx.onabort = () => fail(tx.error)
  })
}
