import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { StorageError } from '../../src/core/errors.js'
import type { StorageCorruption } from '../../src/storage/corruption.js'
import { createWebStorage } from '../../src/storage/webStorage.js'
import { applyToModel, modelScan, propertyParameters, storageKeyArbitrary } from '../../src/testing/storageContract.js'
import { CrashSwitch, createFakeLocalStorage, crashAtomicityProperty, transientFailureProperty, usedBytes } from './storage.fakes.js'

const open = (data: Map<string, string>, crash: CrashSwitch) =>
  createWebStorage({ storage: createFakeLocalStorage({ data, crash }), namespace: 'ns' })

const kindOf = async (promise: Promise<unknown>): Promise<string | undefined> =>
  promise.then(
    () => undefined,
    (error: unknown) => (error instanceof StorageError ? error.kind : `not a StorageError: ${String(error)}`),
  )

describe('web storage: atomic commits', () => {
  it('shows all or none of a commit after a crash at any write, even one during recovery (property)', async () => {
    await fc.assert(crashAtomicityProperty(open, 'ns:j'), propertyParameters(300))
  })

  it('leaves nothing of a commit whose writes fail, and keeps working (property)', async () => {
    await fc.assert(transientFailureProperty(open), propertyParameters(200))
  })
})

describe('web storage: quota', () => {
  it('rejects a commit past the quota with quota-exceeded, losing nothing and staying usable (property)', async () => {
    const commitArbitrary = fc.array(
      fc.oneof(
        fc.record({ type: fc.constant('set' as const), key: storageKeyArbitrary, value: fc.string({ maxLength: 400 }) }),
        fc.record({ type: fc.constant('delete' as const), key: storageKeyArbitrary }),
      ),
      { minLength: 1, maxLength: 6 },
    )
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 500, max: 6000 }), fc.array(commitArbitrary, { minLength: 1, maxLength: 25 }), async (budgetBytes, commits) => {
        const data = new Map<string, string>([['other-app', 'x'.repeat(100)]])
        const localStorage = createFakeLocalStorage({ data, budgetBytes })
        const store = createWebStorage({ storage: localStorage, namespace: 'ns' })
        const model = new Map<string, unknown>()
        let rejected = 0
        for (const ops of commits) {
          const kind = await kindOf(store.commit(ops))
          if (kind === undefined) applyToModel(model, ops)
          else {
            expect(kind).toBe('quota-exceeded')
            rejected++
          }
          expect(await store.scan('')).toEqual(modelScan(model, ''))
          expect(data.has('ns:j')).toBe(false)
          expect(usedBytes(data)).toBeLessThanOrEqual(budgetBytes)
        }
        expect(data.get('other-app')).toBe('x'.repeat(100))
        const reopened = createWebStorage({ storage: localStorage, namespace: 'ns' })
        expect(await reopened.scan('')).toEqual(modelScan(model, ''))
        // Still usable: deletes always get through (a single one needs no journal), and free room.
        for (const key of [...model.keys()]) await reopened.commit([{ type: 'delete', key }])
        await reopened.commit([{ type: 'set', key: 'small', value: 1 }])
        expect(await reopened.scan('')).toEqual([{ key: 'small', value: 1 }])
        return rejected >= 0
      }),
      propertyParameters(100),
    )
  })

  it('fills up to the quota, then rejects, and the rejected value is nowhere', async () => {
    const localStorage = createFakeLocalStorage({ budgetBytes: 20_000 })
    const store = createWebStorage({ storage: localStorage, namespace: 'ns' })
    let i = 0
    let kind: string | undefined
    while (kind === undefined && i < 1000) kind = await kindOf(store.commit([{ type: 'set', key: `k${i++}`, value: 'v'.repeat(500) }]))
    expect(kind).toBe('quota-exceeded')
    const stored = await store.scan('k')
    expect(stored).toHaveLength(i - 1)
    expect(await store.get(`k${i - 1}`)).toBeUndefined()
    expect([...localStorage.data.keys()].filter((key) => key.includes(`k${i - 1}`))).toEqual([])
  })

  it('recognises the legacy quota error (code 22)', async () => {
    const store = createWebStorage({ storage: createFakeLocalStorage({ budgetBytes: 1000, legacyQuotaError: true }), namespace: 'ns' })
    expect(await kindOf(store.commit([{ type: 'set', key: 'big', value: 'x'.repeat(2000) }]))).toBe('quota-exceeded')
    expect(await store.get('big')).toBeUndefined()
  })
})

describe('web storage: corrupt values', () => {
  it('reports tampered values, refuses to read them, skips them in scan, and is repaired by writing', async () => {
    const localStorage = createFakeLocalStorage()
    const first = createWebStorage({ storage: localStorage, namespace: 'ns' })
    await first.commit([
      { type: 'set', key: 'good/1', value: { ok: 1 } },
      { type: 'set', key: 'good/2', value: { ok: 2 } },
      { type: 'set', key: 'bad/1', value: { ok: 3 } },
      { type: 'set', key: 'bad/2', value: { ok: 4 } },
    ])
    await first.close()
    localStorage.setItem('ns:d:bad/1', '{"ok": 3')
    localStorage.setItem('ns:d:bad/2', 'undefined')

    const reports: StorageCorruption[] = []
    const store = createWebStorage({ storage: localStorage, namespace: 'ns', onCorrupt: (report) => reports.push(report) })
    expect(await store.scan('')).toEqual([
      { key: 'good/1', value: { ok: 1 } },
      { key: 'good/2', value: { ok: 2 } },
    ])
    expect(reports.map((r) => (r.kind === 'entry' ? r.key : r.kind)).sort()).toEqual(['bad/1', 'bad/2'])
    expect(reports[0]).toMatchObject({ kind: 'entry', reason: expect.stringContaining('JSON') })
    expect(await kindOf(store.get('bad/1'))).toBe('corrupt')
    expect(await kindOf(store.getMany(['good/1', 'bad/2']))).toBe('corrupt')
    expect(await store.get('good/1')).toEqual({ ok: 1 })
    expect((await store.corruption()).map((r) => r.kind === 'entry' && r.found)).toEqual(expect.arrayContaining(['{"ok": 3', 'undefined']))

    await store.commit([{ type: 'set', key: 'bad/1', value: 'fixed' }, { type: 'delete', key: 'bad/2' }])
    expect(await store.corruption()).toEqual([])
    expect(await store.scan('bad/')).toEqual([{ key: 'bad/1', value: 'fixed' }])
    await store.close()
    expect(await createWebStorage({ storage: localStorage, namespace: 'ns' }).corruption()).toEqual([])
  })

  it('reports an unreadable journal and still opens', async () => {
    const localStorage = createFakeLocalStorage()
    localStorage.setItem('ns:d:a', '1')
    localStorage.setItem('ns:j', '{not json')
    const reports: StorageCorruption[] = []
    const store = createWebStorage({ storage: localStorage, namespace: 'ns', onCorrupt: (report) => reports.push(report) })
    expect(await store.get('a')).toBe(1)
    expect(reports).toEqual([expect.objectContaining({ kind: 'record', record: 'journal', found: '{not json' })])
    expect(await store.corruption()).toEqual(reports)
    expect(localStorage.data.has('ns:j')).toBe(false)
  })

  it('a throwing onCorrupt callback does not break the store', async () => {
    const localStorage = createFakeLocalStorage()
    localStorage.setItem('ns:d:a', '{')
    const store = createWebStorage({
      storage: localStorage,
      namespace: 'ns',
      onCorrupt: () => {
        throw new Error('listener bug')
      },
    })
    expect(await store.scan('')).toEqual([])
    expect(await store.corruption()).toHaveLength(1)
  })
})

describe('web storage: keys and namespaces', () => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'localStorage')
  afterEach(() => {
    if (saved) Object.defineProperty(globalThis, 'localStorage', saved)
    else delete (globalThis as { localStorage?: unknown }).localStorage
  })

  it('uses globalThis.localStorage by default', async () => {
    const fake = createFakeLocalStorage()
    Object.defineProperty(globalThis, 'localStorage', { value: fake, configurable: true })
    const store = createWebStorage({ namespace: 'app' })
    await store.commit([{ type: 'set', key: 'k', value: 1 }])
    expect(fake.data.get('app:d:k')).toBe('1')
  })

  it('says clearly when there is no localStorage', () => {
    delete (globalThis as { localStorage?: unknown }).localStorage
    expect(() => createWebStorage({ namespace: 'app' })).toThrow(/localStorage/)
  })

  it('rejects an empty namespace', () => {
    expect(() => createWebStorage({ storage: createFakeLocalStorage(), namespace: '' })).toThrow(TypeError)
  })

  it('keeps namespaces that look like prefixes of each other apart, and leaves app keys alone', async () => {
    const localStorage = createFakeLocalStorage()
    localStorage.setItem('a:d:x', 'app data that merely looks like ours')
    const names = ['a', 'a:d', 'a:d:x', 'a%3A', 'ä']
    const stores = names.map((namespace) => createWebStorage({ storage: localStorage, namespace }))
    for (const [i, store] of stores.entries()) await store.commit([{ type: 'set', key: 'x', value: i }, { type: 'set', key: 'j', value: i }])
    for (const [i, store] of stores.entries()) {
      expect(await store.scan('')).toEqual([
        { key: 'j', value: i },
        { key: 'x', value: i },
      ])
    }
    const reopened = names.map((namespace) => createWebStorage({ storage: localStorage, namespace }))
    for (const [i, store] of reopened.entries()) expect(await store.get('x')).toBe(i)
  })

  it('a crash during open is recovered by the next open', async () => {
    const data = new Map<string, string>()
    const store = open(data, new CrashSwitch())
    await store.commit([{ type: 'set', key: 'a', value: 1 }])
    const crash = new CrashSwitch()
    crash.arm(2)
    const dying = open(data, crash)
    expect(await kindOf(dying.commit([{ type: 'set', key: 'a', value: 2 }, { type: 'set', key: 'b', value: 2 }]))).toBe('io')
    expect(await kindOf(open(data, Object.assign(new CrashSwitch(), { crashed: true })).get('a'))).toBe('io')
    expect(await open(data, new CrashSwitch()).scan('')).toEqual([{ key: 'a', value: 1 }])
  })
})
