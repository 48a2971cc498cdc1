import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb'
import { describe } from 'vitest'
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
