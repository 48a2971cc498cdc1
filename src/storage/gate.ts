import { StorageError } from '../core/errors.js'

/**
 * The open/closed lifecycle shared by the adapters. A call made before `close()` is admitted and
 * runs to completion (close waits for it); a call made after is rejected with
 * `StorageError('closed')`. The check happens when the call is made, not when it gets to run.
 */
export interface Gate {
  /** Run `task` unless closed. */
  admit<T>(task: () => Promise<T>): Promise<T>
  readonly closed: boolean
  /** Refuse new calls; resolves once every admitted call has settled. */
  close(): Promise<void>
}

/** Create a {@link Gate}; `label` names the adapter in the closed error. */
export function createGate(label: string): Gate {
  const active = new Set<Promise<unknown>>()
  let closed = false
  return {
    admit(task) {
      if (closed) return Promise.reject(new StorageError('closed', `${label} is closed`))
      const run = task()
      active.add(run)
      const forget = (): void => {
        active.delete(run)
      }
      run.then(forget, forget)
      return run
    },
    get closed() {
      return closed
    },
    async close() {
      closed = true
      while (active.size > 0) await Promise.allSettled([...active])
    },
  }
}
