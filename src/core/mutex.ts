/**
 * Runs async sections one at a time, in call order. Every change to the engine's in-memory state
 * and its storage goes through one of these, so a commit and the in-memory update that follows it
 * are never interleaved with another writer. Network waits never happen inside a section.
 */
export interface Mutex {
  run<T>(section: () => Promise<T> | T): Promise<T>
}

/** Create a {@link Mutex}. */
export function createMutex(): Mutex {
  let tail: Promise<unknown> = Promise.resolve()
  return {
    run(section) {
      const result = tail.then(section)
      tail = result.catch(() => undefined)
      return result
    },
  }
}
