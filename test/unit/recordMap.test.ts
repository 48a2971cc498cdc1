import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { RecordMap } from '../../src/core/recordMap.js'

// Replay a failing property with FC_SEED=<seed printed in the failure>.
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)

describe('RecordMap', () => {
  it('behaves as a map keyed by (entity type, record id), whatever the ids hold', () => {
    // Ids and types that a joined key could confuse: separators, empty strings, shared prefixes.
    const part = fc.constantFrom('', 'a', 'a\u0000', '\u0000a', 'a\u0000b', 'b', 'ab')
    const op = fc.record({ kind: fc.constantFrom('set', 'delete'), type: part, id: part, value: fc.nat({ max: 9 }) })
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const map = new RecordMap<number>()
        const model = new Map<string, number>()
        const key = (type: string, id: string) => JSON.stringify([type, id])
        for (const { kind, type, id, value } of ops) {
          if (kind === 'set') {
            map.set(type, id, value)
            model.set(key(type, id), value)
          } else {
            expect(map.delete(type, id)).toBe(model.delete(key(type, id)))
          }
          expect(map.size).toBe(model.size)
          expect(map.get(type, id)).toBe(model.get(key(type, id)))
          expect(map.has(type, id)).toBe(model.has(key(type, id)))
        }
        expect([...map.values()].sort()).toEqual([...model.values()].sort())
      }),
      { seed, numRuns: 300 },
    )
  })
})
