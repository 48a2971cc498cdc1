import { IDBFactory, IDBKeyRange } from 'fake-indexeddb'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { StorageError } from '../../src/core/errors.js'
import type { StorageCorruption } from '../../src/storage/corruption.js'
import { createIndexedDbStorage } from '../../src/storage/indexedDb.js'

const kindOf = async (promise: Promise<unknown>): Promise<string | undefined> =>
  promise.then(
    () => undefined,
    (error: unknown) => (error instanceof StorageError ? error.kind : `not a StorageError: ${String(error)}`),
  )

const request = <T>(req: IDBRequest<T>): Promise<T> =>
  new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error)
  })

/** Write raw values into the adapter's object store, as tampering would. */
async function tamper(indexedDB: IDBFactory, name: string, entries: Record<string, unknown>): Promise<void> {
  const db = await request(indexedDB.open(name))
  const tx = db.transaction('entries', 'readwrite')
  for (const [key, value] of Object.entries(entries)) tx.objectStore('entries').put(value, key)
  await new Promise((resolve) => (tx.oncomplete = resolve))
  db.close()
}

/** fake-indexeddb's internal record writer, where a failure surfaces as a real request error. */
async function rawStoreRecordHost(indexedDB: IDBFactory): Promise<{ storeRecord: (...args: unknown[]) => unknown }> {
  const db = await request(indexedDB.open('probe'))
  const store = createIndexedDbStorage({ name: 'probe-adapter', indexedDB, IDBKeyRange })
  await store.open()
  await store.close()
  const adapterDb = await request(indexedDB.open('probe-adapter'))
  const raw = (adapterDb.transaction('entries', 'readonly').objectStore('entries') as unknown as { _rawObjectStore: object })._rawObjectStore
  adapterDb.close()
  db.close()
  return Object.getPrototypeOf(raw) as { storeRecord: (...args: unknown[]) => unknown }
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe('indexedDB storage', () => {
  it('rolls a commit back whole when one of its writes fails, and maps quota errors', async () => {
    const indexedDB = new IDBFactory()
    const host = await rawStoreRecordHost(indexedDB)
    const store = createIndexedDbStorage({ name: 'db', indexedDB, IDBKeyRange })
    await store.commit([{ type: 'set', key: 'keep', value: 1 }])
    const original = host.storeRecord
    let calls = 0
    vi.spyOn(host, 'storeRecord').mockImplementation(function (this: unknown, ...args: unknown[]) {
      if (++calls === 3) throw new DOMException('full', 'QuotaExceededError')
      return original.apply(this, args)
    })
    const ops = [
      { type: 'set' as const, key: 'keep', value: 2 },
      { type: 'set' as const, key: 'a', value: 1 },
      { type: 'set' as const, key: 'b', value: 1 },
      { type: 'delete' as const, key: 'keep' },
    ]
    expect(await kindOf(store.commit(ops))).toBe('quota-exceeded')
    expect(await store.scan('')).toEqual([{ key: 'keep', value: 1 }])
    vi.restoreAllMocks()
    await store.commit(ops)
    expect(await store.scan('')).toEqual([
      { key: 'a', value: 1 },
      { key: 'b', value: 1 },
    ])
  })

  it('maps other write failures to io and keeps working', async () => {
    const indexedDB = new IDBFactory()
    const host = await rawStoreRecordHost(indexedDB)
    const store = createIndexedDbStorage({ name: 'db', indexedDB, IDBKeyRange })
    vi.spyOn(host, 'storeRecord').mockImplementationOnce(() => {
      throw new DOMException('disk on fire', 'UnknownError')
    })
    expect(await kindOf(store.commit([{ type: 'set', key: 'a', value: 1 }, { type: 'set', key: 'b', value: 2 }]))).toBe('io')
    expect(await store.scan('')).toEqual([])
    await store.commit([{ type: 'set', key: 'c', value: 3 }])
    expect(await store.get('c')).toBe(3)
  })

  it('reports values that are not JSON text, refuses to read them, skips them in scan, repairs on write', async () => {
    const indexedDB = new IDBFactory()
    const first = createIndexedDbStorage({ name: 'db', indexedDB, IDBKeyRange })
    await first.commit([{ type: 'set', key: 'good', value: { ok: true } }])
    await first.close()
    await tamper(indexedDB, 'db', { 'bad/text': '{"no', 'bad/object': { raw: 'object' } })

    const reports: StorageCorruption[] = []
    const store = createIndexedDbStorage({ name: 'db', indexedDB, IDBKeyRange, onCorrupt: (r) => reports.push(r) })
    expect(await store.scan('')).toEqual([{ key: 'good', value: { ok: true } }])
    expect(await store.scan('')).toHaveLength(1)
    expect(reports.map((r) => r.kind === 'entry' && r.key).sort()).toEqual(['bad/object', 'bad/text'])
    expect(await kindOf(store.get('bad/text'))).toBe('corrupt')
    expect(await kindOf(store.getMany(['good', 'bad/object']))).toBe('corrupt')
    expect(reports).toHaveLength(2)
    expect((await store.corruption()).map((r) => r.kind === 'entry' && r.found).sort()).toEqual(['(object)', '{"no'])

    await store.commit([{ type: 'set', key: 'bad/text', value: 'fixed' }, { type: 'delete', key: 'bad/object' }])
    expect(await store.corruption()).toEqual([])
    expect(await store.get('bad/text')).toBe('fixed')
  })

  it('gives way to a version upgrade from another connection and then rejects with closed', async () => {
    const indexedDB = new IDBFactory()
    const store = createIndexedDbStorage({ name: 'db', indexedDB, IDBKeyRange })
    await store.commit([{ type: 'set', key: 'a', value: 1 }])
    const upgraded = await request(indexedDB.open('db', 2))
    upgraded.close()
    expect(await kindOf(store.get('a'))).toBe('closed')
  })

  it('passes the durability hint to commit transactions', async () => {
    const indexedDB = new IDBFactory()
    const store = createIndexedDbStorage({ name: 'db', indexedDB, IDBKeyRange, durability: 'strict' })
    await store.open()
    const seen: unknown[] = []
    const db = await request(indexedDB.open('db'))
    const proto = Object.getPrototypeOf(db) as { transaction: (...args: unknown[]) => unknown }
    db.close()
    const original = proto.transaction
    vi.spyOn(proto, 'transaction').mockImplementation(function (this: unknown, ...args: unknown[]) {
      seen.push(args[2])
      return original.apply(this, args)
    })
    await store.commit([{ type: 'set', key: 'a', value: 1 }])
    expect(seen).toContainEqual({ durability: 'strict' })
  })

  it('needs a factory and a key range class', () => {
    expect(() => createIndexedDbStorage({ name: 'db', IDBKeyRange })).toThrow(/indexedDB/)
    expect(() => createIndexedDbStorage({ name: 'db', indexedDB: new IDBFactory() })).toThrow(/IDBKeyRange/)
    expect(() => createIndexedDbStorage({ name: '', indexedDB: new IDBFactory(), IDBKeyRange })).toThrow(TypeError)
  })
})
