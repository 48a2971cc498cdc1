/**
 * A device's simulated network link. Both devices run in one page, so "offline" cannot come from
 * the browser: each device's supabase-js client gets {@link DeviceNetwork.fetch}, which fails every
 * request while the switch is off (and cuts the ones in flight when it goes off), exactly as a lost
 * connection does. The switch position is remembered across page reloads.
 */

/** Removes a listener. */
export type Unsubscribe = () => void

/** The switch and the `fetch` that obeys it. */
export interface DeviceNetwork {
  readonly name: string
  isOnline(): boolean
  setOnline(online: boolean): void
  /** Called on every change of the switch. */
  subscribe(listener: (online: boolean) => void): Unsubscribe
  /** A `fetch` that rejects like a dropped connection while offline. */
  readonly fetch: typeof fetch
}

/** Options of {@link createDeviceNetwork}. */
export interface DeviceNetworkOptions {
  /** Device name; also names the key its switch position is kept under. */
  name: string
  /** Where the switch position persists (default `localStorage`). */
  persist?: Pick<Storage, 'getItem' | 'setItem'>
}

/** Creates the network switch of one device. */
export function createDeviceNetwork(options: DeviceNetworkOptions): DeviceNetwork {
  const persist = options.persist ?? globalThis.localStorage
  const key = `demo:${options.name}:online`
  let online = persist.getItem(key) !== 'false'
  const listeners = new Set<(online: boolean) => void>()
  // Requests in flight, so going offline can cut them as a real outage would.
  const inFlight = new Set<(error: Error) => void>()

  const offlineError = () => new TypeError(`Failed to fetch: device ${options.name} is offline`)

  const wrapped = (input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> => {
    if (!online) return Promise.reject(offlineError())
    return new Promise<Response>((resolve, reject) => {
      const cut = (error: Error) => reject(error)
      inFlight.add(cut)
      globalThis.fetch(input, init).then(
        (response) => {
          inFlight.delete(cut)
          resolve(response)
        },
        (error: unknown) => {
          inFlight.delete(cut)
          reject(error)
        },
      )
    })
  }

  return {
    name: options.name,
    isOnline: () => online,
    setOnline(next) {
      if (next === online) return
      online = next
      persist.setItem(key, String(next))
      if (!next) {
        for (const cut of inFlight) cut(offlineError())
        inFlight.clear()
      }
      for (const listener of [...listeners]) listener(next)
    },
    subscribe(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    fetch: wrapped as typeof fetch,
  }
}
