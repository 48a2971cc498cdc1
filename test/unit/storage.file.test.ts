import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { StorageError } from '../../src/core/errors.js'
import type { StorageEntry, StorageOp } from '../../src/core/storage.js'
import type { StorageCorruption } from '../../src/storage/corruption.js'
import { crc32, createFileStorage, replay } from '../../src/storage/file.js'
import type { FileStorageOptions } from '../../src/storage/file.js'
import { logRecord } from '../support/fileLog.js'
import { applyToModel, modelScan, propertyParameters, storageOpsArbitrary } from '../../src/testing/storageContract.js'

let dir: string
let counter = 0
const freshPath = (): string => join(dir, `log-${counter++}`)

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'file-storage-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

const open = (path: string, options: Partial<FileStorageOptions> = {}) =>
  createFileStorage({ path, fsync: 'never', compaction: false, ...options })

const kindOf = async (promise: Promise<unknown>): Promise<string | undefined> =>
  promise.then(
    () => undefined,
    (error: unknown) => (error instanceof StorageError ? error.kind : `not a StorageError: ${String(error)}`),
  )


describe('file storage: damage', () => {
  const step = fc.oneof(
    { weight: 5, arbitrary: storageOpsArbitrary.map((ops) => ({ kind: 'commit' as const, ops })) },
    { weight: 1, arbitrary: fc.constant({ kind: 'compact' as const }) },
  )
  const damage = fc.oneof(
    fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }) }),
    fc.record({
      kind: fc.constant('flip' as const),
      flips: fc.array(fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), mask: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 3 }),
    }),
  )

  it('reopens a truncated or bit-flipped log at the state after some prefix of its commits, and reports the damage (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 14 }), damage, async (steps, hurt) => {
        const path = freshPath()
        const store = open(path)
        const model = new Map<string, unknown>()
        // The states a damaged log may come back as, and the file sizes where a log ends cleanly.
        let allowed: StorageEntry[][] = [[]]
        const boundaries = new Map<number, StorageEntry[]>([[0, []]])
        await store.open()
        const opened = store.stats().logBytes
        boundaries.set(opened, [])
        for (const s of steps) {
          if (s.kind === 'compact') {
            await store.compact()
            // Everything before is now one snapshot commit: all of it or nothing. The file was
            // rewritten, so the old log's record ends are no longer record ends.
            allowed = [[], modelScan(model, '')]
            for (const at of [...boundaries.keys()]) if (at > opened) boundaries.delete(at)
          } else {
            await store.commit(s.ops)
            applyToModel(model, s.ops)
            allowed.push(modelScan(model, ''))
          }
          boundaries.set(store.stats().logBytes, modelScan(model, ''))
        }
        await store.close()

        const bytes = await readFile(path)
        let damaged: Buffer
        let cleanEnd: StorageEntry[] | undefined
        if (hurt.kind === 'truncate') {
          const at = Math.floor(hurt.at * bytes.length)
          damaged = bytes.subarray(0, at)
          cleanEnd = boundaries.get(at)
        } else {
          damaged = Buffer.from(bytes)
          for (const flip of hurt.flips) {
            const at = Math.floor(flip.at * bytes.length)
            damaged[at] = (damaged[at] as number) ^ flip.mask
          }
          // Flips that cancel out leave the log whole.
          if (damaged.equals(bytes)) cleanEnd = boundaries.get(bytes.length)
        }
        const victim = freshPath()
        await writeFile(victim, damaged)

        const reports: StorageCorruption[] = []
        const reopened = open(victim, { onCorrupt: (r) => reports.push(r) })
        const state = await reopened.scan('')
        if (cleanEnd) {
          expect(state).toEqual(cleanEnd)
          expect(reports).toEqual([])
        } else {
          expect(allowed).toContainEqual(state)
          expect(reports).toHaveLength(1)
          const report = reports[0] as Extract<StorageCorruption, { kind: 'log' }>
          expect(report.kind).toBe('log')
          expect(report.offset + report.discardedBytes).toBe(damaged.length)
          expect(await readFile(report.savedTo as string)).toEqual(damaged.subarray(report.offset))
          expect(await reopened.corruption()).toEqual(reports)
        }
        // The cut is permanent and the store is usable.
        await reopened.commit([{ type: 'set', key: 'after-damage', value: true }])
        await reopened.close()
        const again: StorageCorruption[] = []
        const third = open(victim, { onCorrupt: (r) => again.push(r) })
        expect(await third.scan('')).toEqual(modelScan(new Map([...state.map((e) => [e.key, e.value] as const), ['after-damage', true]]), ''))
        expect(again).toEqual([])
        await third.close()
      }),
      propertyParameters(150),
    )
  })

  it('treats a file that is not a log as damaged from byte 0 and keeps its bytes aside', async () => {
    const path = freshPath()
    await writeFile(path, 'hello, I am somebody else’s file')
    const reports: StorageCorruption[] = []
    const store = open(path, { onCorrupt: (r) => reports.push(r) })
    expect(await store.scan('')).toEqual([])
    expect(reports).toEqual([expect.objectContaining({ kind: 'log', offset: 0, reason: 'bad-header' })])
    const savedTo = (reports[0] as { savedTo: string }).savedTo
    expect(await readFile(savedTo, 'utf8')).toBe('hello, I am somebody else’s file')
    await store.close()
  })

  it('drops a commit whose records stop before its last one', async () => {
    const path = freshPath()
    const header = Buffer.from('SOLOG001', 'latin1')
    const whole = logRecord([['a', '1']], 1)
    const partial = logRecord([['b', '2']], 0)
    await writeFile(path, Buffer.concat([header, whole, partial]))
    const reports: StorageCorruption[] = []
    const store = open(path, { onCorrupt: (r) => reports.push(r), keepDamaged: false })
    expect(await store.scan('')).toEqual([{ key: 'a', value: 1 }])
    expect(reports).toEqual([{ kind: 'log', offset: header.length + whole.length, discardedBytes: partial.length, reason: 'incomplete-commit', savedTo: null }])
    await store.close()
    expect((await stat(path)).size).toBe(header.length + whole.length)
  })

  it('reports a stored value that is not JSON on read, skips it in scan, and is repaired by writing', async () => {
    const path = freshPath()
    await writeFile(path, Buffer.concat([Buffer.from('SOLOG001', 'latin1'), logRecord([['good', '"ok"'], ['bad', '{oops']], 1)]))
    const reports: StorageCorruption[] = []
    const store = open(path, { onCorrupt: (r) => reports.push(r) })
    expect(await store.scan('')).toEqual([{ key: 'good', value: 'ok' }])
    expect(await kindOf(store.get('bad'))).toBe('corrupt')
    expect(reports).toEqual([expect.objectContaining({ kind: 'entry', key: 'bad', found: '{oops' })])
    expect(await store.corruption()).toEqual(reports)
    await store.commit([{ type: 'set', key: 'bad', value: 'fixed' }])
    expect(await store.corruption()).toEqual([])
    expect(await store.get('bad')).toBe('fixed')
    await store.close()
  })
})

describe('file storage: compaction', () => {
  it('keeps every commit made while it runs, and shrinks the log', async () => {
    const path = freshPath()
    const store = open(path)
    const model = new Map<string, unknown>()
    const ops = (round: number): StorageOp[] =>
      Array.from({ length: 200 }, (_, i) =>
        (i + round) % 7 === 0 ? { type: 'delete', key: `k/${i}` } : { type: 'set', key: `k/${i}`, value: { round, i, pad: 'x'.repeat(50) } },
      )
    for (let round = 0; round < 40; round++) {
      await store.commit(ops(round))
      applyToModel(model, ops(round))
    }
    const before = store.stats().logBytes
    const atSnapshot = modelScan(model, '')
    const compaction = store.compact()
    const during = Array.from({ length: 10 }, (_, round) => {
      const batch = ops(100 + round)
      applyToModel(model, batch)
      return store.commit(batch)
    })
    await Promise.all([compaction, ...during])
    expect(store.stats().compactions).toBe(1)
    expect(store.stats().logBytes).toBeLessThan(before)
    expect(await store.scan('')).toEqual(modelScan(model, ''))
    await store.close()
    const reopened = open(path)
    expect(await reopened.scan('')).toEqual(modelScan(model, ''))
    await reopened.close()
    expect(existsSync(`${path}.compacting`)).toBe(false)

    // The snapshot alone (the log cut after its last record) is the state at the instant it began,
    // so losing the commits appended after it still leaves a prefix.
    const bytes = await readFile(path)
    let end = 8
    for (;;) {
      const size = bytes.readUInt32LE(end)
      const flags = bytes[end + 8] as number
      end += 8 + size
      if (flags & 1) break
    }
    const snapshot = replay(bytes.subarray(0, end))
    expect(snapshot.damage).toBeNull()
    expect(modelScan(new Map([...snapshot.state].map(([key, text]) => [key, JSON.parse(text)])), '')).toEqual(atSnapshot)
  })

  it('compacts in the background once the log outgrows the live data', async () => {
    const path = freshPath()
    const store = open(path, { compaction: { minBytes: 10_000, ratio: 2 } })
    for (let i = 0; i < 500; i++) await store.commit([{ type: 'set', key: `k${i % 10}`, value: 'v'.repeat(100) + i }])
    await store.close()
    expect(store.stats().compactions).toBeGreaterThan(0)
    expect((await stat(path)).size).toBeLessThan(30_000)
    const reopened = open(path)
    expect(await reopened.get('k9')).toBe('v'.repeat(100) + 499)
    await reopened.close()
  })

  it('compacts an empty store to an empty store', async () => {
    const path = freshPath()
    const store = open(path)
    await store.commit([{ type: 'set', key: 'a', value: 1 }])
    await store.commit([{ type: 'delete', key: 'a' }])
    await store.compact()
    await store.close()
    const reopened = open(path)
    expect(await reopened.scan('')).toEqual([])
    await reopened.close()
  })

  it('ignores a snapshot a crash left unfinished', async () => {
    const path = freshPath()
    const store = open(path)
    await store.commit([{ type: 'set', key: 'a', value: 1 }])
    await store.close()
    await writeFile(`${path}.compacting`, 'half a snapshot')
    const reopened = open(path)
    expect(await reopened.scan('')).toEqual([{ key: 'a', value: 1 }])
    expect(existsSync(`${path}.compacting`)).toBe(false)
    await reopened.close()
  })
})

describe('file storage: lifecycle', () => {
  it('refuses a second live instance on the same file, and takes over a dead process’s lock', async () => {
    const path = freshPath()
    const first = open(path)
    await first.commit([{ type: 'set', key: 'a', value: 1 }])
    expect(await kindOf(open(path).get('a'))).toBe('io')
    await first.close()
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'])
    await writeFile(`${path}.lock`, `${String(child.stdout)} 0`)
    const second = open(path)
    expect(await second.get('a')).toBe(1)
    await second.close()
    expect(existsSync(`${path}.lock`)).toBe(false)
  })

  it('creates missing directories, and works with every fsync mode', async () => {
    for (const fsync of ['always', 'interval', 'never'] as const) {
      const path = join(dir, `nested-${fsync}`, 'deeper', 'store.log')
      const store = createFileStorage({ path, fsync, fsyncIntervalMs: 5 })
      await store.commit([{ type: 'set', key: 'mode', value: fsync }])
      await store.sync()
      await store.compact()
      await store.commit([{ type: 'set', key: 'after', value: 1 }])
      await store.close()
      const reopened = createFileStorage({ path })
      expect(await reopened.scan('')).toEqual([
        { key: 'after', value: 1 },
        { key: 'mode', value: fsync },
      ])
      await reopened.close()
    }
  })

  it('rejects bad options', () => {
    expect(() => createFileStorage({ path: '' })).toThrow(TypeError)
    expect(() => createFileStorage({ path: freshPath(), fsync: 'sometimes' as 'never' })).toThrow(TypeError)
  })

  it('computes CRC-32 (IEEE) like everyone else', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926)
    expect(crc32(Buffer.from('56789'), crc32(Buffer.from('1234')))).toBe(0xcbf43926)
  })
})
