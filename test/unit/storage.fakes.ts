/**
 * Fakes of the stores under the journaled adapters: a Map holds what "survives" a crash, and a
 * crash switch makes the fake throw on the Nth write and on every call after it, like a process
 * that died mid-commit.
 */
import fc from 'fast-check'
import { expect } from 'vitest'
import { StorageError } from '../../src/core/errors.js'
import type { Storage } from '../../src/core/storage.js'
import type { AsyncStorageLike } from '../../src/storage/asyncStorage.js'
import type { WebStorageLike } from '../../src/storage/webStorage.js'
import { applyToModel, modelScan, storageOpsArbitrary } from '../../src/testing/storageContract.js'

/** Thrown by a fake once it has "crashed". */
export class SimulatedCrash extends Error {
  constructor() {
    super('simulated crash')
    this.name = 'SimulatedCrash'
  }
}

/** Thrown by a fake for one write that fails without crashing (a transient I/O error). */
export class TransientFailure extends Error {
  constructor() {
    super('transient write failure')
    this.name = 'TransientFailure'
  }
}

/** Counts writes; crashes on the armed one, or fails chosen ones once. */
export class CrashSwitch {
  writes = 0
  crashed = false
  private remaining: number | undefined
  private failing = new Set<number>()
  private failFrom = 0

  /** Crash when the `n`-th write from now starts (0: the next one); that write does not happen. */
  arm(n: number): void {
    this.remaining = n
  }

  /** Make the writes at these indices (0: the next write) fail, each once, without crashing. */
  failWrites(indices: Iterable<number>): void {
    this.failFrom = this.writes
    this.failing = new Set(indices)
  }

  disarm(): void {
    this.remaining = undefined
    this.failing.clear()
  }

  /** Call before every operation; throws once crashed. */
  check(): void {
    if (this.crashed) throw new SimulatedCrash()
  }

  /** Call before every single-key write. */
  write(): void {
    this.check()
    if (this.remaining !== undefined) {
      if (this.remaining === 0) {
        this.crashed = true
        throw new SimulatedCrash()
      }
      this.remaining--
    }
    const index = this.writes - this.failFrom
    this.writes++
    if (this.failing.delete(index)) throw new TransientFailure()
  }
}

/** Options for {@link createFakeLocalStorage}. */
export interface FakeLocalStorageOptions {
  data?: Map<string, string>
  /** Bytes allowed, counted as browsers do: UTF-16, keys and values. */
  budgetBytes?: number
  /** Throw quota errors the way old WebKit did: a plain error with code 22. */
  legacyQuotaError?: boolean
  crash?: CrashSwitch
}

/** Bytes a Map of strings takes in Web Storage accounting. */
export function usedBytes(data: ReadonlyMap<string, string>): number {
  let total = 0
  for (const [key, value] of data) total += 2 * (key.length + value.length)
  return total
}

/** A Map-backed `localStorage` with an optional byte budget and crash switch. */
export function createFakeLocalStorage(options: FakeLocalStorageOptions = {}): WebStorageLike & { data: Map<string, string> } {
  const data = options.data ?? new Map<string, string>()
  const crash = options.crash ?? new CrashSwitch()
  return {
    data,
    get length() {
      crash.check()
      return data.size
    },
    key(index) {
      crash.check()
      return [...data.keys()][index] ?? null
    },
    getItem(key) {
      crash.check()
      return data.get(key) ?? null
    },
    setItem(key, value) {
      crash.write()
      if (options.budgetBytes !== undefined) {
        const old = data.get(key)
        const freed = old === undefined ? 0 : 2 * (key.length + old.length)
        const after = usedBytes(data) - freed + 2 * (key.length + value.length)
        if (after > options.budgetBytes) {
          if (options.legacyQuotaError) throw Object.assign(new Error('QUOTA_EXCEEDED_ERR: DOM Exception 22'), { code: 22 })
          throw new DOMException('The quota has been exceeded.', 'QuotaExceededError')
        }
      }
      data.set(key, String(value))
    },
    removeItem(key) {
      crash.write()
      data.delete(key)
    },
  }
}

/** Options for {@link createFakeAsyncStorage}. */
export interface FakeAsyncStorageOptions {
  data?: Map<string, string>
  crash?: CrashSwitch
  /** Offer getAllKeys (default true). */
  getAllKeys?: boolean
}

/** A Map-backed AsyncStorage; `multiSet` and `multiRemove` write key by key, so a crash can split them. */
export function createFakeAsyncStorage(options: FakeAsyncStorageOptions = {}): AsyncStorageLike & { data: Map<string, string> } {
  const data = options.data ?? new Map<string, string>()
  const crash = options.crash ?? new CrashSwitch()
  const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
  const fake: AsyncStorageLike & { data: Map<string, string> } = {
    data,
    async getItem(key) {
      await tick()
      crash.check()
      return data.get(key) ?? null
    },
    async setItem(key, value) {
      await tick()
      crash.write()
      data.set(key, value)
    },
    async removeItem(key) {
      await tick()
      crash.write()
      data.delete(key)
    },
    async multiGet(keys) {
      await tick()
      crash.check()
      return keys.map((key) => [key, data.get(key) ?? null] as const)
    },
    async multiSet(pairs) {
      await tick()
      for (const [key, value] of pairs) {
        crash.write()
        data.set(key, value)
      }
    },
    async multiRemove(keys) {
      await tick()
      for (const key of keys) {
        crash.write()
        data.delete(key)
      }
    },
  }
  if (options.getAllKeys ?? true) {
    fake.getAllKeys = async () => {
      await tick()
      crash.check()
      return [...data.keys()]
    }
  }
  return fake
}

/** Opens an adapter over `data`, its fake governed by `crash`. */
export type OpenJournaled = (data: Map<string, string>, crash: CrashSwitch) => Storage

const ok = (): 'ok' => 'ok'
const caught = (error: unknown): unknown => error

/**
 * Crash atomicity: after a crash at any write of a commit (or of the housekeeping after it), and
 * another crash during the recovery at the next open, the reopened store shows the state after the
 * commit when it resolved, and the state before or after it (never a mix) when it did not; the
 * reopened store is usable.
 */
export function crashAtomicityProperty(open: OpenJournaled, journalKey: string) {
  return fc.asyncProperty(
    fc.array(storageOpsArbitrary, { maxLength: 6 }),
    storageOpsArbitrary,
    fc.nat({ max: 40 }),
    fc.option(fc.nat({ max: 12 })),
    async (setup, victim, crashAt, recoveryCrashAt) => {
      const data = new Map<string, string>()
      const model = new Map<string, unknown>()
      const crash = new CrashSwitch()
      const store = open(data, crash)
      for (const ops of setup) {
        await store.commit(ops)
        applyToModel(model, ops)
      }
      const before = modelScan(model, '')
      applyToModel(model, victim)
      const after = modelScan(model, '')

      crash.arm(crashAt)
      const outcome = await store.commit(victim).then(ok, caught)
      // Close lets housekeeping queued by the commit run into the crash too.
      await store.close().catch(caught)
      if (outcome !== 'ok') {
        expect(crash.crashed).toBe(true)
        expect(outcome).toBeInstanceOf(StorageError)
        expect((outcome as StorageError).kind).toBe('io')
      }

      if (recoveryCrashAt !== null) {
        const again = new CrashSwitch()
        again.arm(recoveryCrashAt)
        const recovering = open(data, again)
        await recovering.scan('').catch(caught)
        await recovering.close().catch(caught)
      }

      const reopened = open(data, new CrashSwitch())
      const seen = await reopened.scan('')
      // A commit cut short by a crash may be finished at the next open (its caller never learns the
      // outcome of a crash); it may never be partly visible.
      if (outcome === 'ok') expect(seen).toEqual(after)
      else expect([before, after]).toContainEqual(seen)
      expect(data.has(journalKey)).toBe(false)
      await reopened.commit([{ type: 'set', key: 'after-crash', value: 1 }])
      expect(await reopened.get('after-crash')).toBe(1)
      await reopened.close()
    },
  )
}

/**
 * Transient write failures anywhere in a commit, its rollback included: a rejected commit leaves
 * nothing visible, in this instance or after reopening, and the same instance keeps working.
 */
export function transientFailureProperty(open: OpenJournaled) {
  return fc.asyncProperty(
    fc.array(storageOpsArbitrary, { maxLength: 4 }),
    storageOpsArbitrary,
    fc.uniqueArray(fc.nat({ max: 16 }), { minLength: 1, maxLength: 4 }),
    storageOpsArbitrary,
    async (setup, victim, failing, follow) => {
      const data = new Map<string, string>()
      const model = new Map<string, unknown>()
      const crash = new CrashSwitch()
      const store = open(data, crash)
      for (const ops of setup) {
        await store.commit(ops)
        applyToModel(model, ops)
      }
      crash.failWrites(failing)
      const outcome = await store.commit(victim).then(ok, caught)
      crash.disarm()
      if (outcome === 'ok') applyToModel(model, victim)
      else expect((outcome as StorageError).kind).toBe('io')
      expect(await store.scan('')).toEqual(modelScan(model, ''))

      await store.commit(follow)
      applyToModel(model, follow)
      expect(await store.scan('')).toEqual(modelScan(model, ''))
      await store.close()
      const reopened = open(data, new CrashSwitch())
      expect(await reopened.scan('')).toEqual(modelScan(model, ''))
      await reopened.close()
    },
  )
}
