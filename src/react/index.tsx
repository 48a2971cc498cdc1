/**
 * React bindings: a provider for one orchestrator and hooks that read its collections, status and
 * conflict inbox as live values.
 *
 * Every hook is built on `useSyncExternalStore`, so a component re-renders exactly when the value it
 * reads changes, never tears during concurrent rendering, and unsubscribes when it unmounts.
 *
 * Invariant: a hook's snapshot is referentially stable between changes. `Collection.list()` and
 * `getSyncStatus()` promise that themselves; for everything else (a filtered list, one record, the
 * conflict inbox) the hook keeps its previous value whenever a fresh read is structurally equal, so
 * an unrelated change never re-renders a component.
 */
import { createContext, useCallback, useContext, useRef, useSyncExternalStore, type ReactNode } from 'react'
import type { PendingConflict, SyncOrchestrator, SyncStatus } from '../core/types.js'
import type { Row } from '../core/protocol.js'

const OrchestratorContext = createContext<SyncOrchestrator | null>(null)

/** Props of {@link SyncProvider}. */
export interface SyncProviderProps {
  /** The orchestrator the hooks below read. Passing a different one re-subscribes every hook. */
  orchestrator: SyncOrchestrator
  children?: ReactNode
}

/**
 * Makes one orchestrator available to the hooks in its subtree. The provider neither starts nor
 * closes the orchestrator: its owner decides its lifetime.
 */
export function SyncProvider({ orchestrator, children }: SyncProviderProps): ReactNode {
  return <OrchestratorContext.Provider value={orchestrator}>{children}</OrchestratorContext.Provider>
}

/**
 * The orchestrator of the nearest {@link SyncProvider}, for commands (`forceSyncAll()`,
 * `resolveConflicts()`, ...) and writes.
 *
 * @throws Error when called outside a `SyncProvider` (a wiring mistake, not a sync failure).
 */
export function useSyncOrchestrator(): SyncOrchestrator {
  const orchestrator = useContext(OrchestratorContext)
  if (!orchestrator) throw new Error('useSyncOrchestrator() must be called inside a <SyncProvider>')
  return orchestrator
}

/**
 * The live rows of a collection, optionally filtered. Re-renders when the (filtered) list changes.
 *
 * The returned array is stable between changes. With a filter, it is also kept when a change leaves
 * the filtered result the same (same rows, same order), so a filter over a small subset does not
 * re-render on changes elsewhere in the collection. An inline filter function is fine; a stable one
 * (`useCallback`) saves re-filtering on every render.
 *
 * Before the orchestrator is `ready` this is the empty list; it fills in once storage has loaded.
 */
export function useCollection<T extends Row = Row>(name: string, filter?: (row: T) => boolean): readonly T[] {
  const orchestrator = useSyncOrchestrator()
  const collection = orchestrator.collection<T>(name)
  const cache = useRef<{ base: readonly T[]; filter: ((row: T) => boolean) | undefined; result: readonly T[] } | null>(null)

  const subscribe = useCallback((onChange: () => void) => subscribeCollection(orchestrator, name, onChange), [orchestrator, name])

  const getSnapshot = (): readonly T[] => {
    const base = collection.list()
    const last = cache.current
    if (!filter) {
      cache.current = { base, filter, result: base }
      return base
    }
    if (last && last.base === base && last.filter === filter) return last.result
    const filtered = base.filter(filter)
    const result = last && sameElements(last.result, filtered) ? last.result : Object.freeze(filtered)
    cache.current = { base, filter, result }
    return result
  }

  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot)
}

/**
 * One record of a collection, or `undefined` when it does not exist (or was deleted). Re-renders only
 * when that record changes.
 */
export function useRecord<T extends Row = Row>(name: string, id: string): T | undefined {
  const orchestrator = useSyncOrchestrator()
  const collection = orchestrator.collection<T>(name)
  const cache = useRef<{ id: string; value: T | undefined } | null>(null)

  const subscribe = useCallback((onChange: () => void) => subscribeCollection(orchestrator, name, onChange), [orchestrator, name])

  const getSnapshot = (): T | undefined => {
    const value = collection.get(id)
    const last = cache.current
    // An implementation may hand out a copy per read; keep the previous object when nothing changed.
    if (last && last.id === id && sameJson(last.value, value)) return last.value
    cache.current = { id, value }
    return value
  }

  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot)
}

/**
 * The orchestrator's current {@link SyncStatus}: state, online, queue length, pending counts,
 * failures, last/next sync and progress. Re-renders when the status changes.
 */
export function useSyncStatus(): SyncStatus {
  const orchestrator = useSyncOrchestrator()
  const subscribe = useCallback(
    (onChange: () => void) =>
      orchestrator.subscribe((event) => {
        if (event.type === 'status') onChange()
      }),
    [orchestrator],
  )
  const getSnapshot = (): SyncStatus => orchestrator.getSyncStatus()
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot)
}

/**
 * The conflicts waiting for a person (collections with the `ask-user` strategy). Resolve them with
 * `useSyncOrchestrator().resolveConflicts(choices)`. The array is stable until the inbox changes.
 */
export function useConflicts(): readonly PendingConflict[] {
  const orchestrator = useSyncOrchestrator()
  const cache = useRef<readonly PendingConflict[] | null>(null)

  const subscribe = useCallback(
    (onChange: () => void) => {
      let active = true
      // Storage loads after construction: read the stored inbox once it is there.
      orchestrator.ready.then(
        () => active && onChange(),
        () => undefined,
      )
      // The inbox changes with a `conflict` event (new or replaced) or a resolution (status count).
      const unsubscribe = orchestrator.subscribe((event) => {
        if (event.type === 'conflict' || event.type === 'status' || event.type === 'change') onChange()
      })
      return () => {
        active = false
        unsubscribe()
      }
    },
    [orchestrator],
  )

  const getSnapshot = (): readonly PendingConflict[] => {
    const last = cache.current
    const fresh = orchestrator.getConflicts()
    if (last && sameJson(last, fresh)) return last
    const value = Object.freeze(fresh)
    cache.current = value
    return value
  }

  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot)
}

/** Listen to one collection, plus the moment storage has loaded. */
function subscribeCollection(orchestrator: SyncOrchestrator, name: string, onChange: () => void): () => void {
  let active = true
  orchestrator.ready.then(
    () => active && onChange(),
    () => undefined,
  )
  const unsubscribe = orchestrator.collection(name).subscribe(onChange)
  return () => {
    active = false
    unsubscribe()
  }
}

function sameElements<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Structural equality for JSON-compatible values (rows, conflicts); small values only. */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (a === undefined || b === undefined) return false
  return JSON.stringify(a) === JSON.stringify(b)
}

export type { Collection, PendingConflict, SyncOrchestrator, SyncStatus, ConflictChoice, SyncEvent } from '../core/types.js'
