import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { createAsyncStorage } from '../../src/storage/asyncStorage.js'
import { createFileStorage } from '../../src/storage/file.js'
import { createIndexedDbStorage } from '../../src/storage/indexedDb.js'
import { createMemoryStorage } from '../../src/storage/memory.js'
import { createWebStorage } from '../../src/storage/webStorage.js'
import type { MakeStorageHarness } from '../../src/testing/storageContract.js'
import { runStorageContract } from '../../src/testing/storageContract.js'
import { createFakeAsyncStorage, createFakeLocalStorage } from './storage.fakes.js'

const adapters: [string, MakeStorageHarness][] = [
  ['memory', async () => ({ store: createMemoryStorage(), sibling: async () => createMemoryStorage() })],
  [
    'webStorage',
    async () => {
      const localStorage = createFakeLocalStorage()
      // App keys that are not ours must be left alone.
      localStorage.setItem('app-key', 'not json at all')
      const make = (namespace: string) => createWebStorage({ storage: localStorage, namespace })
      return { store: make('ns'), reopen: async () => make('ns'), sibling: async () => make('ns-other') }
    },
  ],
  [
    'asyncStorage',
    async () => {
      const asyncStorage = createFakeAsyncStorage()
      const make = (namespace: string) => createAsyncStorage({ asyncStorage, namespace, keyLogCompactAfter: 4 })
      return { store: make('ns'), reopen: async () => make('ns'), sibling: async () => make('ns:other') }
    },
  ],
  [
    'asyncStorage without getAllKeys',
    async () => {
      const asyncStorage = createFakeAsyncStorage({ getAllKeys: false })
      const make = (namespace: string) => createAsyncStorage({ asyncStorage, namespace, keyLogCompactAfter: 4 })
      return { store: make('ns'), reopen: async () => make('ns'), sibling: async () => make('n') }
    },
  ],
  [
    'indexedDb',
    async () => {
      const indexedDB = new IDBFactory()
      const make = (name: string) => createIndexedDbStorage({ name, indexedDB, IDBKeyRange })
      return { store: make('db'), reopen: async () => make('db'), sibling: async () => make('db-other') }
    },
  ],
  [
    'file',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'storage-contract-'))
      const make = (name: string) => createFileStorage({ path: join(dir, name), fsync: 'never', compaction: { minBytes: 4096, ratio: 2 } })
      return {
        store: make('store.log'),
        reopen: async () => make('store.log'),
        sibling: async () => make('other.log'),
        cleanup: () => rm(dir, { recursive: true, force: true }),
      }
    },
  ],
]

describe.each(adapters)('%s', (name, make) => {
  runStorageContract(name, make)
})

describe('memory storage copies', () => {
  it('hands back deep copies equal to what was stored, whatever the JSON value (property)', async () => {
    const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (value) => {
        const store = createMemoryStorage()
        await store.commit([{ type: 'set', key: 'k', value }])
        const read = await store.get('k')
        expect(read).toStrictEqual(value)
        if (typeof value === 'object' && value !== null) expect(read).not.toBe(value)
      }),
      { seed, numRuns: 200 },
    )
  })

  it('keeps a deeply frozen value as it is, and copies one with anything unfrozen inside', async () => {
    const store = createMemoryStorage()
    const frozen = Object.freeze({ a: 1, tags: Object.freeze(['x']), nested: Object.freeze({ b: null }) })
    const inner = { b: 2 }
    const shallow = Object.freeze({ a: 1, inner })
    await store.commit([{ type: 'set', key: 'frozen', value: frozen }, { type: 'set', key: 'shallow', value: shallow }])
    // The reference kept cannot change; what a read hands back is a copy the caller may change.
    const read = (await store.get('frozen')) as { tags: string[] }
    expect(read).toStrictEqual({ a: 1, tags: ['x'], nested: { b: null } })
    expect(Object.isFrozen(read)).toBe(false)
    read.tags.push('y')
    expect(await store.get('frozen')).toStrictEqual({ a: 1, tags: ['x'], nested: { b: null } })
    // A frozen object holding an unfrozen one was copied when stored: a later change to it is not seen.
    inner.b = 3
    expect(await store.get('shallow')).toStrictEqual({ a: 1, inner: { b: 2 } })
  })

  it('keeps an own "__proto__" key as a key, and non-JSON values as structuredClone does', async () => {
    const store = createMemoryStorage()
    const tricky = JSON.parse('{"__proto__": {"polluted": true}, "a": [1, {"b": 2}]}') as Record<string, unknown>
    const when = new Date(0)
    await store.commit([{ type: 'set', key: 'tricky', value: tricky }, { type: 'set', key: 'when', value: { when } }])
    const read = (await store.get('tricky')) as Record<string, unknown>
    expect(Object.getPrototypeOf(read)).toBe(Object.prototype)
    expect(Object.keys(read)).toEqual(['__proto__', 'a'])
    expect(read['polluted']).toBeUndefined()
    expect(((await store.get('when')) as { when: unknown }).when).toEqual(when)
    expect(((await store.get('when')) as { when: unknown }).when).toBeInstanceOf(Date)
  })
})
