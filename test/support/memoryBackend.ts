/**
 * An in-memory model of the server protocol (versions, exactly-once push, tombstones, a commit-order
 * cursor), for unit tests of pure engine logic. The real path is tested against the real stack.
 */
import type { Backend, Change, Mutation, MutationOutcome, PullRequest, PullResult, Row, TableChecksum } from '../../src/core/protocol.js'
import { SyncError } from '../../src/core/errors.js'
import { checksumOf } from '../../src/core/checksum.js'

interface ServerRow {
  row: Row
  version: number
  deleted: boolean
  hlc: string | null
  tick: number
}

export interface MemoryBackend extends Backend {
  tables: Map<string, Map<string, ServerRow>>
  /** Write as plain SQL would (outside the engine). */
  serverWrite(table: string, id: string, row: Row | null): void
  /** Make the next N calls fail with this error. */
  failNext(n: number, error: SyncError): void
  /** Apply the next push but throw as if its response was lost. */
  loseNextResponse(): void
  calls: { push: number; pull: number }
}

export function createMemoryBackend(options: { tables: string[]; pk?: Record<string, string> }): MemoryBackend {
  const tables = new Map<string, Map<string, ServerRow>>(options.tables.map((t) => [t, new Map()]))
  const done = new Map<string, MutationOutcome>()
  let tick = 0
  let failures: { n: number; error: SyncError } = { n: 0, error: new SyncError('network', 'x') }
  let lose = false
  const calls = { push: 0, pull: 0 }
  const pkOf = (t: string) => options.pk?.[t] ?? 'id'

  function maybeFail(): void {
    if (failures.n > 0) {
      failures.n--
      throw failures.error
    }
  }

  function write(table: string, id: string, row: Row | null, hlc: string | null): ServerRow {
    const t = tables.get(table)!
    const cur = t.get(id)
    const next: ServerRow = row === null
      ? { row: cur?.row ?? {}, version: (cur?.version ?? 0) + 1, deleted: true, hlc, tick: ++tick }
      : { row: { ...(cur && !cur.deleted ? cur.row : {}), ...row, [pkOf(table)]: cur?.row[pkOf(table)] ?? row[pkOf(table)] ?? id }, version: (cur?.version ?? 0) + 1, deleted: false, hlc, tick: ++tick }
    t.set(id, next)
    return next
  }

  function applyOne(m: Mutation): MutationOutcome {
    const t = tables.get(m.table)
    if (!t) return { seq: m.seq, status: 'rejected', code: '42P01', message: 'no such table' }
    if (m.data && m.data['__reject']) return { seq: m.seq, status: 'rejected', code: '23514', message: 'check violation' }
    const cur = t.get(m.id)
    const conflict = (): MutationOutcome => ({ seq: m.seq, status: 'conflict', row: cur ? cur.row : null, version: cur?.version ?? null, deleted: cur?.deleted ?? false, hlc: cur?.hlc ?? null })
    if (m.action === 'create') {
      if (cur) return conflict()
      const w = write(m.table, m.id, m.data ?? {}, m.hlc ?? null)
      return { seq: m.seq, status: 'applied', row: w.row, version: w.version, hlc: w.hlc }
    }
    if (!cur) return { seq: m.seq, status: 'rejected', code: 'P0002', message: 'row not found' }
    if (m.baseVersion !== null && m.baseVersion !== cur.version) return conflict()
    if (m.action === 'delete') {
      if (cur.deleted) return { seq: m.seq, status: 'applied', row: null, version: cur.version, hlc: cur.hlc }
      const w = write(m.table, m.id, null, m.hlc ?? null)
      return { seq: m.seq, status: 'applied', row: null, version: w.version, hlc: w.hlc }
    }
    const w = write(m.table, m.id, m.data ?? {}, m.hlc ?? null)
    return { seq: m.seq, status: 'applied', row: w.row, version: w.version, hlc: w.hlc }
  }

  return {
    tables,
    calls,
    failNext(n, error) {
      failures = { n, error }
    },
    loseNextResponse() {
      lose = true
    },
    serverWrite(table, id, row) {
      write(table, id, row, null)
    },
    async push(clientId, mutations) {
      calls.push++
      maybeFail()
      const out = mutations.map((m) => {
        const key = `${clientId}:${m.seq}`
        const prior = done.get(key)
        if (prior) return structuredClone(prior)
        const o = applyOne(m)
        done.set(key, o)
        return structuredClone(o)
      })
      if (lose) {
        lose = false
        throw new SyncError('network', 'response lost')
      }
      return out
    },
    async pull(req: PullRequest): Promise<PullResult> {
      calls.pull++
      maybeFail()
      const after = req.cursor === null ? 0 : Number(req.cursor)
      const all: Array<Change & { tick: number }> = []
      for (const name of req.tables) {
        for (const [id, r] of tables.get(name) ?? []) if (r.tick > after) all.push({ table: name, id, row: structuredClone(r.row), version: r.version, deleted: r.deleted, hlc: r.hlc, tick: r.tick })
      }
      all.sort((a, b) => a.tick - b.tick)
      const page = all.slice(0, req.limit)
      const last = page.at(-1)
      return {
        changes: page.map(({ tick: _t, ...c }) => c),
        cursor: last ? String(last.tick) : req.cursor,
        hasMore: all.length > req.limit,
        reset: false,
      }
    },
    async checksum(names): Promise<TableChecksum[]> {
      maybeFail()
      return names.map((name) => {
        const live = [...(tables.get(name) ?? [])].filter(([, r]) => !r.deleted).map(([id, r]) => ({ id, version: r.version }))
        return { table: name, ...checksumOf(live) }
      })
    },
  }
}
