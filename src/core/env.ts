/**
 * The environment port: time, timers and the device signals the scheduler listens to.
 * Each orchestrator owns its environment; nothing here is a module-level singleton.
 */

/** Whether the app is in front of the user. */
export type AppState = 'active' | 'background'

/** A battery reading. */
export interface BatteryState {
  /** 0..1 */
  level: number
  charging: boolean
}

/** Removes a listener. */
export type Unsubscribe = () => void

/** Timer handle returned by `setTimeout`. */
export type TimerHandle = unknown

/** The environment port. */
export interface Environment {
  /** Wall clock, ms since epoch. */
  now(): number
  setTimeout(callback: () => void, ms: number): TimerHandle
  clearTimeout(handle: TimerHandle): void
  /** What the platform says about connectivity. */
  isOnline(): boolean
  onOnlineChange(listener: (online: boolean) => void): Unsubscribe
  appState(): AppState
  onAppStateChange(listener: (state: AppState) => void): Unsubscribe
  /** `undefined` when the platform cannot tell. */
  battery(): BatteryState | undefined
  onBatteryChange(listener: (battery: BatteryState) => void): Unsubscribe
  /** Optional: yield to the host so long work never blocks a frame (default: a 0 ms timeout). */
  yieldToHost?(): Promise<void>
}
