import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { StorageError } from '../core/errors.js'
import type { Storage, StorageEntry, StorageOp } from '../core/storage.js'

/** What a storage contract run needs from an adapter. */
export interface StorageHarness {
  /** A fresh, empty store. */
  store: Storage
  /**
   * Open a new instance over the same backing data, for adapters that persist. The suite closes
   * `store` before calling it.
   */
  reopen?: () => Promise<Storage>
  /** Another store over the same backing medium in a different namespace, to prove isolation. */
  sibling?: () => Promise<Storage>
  /** Release what the harness created (temp files, databases); runs after every store is closed. */
  cleanup?: () => Promise<void>
}

/** Makes an independent harness on every call. */
export type MakeStorageHarness = () => Promise<StorageHarness>

/**
 * fast-check run parameters: `FC_SEED` from the environment makes a failure replayable (fast-check
 * prints the seed and path of every failure).
 */
export function propertyParameters(numRuns: number): { numRuns: number; seed?: number } {
  const raw = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.FC_SEED
  const seed = raw === undefined || raw === '' ? undefined : Number(raw)
  return seed === undefined || Number.isNaN(seed) ? { numRuns } : { numRuns, seed }
}

/** Keys drawn from a tiny alphabet, so runs hit collisions, shared prefixes, lone surrogates and U+FFFF. */
export const storageKeyArbitrary = fc.string({
  unit: fc.constantFrom('a', 'b', '/', ':', 'é', '\uD83D', '\uDE00', '\uFFFF', '\u0000'),
  maxLength: 4,
})

/** JSON values as a store returns them (after a JSON round trip, so -0 becomes 0). */
export const storageValueArbitrary = fc.jsonValue({ maxDepth: 2 }).map((value) => JSON.parse(JSON.stringify(value)) as unknown)

/** Random ops for one commit. */
export const storageOpsArbitrary: fc.Arbitrary<StorageOp[]> = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: fc.record({ type: fc.constant('set' as const), key: storageKeyArbitrary, value: storageValueArbitrary }) },
    { weight: 1, arbitrary: fc.record({ type: fc.constant('delete' as const), key: storageKeyArbitrary }) },
  ),
  { minLength: 1, maxLength: 5 },
)

/** Apply ops to a plain model of a store, as the port defines them (in order, last write wins). */
export function applyToModel(model: Map<string, unknown>, ops: readonly StorageOp[]): void {
  for (const op of ops) {
    if (op.type === 'set') model.set(op.key, op.value)
    else model.delete(op.key)
  }
}

/** The model's entries under `prefix`, in the order `scan` must return them. */
export function modelScan(model: ReadonlyMap<string, unknown>, prefix: string): StorageEntry[] {
  return [...model]
    .filter(([key]) => key.startsWith(prefix))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => ({ key, value }))
}

const expectClosed = async (promise: Promise<unknown>): Promise<void> => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(StorageError)
  expect((error as StorageError).kind).toBe('closed')
}

/**
 * The behaviour every storage adapter must have, as a vitest suite. Call it at the top level of a
 * test file (or inside `describe.each`) once per adapter.
 */
export function runStorageContract(name: string, makeStore: MakeStorageHarness): void {
  describe(`storage contract: ${name}`, () => {
    let harness: StorageHarness
    let opened: Storage[] = []
    let cleanups: (() => Promise<void>)[] = []

    const track = (store: Storage): Storage => {
      opened.push(store)
      return store
    }
    const fresh = async (): Promise<StorageHarness> => {
      const made = await makeStore()
      track(made.store)
      if (made.cleanup) cleanups.push(made.cleanup)
      return made
    }
    /** Close `store` and open it again over the same data (the harness must support reopen). */
    const reopenOf = async (made: StorageHarness, store: Storage): Promise<Storage> => {
      await store.close()
      return track(await (made.reopen as () => Promise<Storage>)())
    }

    beforeEach(async () => {
      harness = await fresh()
    })
    afterEach(async () => {
      for (const store of opened) await store.close().catch(() => undefined)
      for (const cleanup of cleanups) await cleanup()
      opened = []
      cleanups = []
    })

    it('reads absent keys as undefined, one getMany slot per key', async () => {
      const { store } = harness
      expect(await store.get('missing')).toBeUndefined()
      await store.commit([{ type: 'set', key: 'b', value: 2 }])
      expect(await store.getMany(['a', 'b', 'a', 'c'])).toEqual([undefined, 2, undefined, undefined])
      expect(await store.getMany([])).toEqual([])
    })

    it('stores JSON values exactly, null apart from absent', async () => {
      const { store } = harness
      const values: Record<string, unknown> = {
        null: null,
        zero: 0,
        float: -12.5e-3,
        text: 'héllo \u{1F600} "quoted" \\ \n',
        empty: '',
        flag: false,
        list: [1, 'two', null, [3], { four: 4 }],
        nested: { a: { b: { c: [true] } }, 'key with spaces': 'x' },
        big: 'x'.repeat(100_000),
      }
      await store.commit(Object.entries(values).map(([key, value]) => ({ type: 'set', key, value })))
      for (const [key, value] of Object.entries(values)) expect(await store.get(key)).toEqual(value)
      expect(await store.get('null')).toBeNull()
    })

    it('overwrites and deletes; deleting an absent key is a no-op', async () => {
      const { store } = harness
      await store.commit([{ type: 'set', key: 'k', value: { v: 1 } }])
      await store.commit([{ type: 'set', key: 'k', value: { v: 2 } }])
      expect(await store.get('k')).toEqual({ v: 2 })
      await store.commit([{ type: 'delete', key: 'k' }, { type: 'delete', key: 'never-there' }])
      expect(await store.get('k')).toBeUndefined()
      expect(await store.scan('')).toEqual([])
    })

    it('applies the ops of one commit in order: the last op on a key wins', async () => {
      const { store } = harness
      await store.commit([
        { type: 'set', key: 'x', value: 1 },
        { type: 'delete', key: 'x' },
        { type: 'set', key: 'y', value: 1 },
        { type: 'set', key: 'y', value: 2 },
        { type: 'set', key: 'z', value: 1 },
        { type: 'delete', key: 'z' },
        { type: 'set', key: 'x', value: 3 },
      ])
      expect(await store.scan('')).toEqual([
        { key: 'x', value: 3 },
        { key: 'y', value: 2 },
      ])
    })

    it('accepts an empty commit', async () => {
      await harness.store.commit([])
      expect(await harness.store.scan('')).toEqual([])
    })

    it('scans in code-unit order and keeps prefixes apart', async () => {
      const { store } = harness
      const keys = ['b', 'a', 'a/', 'a/b', 'a/a', 'ab', 'B', '', 'é', '\u{1F600}', '\uFFFF', '\uFFFF\uFFFF', 'a\u0000', 'a\uFFFF', 'a/\uFFFF']
      await store.commit(keys.map((key, i) => ({ type: 'set', key, value: i })))
      const sorted = [...keys].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
      expect((await store.scan('')).map((e) => e.key)).toEqual(sorted)
      expect((await store.scan('a/')).map((e) => e.key)).toEqual(['a/', 'a/a', 'a/b', 'a/\uFFFF'])
      expect((await store.scan('a')).map((e) => e.key)).toEqual(sorted.filter((k) => k.startsWith('a')))
      expect((await store.scan('\uFFFF')).map((e) => e.key)).toEqual(['\uFFFF', '\uFFFF\uFFFF'])
      expect(await store.scan('zz')).toEqual([])
      expect(await store.scan('a/b')).toEqual([{ key: 'a/b', value: keys.indexOf('a/b') }])
    })

    it('scans many keys in order', async () => {
      const { store } = harness
      const keys = Array.from({ length: 3000 }, (_, i) => `item/${(i * 7919) % 3000}`)
      await store.commit(keys.map((key) => ({ type: 'set', key, value: { key } })))
      await store.commit([{ type: 'set', key: 'other', value: 1 }, { type: 'set', key: 'item', value: 0 }])
      const scanned = await store.scan('item/')
      expect(scanned).toHaveLength(3000)
      expect(scanned.map((e) => e.key)).toEqual([...keys].sort())
      expect(scanned.every((e) => (e.value as { key: string }).key === e.key)).toBe(true)
    })

    it('makes every op of a commit visible together', async () => {
      const { store } = harness
      const ops: StorageOp[] = Array.from({ length: 50 }, (_, i) => ({ type: 'set', key: `atom/${i}`, value: i }))
      const pending = store.commit(ops)
      const during = await store.scan('atom/')
      await pending
      expect([0, 50]).toContain(during.length)
      expect(await store.scan('atom/')).toHaveLength(50)
    })

    it('rejects a commit holding a value it cannot store and changes nothing', async () => {
      const { store } = harness
      await store.commit([{ type: 'set', key: 'keep', value: 1 }])
      await expect(
        store.commit([
          { type: 'set', key: 'keep', value: 2 },
          { type: 'set', key: 'new', value: 'ok' },
          { type: 'set', key: 'bad', value: () => 1 },
        ]),
      ).rejects.toThrow()
      expect(await store.scan('')).toEqual([{ key: 'keep', value: 1 }])
      await store.commit([{ type: 'set', key: 'after', value: true }])
      expect(await store.get('after')).toBe(true)
    })

    it('applies commits issued without waiting in call order', async () => {
      const { store } = harness
      await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          store.commit([
            { type: 'set', key: 'shared', value: i },
            { type: 'set', key: `own/${String(i).padStart(2, '0')}`, value: i },
          ]),
        ),
      )
      expect(await store.get('shared')).toBe(29)
      expect((await store.scan('own/')).map((e) => e.value)).toEqual(Array.from({ length: 30 }, (_, i) => i))
    })

    it('hands out copies: mutating values given or returned never changes the store', async () => {
      const { store } = harness
      const value = { list: [1, 2], nested: { n: 1 } }
      await store.commit([{ type: 'set', key: 'v', value }])
      value.list.push(3)
      value.nested.n = 99
      const got = (await store.get('v')) as typeof value
      got.list.push(4)
      got.nested.n = 5
      const [many] = (await store.getMany(['v'])) as (typeof value)[]
      many!.list.length = 0
      const [scanned] = await store.scan('v')
      ;(scanned!.value as typeof value).nested.n = 7
      expect(await store.get('v')).toEqual({ list: [1, 2], nested: { n: 1 } })
    })

    it('matches a model over random commits (property)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(storageOpsArbitrary, { minLength: 1, maxLength: 12 }), fc.array(storageKeyArbitrary, { maxLength: 4 }), async (commits, prefixes) => {
          const made = await fresh()
          let store = made.store
          const model = new Map<string, unknown>()
          for (const ops of commits) {
            await store.commit(ops)
            applyToModel(model, ops)
            const keys = ops.map((op) => op.key)
            expect(await store.getMany(keys)).toEqual(keys.map((key) => model.get(key)))
          }
          for (const prefix of ['', ...prefixes]) expect(await store.scan(prefix)).toEqual(modelScan(model, prefix))
          if (made.reopen) {
            store = await reopenOf(made, store)
            expect(await store.scan('')).toEqual(modelScan(model, ''))
          }
          await store.close()
        }),
        propertyParameters(20),
      )
    })

    it('keeps everything across close and reopen', async (ctx) => {
      if (!harness.reopen) return ctx.skip()
      let store = harness.store
      await store.commit([
        { type: 'set', key: 'a', value: { n: 1 } },
        { type: 'set', key: 'b', value: [2] },
        { type: 'set', key: 'c', value: null },
      ])
      await store.commit([{ type: 'delete', key: 'b' }, { type: 'set', key: 'a', value: { n: 2 } }])
      store = await reopenOf(harness, store)
      expect(await store.scan('')).toEqual([
        { key: 'a', value: { n: 2 } },
        { key: 'c', value: null },
      ])
      await store.commit([{ type: 'set', key: 'd', value: 'after reopen' }])
      store = await reopenOf(harness, store)
      expect(await store.get('d')).toBe('after reopen')
    })

    it('lets commits already issued finish before close resolves', async (ctx) => {
      const { store } = harness
      const pending = store.commit([{ type: 'set', key: 'late', value: 1 }])
      await store.close()
      await pending
      if (!harness.reopen) return ctx.skip()
      const reopened = track(await harness.reopen())
      expect(await reopened.get('late')).toBe(1)
    })

    it('rejects every call after close with StorageError("closed")', async () => {
      const { store } = harness
      await store.commit([{ type: 'set', key: 'a', value: 1 }])
      await store.close()
      await store.close()
      await expectClosed(store.get('a'))
      await expectClosed(store.getMany(['a']))
      await expectClosed(store.scan(''))
      await expectClosed(store.commit([{ type: 'set', key: 'b', value: 2 }]))
    })

    it('rejects calls on a store closed before first use', async () => {
      const { store } = harness
      await store.close()
      await expectClosed(store.get('a'))
      await expectClosed(store.commit([{ type: 'set', key: 'b', value: 2 }]))
    })

    it('keeps namespaces apart', async (ctx) => {
      if (!harness.sibling) return ctx.skip()
      const { store } = harness
      const other = track(await harness.sibling())
      await store.commit([{ type: 'set', key: 'k', value: 'mine' }, { type: 'set', key: 'only-mine', value: 1 }])
      await other.commit([{ type: 'set', key: 'k', value: 'theirs' }])
      expect(await store.get('k')).toBe('mine')
      expect(await other.get('k')).toBe('theirs')
      expect(await other.scan('')).toEqual([{ key: 'k', value: 'theirs' }])
      await other.commit([{ type: 'delete', key: 'k' }])
      expect(await store.scan('')).toEqual([
        { key: 'k', value: 'mine' },
        { key: 'only-mine', value: 1 },
      ])
      if (!harness.reopen) return
      const reopened = await reopenOf(harness, store)
      expect(await reopened.scan('')).toEqual([
        { key: 'k', value: 'mine' },
        { key: 'only-mine', value: 1 },
      ])
    })
  })
}
