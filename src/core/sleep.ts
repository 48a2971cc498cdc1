import type { Environment } from './env.js'
import { AbortError } from './errors.js'

/**
 * Wait `ms` on the environment's clock. Rejects with {@link AbortError} as soon as `signal` aborts
 * (or at once if it already has), and clears its timer then, so a cancelled wait leaves nothing armed.
 */
export function sleep(env: Environment, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortError())
      return
    }
    const onAbort = (): void => {
      env.clearTimeout(handle)
      reject(new AbortError())
    }
    const handle = env.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, Math.max(0, ms))
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
