// @vitest-environment happy-dom
/**
 * The React bindings against a small in-memory orchestrator: re-render on change, no re-render when
 * an unrelated value changes, unsubscribe on unmount, re-subscribe when the orchestrator changes.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { act, cleanup, render, screen } from '@testing-library/react'
import { Profiler, useState, type ReactNode } from 'react'
import { SyncProvider, useCollection, useConflicts, useRecord, useSyncOrchestrator, useSyncStatus } from '../../src/react/index.js'
import type { Collection, ConflictChoice, PendingConflict, SyncEvent, SyncOrchestrator, SyncStatus } from '../../src/core/types.js'
import type { Row } from '../../src/core/protocol.js'

// React warns unless the environment says it supports act().
;(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true

afterEach(() => cleanup())

/** An in-memory orchestrator with just enough behaviour to drive the hooks, and listener counts. */
function createFakeOrchestrator(options: { loaded?: Record<string, Row[]> } = {}) {
  const tables = new Map<string, Map<string, Row>>()
  const lists = new Map<string, readonly Row[]>()
  const collectionListeners = new Map<string, Set<() => void>>()
  const listeners = new Set<(event: SyncEvent) => void>()
  let conflicts: PendingConflict[] = []
  let status: SyncStatus = {
    state: 'idle', online: true, queueLength: 0, pending: { creates: 0, updates: 0, deletes: 0 }, failed: 0, conflicts: 0,
    lastSyncAt: null, nextSyncAt: null, lastError: null, progress: null,
  }
  let resolveReady!: () => void
  const ready = new Promise<void>((resolve) => (resolveReady = resolve))
  let nextId = 1

  const table = (name: string) => {
    let t = tables.get(name)
    if (!t) tables.set(name, (t = new Map()))
    return t
  }
  const emit = (event: SyncEvent) => {
    for (const l of [...listeners]) l(event)
  }
  const changed = (name: string, ids: string[]) => {
    lists.delete(name)
    for (const l of [...(collectionListeners.get(name) ?? [])]) l()
    emit({ type: 'change', collection: name, ids, source: 'local' })
    setStatus({ queueLength: status.queueLength + 1 })
  }
  const setStatus = (patch: Partial<SyncStatus>) => {
    status = { ...status, ...patch }
    emit({ type: 'status', status })
  }

  const collection = <T extends Row>(name: string): Collection<T> => ({
    name,
    insert: async (row) => {
      const id = String(row.id ?? `r${nextId++}`)
      table(name).set(id, { ...row, id })
      changed(name, [id])
      return table(name).get(id) as T
    },
    update: async (id, patch) => {
      table(name).set(id, { ...table(name).get(id), ...patch })
      changed(name, [id])
      return table(name).get(id) as T
    },
    delete: async (id) => {
      table(name).delete(id)
      changed(name, [id])
    },
    // A copy per read, as an implementation may do: the hook must keep its snapshot stable anyway.
    get: (id) => {
      const row = table(name).get(id)
      return row ? (structuredClone(row) as T) : undefined
    },
    list: (filter) => {
      let list = lists.get(name)
      if (!list) lists.set(name, (list = Object.freeze([...table(name).values()])))
      return (filter ? list.filter(filter as (row: Row) => boolean) : list) as readonly T[]
    },
    syncState: (id) => (table(name).has(id) ? 'pending' : undefined),
    subscribe: (listener) => {
      let set = collectionListeners.get(name)
      if (!set) collectionListeners.set(name, (set = new Set()))
      set.add(listener)
      return () => set.delete(listener)
    },
  })

  const orchestrator: SyncOrchestrator = {
    ready,
    clientId: 'fake',
    collection,
    startSync: () => undefined,
    stopSync: async () => undefined,
    forceSyncAll: async () => ({ ok: true, pushed: 0, pulled: 0 }),
    clearQueue: async () => [],
    getSyncStatus: () => status,
    getMetrics: async () => ({
      queueLength: 0, pendingCreates: 0, pendingUpdates: 0, pendingDeletes: 0, failedItems: 0, conflicts: 0,
      lastSyncAt: null, nextSyncAt: null, successRate: 1, averageSyncMs: null, dataInSync: null,
    }),
    // Fresh objects per read, like a real inbox read from a map.
    getConflicts: () => conflicts.map((c) => ({ ...c })),
    resolveConflicts: async (choices: readonly ConflictChoice[]) => {
      const ids = new Set(choices.map((c) => c.id))
      conflicts = conflicts.filter((c) => !ids.has(c.id))
      setStatus({ conflicts: conflicts.length })
    },
    getFailed: () => [],
    retryFailed: async () => undefined,
    discardFailed: async () => undefined,
    notifyAuthChange: () => undefined,
    repairSync: async () => ({ quarantined: [], requeued: 0 }),
    optimizeSync: async () => ({ before: 0, after: 0, compacted: false }),
    subscribe: (listener) => {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    close: async () => undefined,
  }

  return {
    orchestrator,
    /** Load stored rows and resolve `ready`, without notifying anyone (as storage loading may). */
    load() {
      for (const [name, rows] of Object.entries(options.loaded ?? {})) for (const row of rows) table(name).set(String(row.id), row)
      lists.clear()
      resolveReady()
    },
    setStatus,
    emit,
    addConflict(conflict: PendingConflict) {
      conflicts = [...conflicts, conflict]
      emit({ type: 'conflict', collection: conflict.collection, id: conflict.recordId, strategy: 'ask-user' })
      setStatus({ conflicts: conflicts.length })
    },
    listenerCount: () => listeners.size + [...collectionListeners.values()].reduce((n, s) => n + s.size, 0),
  }
}

/** Counts commits of a subtree, to tell whether a change re-rendered it. */
function counted(id: string, counts: Map<string, number>, children: ReactNode) {
  return (
    <Profiler id={id} onRender={() => counts.set(id, (counts.get(id) ?? 0) + 1)}>
      {children}
    </Profiler>
  )
}

type Contact = Row & { id: string; name: string; group?: string }

function Names({ filter }: { filter?: (row: Contact) => boolean }) {
  const rows = useCollection<Contact>('contacts', filter)
  return <ul data-testid="names">{rows.map((r) => <li key={r.id}>{r.name}</li>)}</ul>
}

function One({ id }: { id: string }) {
  const row = useRecord<Contact>('contacts', id)
  return <span data-testid={`one-${id}`}>{row ? row.name : 'none'}</span>
}

function Status() {
  const status = useSyncStatus()
  return <span data-testid="status">{`${status.state}:${status.queueLength}`}</span>
}

function Inbox() {
  const conflicts = useConflicts()
  const orchestrator = useSyncOrchestrator()
  return (
    <div data-testid="inbox">
      {conflicts.map((c) => (
        <button key={c.id} onClick={() => void orchestrator.resolveConflicts([{ id: c.id, choice: 'local' }])}>
          {c.recordId}
        </button>
      ))}
    </div>
  )
}

const isWork = (row: Contact) => row.group === 'work'

describe('react bindings', () => {
  it('fills a list once storage has loaded, then follows writes', async () => {
    const fake = createFakeOrchestrator({ loaded: { contacts: [{ id: 'a', name: 'Ada' }] } })
    render(<SyncProvider orchestrator={fake.orchestrator}><Names /></SyncProvider>)
    expect(screen.getByTestId('names').textContent).toBe('')

    await act(async () => fake.load())
    expect(screen.getByTestId('names').textContent).toBe('Ada')

    await act(async () => void (await fake.orchestrator.collection('contacts').insert({ id: 'b', name: 'Bob' })))
    expect(screen.getByTestId('names').textContent).toBe('AdaBob')

    await act(async () => void (await fake.orchestrator.collection('contacts').update('a', { name: 'Ada L.' })))
    await act(async () => fake.orchestrator.collection('contacts').delete('b'))
    expect(screen.getByTestId('names').textContent).toBe('Ada L.')
  })

  it('does not re-render a filtered list when a change leaves it the same', async () => {
    const fake = createFakeOrchestrator({ loaded: { contacts: [{ id: 'w', name: 'Wendy', group: 'work' }, { id: 'h', name: 'Hal', group: 'home' }] } })
    await act(async () => fake.load())
    const counts = new Map<string, number>()
    render(
      <SyncProvider orchestrator={fake.orchestrator}>
        {counted('work', counts, <Names filter={isWork} />)}
        {counted('all', counts, <Names />)}
      </SyncProvider>,
    )
    const before = { work: counts.get('work'), all: counts.get('all') }

    await act(async () => void (await fake.orchestrator.collection('contacts').update('h', { name: 'Hal 2' })))
    expect(counts.get('all')).toBe((before.all ?? 0) + 1)
    expect(counts.get('work')).toBe(before.work)

    await act(async () => void (await fake.orchestrator.collection('contacts').update('w', { name: 'Wendy 2' })))
    expect(counts.get('work')).toBe((before.work ?? 0) + 1)
    expect(screen.getAllByTestId('names')[0]!.textContent).toBe('Wendy 2')
  })

  it('keeps an inline filter result stable across parent re-renders', async () => {
    const fake = createFakeOrchestrator({ loaded: { contacts: [{ id: 'w', name: 'Wendy', group: 'work' }] } })
    await act(async () => fake.load())
    const seen: Array<readonly Contact[]> = []
    function Inline() {
      const [, setTick] = useState(0)
      const rows = useCollection<Contact>('contacts', (r) => r.group === 'work')
      seen.push(rows)
      return <button data-testid="tick" onClick={() => setTick((t) => t + 1)}>{rows.length}</button>
    }
    render(<SyncProvider orchestrator={fake.orchestrator}><Inline /></SyncProvider>)
    await act(async () => screen.getByTestId('tick').click())
    expect(seen.length).toBeGreaterThan(1)
    expect(new Set(seen).size).toBe(1)
  })

  it('re-renders one record only when that record changes', async () => {
    const fake = createFakeOrchestrator({ loaded: { contacts: [{ id: 'a', name: 'Ada' }, { id: 'b', name: 'Bob' }] } })
    await act(async () => fake.load())
    const counts = new Map<string, number>()
    render(<SyncProvider orchestrator={fake.orchestrator}>{counted('a', counts, <One id="a" />)}</SyncProvider>)
    const before = counts.get('a') ?? 0
    expect(screen.getByTestId('one-a').textContent).toBe('Ada')

    await act(async () => void (await fake.orchestrator.collection('contacts').update('b', { name: 'Bob 2' })))
    expect(counts.get('a')).toBe(before)

    await act(async () => void (await fake.orchestrator.collection('contacts').update('a', { name: 'Ada 2' })))
    expect(counts.get('a')).toBe(before + 1)
    expect(screen.getByTestId('one-a').textContent).toBe('Ada 2')

    await act(async () => fake.orchestrator.collection('contacts').delete('a'))
    expect(screen.getByTestId('one-a').textContent).toBe('none')
  })

  it('follows status events and ignores the others', async () => {
    const fake = createFakeOrchestrator()
    await act(async () => fake.load())
    const counts = new Map<string, number>()
    render(<SyncProvider orchestrator={fake.orchestrator}>{counted('status', counts, <Status />)}</SyncProvider>)
    expect(screen.getByTestId('status').textContent).toBe('idle:0')
    const before = counts.get('status') ?? 0

    await act(async () => fake.setStatus({ state: 'syncing', progress: { phase: 'pull', done: 1, total: 10 } }))
    expect(screen.getByTestId('status').textContent).toBe('syncing:0')
    expect(counts.get('status')).toBe(before + 1)

    // A change event alone (no status event) must not re-render a status reader.
    const beforeChange = counts.get('status')
    await act(async () => {
      fake.emit({ type: 'change', collection: 'contacts', ids: ['x'], source: 'remote' })
      fake.emit({ type: 'pulled', changes: 1 })
    })
    expect(counts.get('status')).toBe(beforeChange)
  })

  it('shows the conflict inbox, stable across unrelated events, and empties it on resolution', async () => {
    const fake = createFakeOrchestrator({ loaded: { contacts: [{ id: 'a', name: 'Ada' }] } })
    await act(async () => fake.load())
    const seen: Array<readonly PendingConflict[]> = []
    function Spy() {
      seen.push(useConflicts())
      return null
    }
    render(<SyncProvider orchestrator={fake.orchestrator}><Inbox /><Spy /></SyncProvider>)
    expect(screen.getByTestId('inbox').textContent).toBe('')

    await act(async () =>
      fake.addConflict({ id: 'c1', collection: 'contacts', recordId: 'a', local: { name: 'L' }, remote: { name: 'R' }, base: null, detectedAt: 1 }),
    )
    expect(screen.getByTestId('inbox').textContent).toBe('a')
    const withConflict = seen[seen.length - 1]!
    const rendersWithConflict = seen.length

    // Status changes that leave the inbox as it is keep the same array (and so re-render nothing).
    await act(async () => fake.setStatus({ state: 'syncing' }))
    expect(seen.length).toBe(rendersWithConflict)
    expect(seen[seen.length - 1]).toBe(withConflict)

    await act(async () => screen.getByText('a').click())
    expect(screen.getByTestId('inbox').textContent).toBe('')
  })

  it('unsubscribes everything on unmount', async () => {
    const fake = createFakeOrchestrator({ loaded: { contacts: [{ id: 'a', name: 'Ada' }] } })
    await act(async () => fake.load())
    expect(fake.listenerCount()).toBe(0)
    const view = render(
      <SyncProvider orchestrator={fake.orchestrator}>
        <Names />
        <Names filter={isWork} />
        <One id="a" />
        <Status />
        <Inbox />
      </SyncProvider>,
    )
    expect(fake.listenerCount()).toBe(5)
    view.unmount()
    expect(fake.listenerCount()).toBe(0)
  })

  it('moves every hook to a new orchestrator and releases the old one', async () => {
    const first = createFakeOrchestrator({ loaded: { contacts: [{ id: 'a', name: 'Ada' }] } })
    const second = createFakeOrchestrator({ loaded: { contacts: [{ id: 'a', name: 'Ada (B)' }] } })
    await act(async () => {
      first.load()
      second.load()
    })
    const tree = (o: SyncOrchestrator) => (
      <SyncProvider orchestrator={o}>
        <Names />
        <One id="a" />
        <Status />
      </SyncProvider>
    )
    const view = render(tree(first.orchestrator))
    expect(screen.getByTestId('names').textContent).toBe('Ada')
    view.rerender(tree(second.orchestrator))
    expect(screen.getByTestId('names').textContent).toBe('Ada (B)')
    expect(screen.getByTestId('one-a').textContent).toBe('Ada (B)')
    expect(first.listenerCount()).toBe(0)
    expect(second.listenerCount()).toBe(3)

    await act(async () => void (await second.orchestrator.collection('contacts').insert({ id: 'z', name: 'Zed' })))
    expect(screen.getByTestId('names').textContent).toBe('Ada (B)Zed')
  })

  it('reports a missing provider clearly', () => {
    function Orphan() {
      useSyncOrchestrator()
      return null
    }
    const quiet = console.error
    console.error = () => undefined
    try {
      expect(() => render(<Orphan />)).toThrow(/SyncProvider/)
    } finally {
      console.error = quiet
    }
  })
})
