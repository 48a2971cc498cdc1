/**
 * Runs tasks one at a time, in call order: the single-writer rule of the adapters.
 * A failed task does not stop the ones after it.
 */
export interface Serial {
  run<T>(task: () => Promise<T>): Promise<T>
  /** Resolves once every task queued so far has settled. */
  idle(): Promise<void>
}

/** Create a {@link Serial} queue. */
export function createSerial(): Serial {
  let tail: Promise<unknown> = Promise.resolve()
  return {
    run(task) {
      const result = tail.then(task)
      tail = result.catch(() => undefined)
      return result
    },
    async idle() {
      await tail
    },
  }
}
