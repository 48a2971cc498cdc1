/**
 * Fakes of the stores under the journaled adapters: a Map holds what "survives" a crash, and a
 * crash switch makes the fake throw on the Nth write and on every call after it, like a process
 * that died mid-commit.
 */
import type { AsyncStorageLike } from '../../src/storage/asyncStorage.js'
import type { WebStorageLike } from '../../src/storage/webStorage.js'

/** Thrown by a fake once it has "crashed". */
export class SimulatedCrash extends Error {
  constructor() {
    super('simulated crash')
    this.name = 'SimulatedCrash'
  }
}

/** Counts writes and crashes on the armed one. */
export class CrashSwitch {
  writes = 0
  crashed = false
  private remaining: number | undefined

  /** Crash when the `n`-th write from now starts (0: the next one); that write does not happen. */
  arm(n: number): void {
    this.remaining = n
  }

  disarm(): void {
    this.remaining = undefined
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
    this.writes++
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
