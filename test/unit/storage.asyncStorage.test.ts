import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { StorageError } from '../../src/core/errors.js'
import type { StorageOp } from '../../src/core/storage.js'
import { createAsyncStorage } from '../../src/storage/asyncStorage.js'
import type { StorageCorruption } from '../../src/storage/corruption.js'
import { propertyParameters } from '../../src/testing/storageContract.js'
import { CrashSwitch, createFakeAsyncStorage, crashAtomicityProperty, transientFailureProperty } from './storage.fakes.js'

const opener =
  (getAllKeys: boolean) =>
  (data: Map<string, string>, crash: CrashSwitch) =>
    createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data, crash, getAllKeys }), namespace: 'ns', keyLogCompactAfter: 2 })

const kindOf = async (promise: Promise<unknown>): Promise<string | undefined> =>
  promise.then(
    () => undefined,
    (error: unknown) => (error instanceof StorageError ? error.kind : `not a StorageError: ${String(error)}`),
  )

const keysWith = (data: Map<string, string>, prefix: string): string[] => [...data.keys()].filter((key) => key.startsWith(prefix)).sort()

const sets = (from: number, to: number): StorageOp[] =>
  Array.from({ length: to - from }, (_, i) => ({ type: 'set', key: `k${String(from + i).padStart(3, '0')}`, value: from + i }))

describe.each([true, false])('async storage (getAllKeys: %s): atomic commits', (getAllKeys) => {
  it('shows all or none of a commit after a crash at any write, key log compaction included (property)', async () => {
    await fc.assert(crashAtomicityProperty(opener(getAllKeys), 'ns:j'), propertyParameters(150))
  })

  it('leaves nothing of a commit whose writes fail, and keeps working (property)', async () => {
    await fc.assert(transientFailureProperty(opener(getAllKeys)), propertyParameters(100))
  })
})

describe('async storage: key log', () => {
  it('folds the key log into snapshots and opens from them, without getAllKeys', async () => {
    const data = new Map<string, string>()
    const open = () => createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data, getAllKeys: false }), namespace: 'ns', keyLogCompactAfter: 4 })
    const store = open()
    for (let i = 0; i < 40; i++) await store.commit(sets(i, i + 1))
    await store.commit([{ type: 'delete', key: 'k007' }])
    await store.close()
    expect(keysWith(data, 'ns:s:').length).toBeGreaterThan(0)
    expect(keysWith(data, 'ns:l:').length).toBeLessThan(8)
    const reopened = open()
    expect((await reopened.scan('k')).map((e) => e.key)).toEqual(sets(0, 40).map((op) => op.key).filter((key) => key !== 'k007'))
  })

  it('finishes or undoes a compaction a crash interrupted, leaving no stray records', async () => {
    for (let crashAt = 0; crashAt < 14; crashAt++) {
      const data = new Map<string, string>()
      const crash = new CrashSwitch()
      const open = (c: CrashSwitch) => createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data, crash: c, getAllKeys: false }), namespace: 'ns', keyLogCompactAfter: 3 })
      const store = open(crash)
      await store.commit(sets(0, 1))
      await store.commit(sets(1, 2))
      // The third segment triggers a compaction after the commit has resolved.
      crash.arm(3 + crashAt)
      const outcome = await kindOf(store.commit(sets(2, 3)))
      await store.close()
      const reopened = open(new CrashSwitch())
      expect(await reopened.scan('')).toEqual(sets(0, outcome === undefined ? 3 : 2).map((op) => ({ key: op.key, value: (op as { value: number }).value })))
      await reopened.close()
      const pointer = JSON.parse(data.get('ns:m') ?? '{"snap":null,"seg":0}') as { snap: { gen: number; chunks: number } | null; seg: number; pending?: unknown; garbage?: unknown }
      expect(pointer.pending).toBeUndefined()
      expect(pointer.garbage).toBeUndefined()
      const chunks = pointer.snap ? Array.from({ length: pointer.snap.chunks }, (_, i) => `ns:s:${pointer.snap!.gen}:${i}`) : []
      expect(keysWith(data, 'ns:s:')).toEqual(chunks.sort())
      for (const key of keysWith(data, 'ns:l:')) expect(Number(key.slice('ns:l:'.length))).toBeGreaterThanOrEqual(pointer.seg)
    }
  })

  it('reads only its own namespace at open', async () => {
    const data = new Map<string, string>()
    const other = createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data }), namespace: 'other' })
    await other.commit(sets(0, 50))
    const fake = createFakeAsyncStorage({ data })
    const read: string[] = []
    const multiGet = fake.multiGet.bind(fake)
    fake.multiGet = (keys) => {
      read.push(...keys)
      return multiGet(keys)
    }
    let listed = 0
    fake.getAllKeys = async () => {
      listed++
      return [...data.keys()]
    }
    const store = createAsyncStorage({ asyncStorage: fake, namespace: 'ns' })
    await store.commit(sets(0, 2))
    expect(await store.scan('')).toHaveLength(2)
    expect(read.every((key) => key.startsWith('ns:'))).toBe(true)
    expect(listed).toBe(0)
  })

  it('rebuilds a damaged key log from getAllKeys and reports it', async () => {
    const data = new Map<string, string>()
    const first = createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data }), namespace: 'ns', keyLogCompactAfter: 1000 })
    for (let i = 0; i < 5; i++) await first.commit(sets(i, i + 1))
    await first.close()
    data.set('ns:l:2', '{"a": [')
    const reports: StorageCorruption[] = []
    const store = createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data }), namespace: 'ns', onCorrupt: (r) => reports.push(r) })
    expect((await store.scan('')).map((e) => e.key)).toEqual(['k000', 'k001', 'k002', 'k003', 'k004'])
    expect(reports).toEqual([expect.objectContaining({ kind: 'record', record: 'ns:l:2', action: expect.stringContaining('rebuilt') })])
    await store.commit(sets(5, 6))
    await store.close()
    expect(data.has('ns:l:2')).toBe(false)
    const clean: StorageCorruption[] = []
    const reopened = createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data, getAllKeys: false }), namespace: 'ns', onCorrupt: (r) => clean.push(r) })
    expect(await reopened.scan('')).toHaveLength(6)
    expect(clean).toEqual([])
  })

  it('without getAllKeys, reports a damaged segment and keeps the rest', async () => {
    const data = new Map<string, string>()
    const open = (onCorrupt?: (r: StorageCorruption) => void) =>
      createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data, getAllKeys: false }), namespace: 'ns', keyLogCompactAfter: 1000, onCorrupt })
    const first = open()
    for (let i = 0; i < 4; i++) await first.commit(sets(i, i + 1))
    await first.close()
    data.set('ns:l:1', 'garbage')
    const reports: StorageCorruption[] = []
    const store = open((r) => reports.push(r))
    expect((await store.scan('')).map((e) => e.key)).toEqual(['k000', 'k002', 'k003'])
    expect(reports).toEqual([expect.objectContaining({ kind: 'record', record: 'ns:l:1', found: 'garbage' })])
    expect(data.get('ns:d:k001')).toBe('1')
  })

  it('refuses to guess when the key log pointer is unreadable and there is no getAllKeys', async () => {
    const data = new Map<string, string>()
    const first = createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data }), namespace: 'ns', keyLogCompactAfter: 2 })
    for (let i = 0; i < 6; i++) await first.commit(sets(i, i + 1))
    await first.close()
    data.set('ns:m', '{')
    const snapshot = new Map(data)
    const blind = createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data, getAllKeys: false }), namespace: 'ns' })
    expect(await kindOf(blind.scan(''))).toBe('corrupt')
    expect(data).toEqual(snapshot)
    const reports: StorageCorruption[] = []
    const repaired = createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data }), namespace: 'ns', onCorrupt: (r) => reports.push(r) })
    expect(await repaired.scan('')).toHaveLength(6)
    expect(reports).toEqual([expect.objectContaining({ kind: 'record', record: 'key log pointer' })])
    await repaired.close()
    expect(await createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data, getAllKeys: false }), namespace: 'ns' }).scan('')).toHaveLength(6)
  })

  it('reports tampered values and is repaired by writing them', async () => {
    const data = new Map<string, string>()
    const first = createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data }), namespace: 'ns' })
    await first.commit(sets(0, 3))
    await first.close()
    data.set('ns:d:k001', '{"half":')
    const reports: StorageCorruption[] = []
    const store = createAsyncStorage({ asyncStorage: createFakeAsyncStorage({ data }), namespace: 'ns', onCorrupt: (r) => reports.push(r) })
    expect((await store.scan('')).map((e) => e.key)).toEqual(['k000', 'k002'])
    expect(await kindOf(store.get('k001'))).toBe('corrupt')
    expect(reports).toEqual([expect.objectContaining({ kind: 'entry', key: 'k001', found: '{"half":' })])
    await store.commit([{ type: 'set', key: 'k001', value: 'again' }])
    expect(await store.get('k001')).toBe('again')
    expect(await store.corruption()).toEqual([])
  })
})
