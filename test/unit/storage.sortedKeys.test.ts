import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compareKeys, prefixUpperBound, SortedKeys } from '../../src/storage/sortedKeys.js'
import { propertyParameters, storageKeyArbitrary } from '../../src/testing/storageContract.js'

const naivePrefix = (keys: Set<string>, prefix: string): string[] => [...keys].filter((k) => k.startsWith(prefix)).sort(compareKeys)

describe('SortedKeys', () => {
  it('agrees with a sorted set over long runs of inserts and removes, across chunk splits (property)', () => {
    const key = fc.oneof(
      fc.integer({ min: 0, max: 4000 }).map((n) => `k/${n.toString(36)}`),
      storageKeyArbitrary,
    )
    const op = fc.record({ remove: fc.boolean(), key })
    fc.assert(
      fc.property(fc.array(key, { maxLength: 300 }), fc.array(op, { maxLength: 4000 }), fc.array(storageKeyArbitrary, { maxLength: 5 }), (initial, ops, prefixes) => {
        const model = new Set(initial)
        const index = SortedKeys.from(initial)
        for (const { remove, key: k } of ops) {
          if (remove) {
            model.delete(k)
            index.remove(k)
          } else {
            model.add(k)
            index.insert(k)
          }
        }
        expect(index.size).toBe(model.size)
        expect(index.toArray()).toEqual(naivePrefix(model, ''))
        for (const prefix of ['k/', 'k/1', ...prefixes]) expect([...index.withPrefix(prefix)]).toEqual(naivePrefix(model, prefix))
      }),
      propertyParameters(40),
    )
  })

  it('empties and refills', () => {
    const index = SortedKeys.from(['b', 'a'])
    index.remove('a')
    index.remove('b')
    index.remove('zz')
    expect(index.size).toBe(0)
    expect([...index.withPrefix('')]).toEqual([])
    index.insert('c')
    expect(index.toArray()).toEqual(['c'])
  })
})

describe('prefixUpperBound', () => {
  it('bounds exactly the strings that start with the prefix (property)', () => {
    fc.assert(
      fc.property(storageKeyArbitrary, storageKeyArbitrary, (prefix, other) => {
        const upper = prefixUpperBound(prefix)
        const inRange = other >= prefix && (upper === undefined || other < upper)
        expect(inRange).toBe(other.startsWith(prefix))
      }),
      propertyParameters(2000),
    )
  })

  it('has no bound for the empty prefix or one of only U+FFFF', () => {
    expect(prefixUpperBound('')).toBeUndefined()
    expect(prefixUpperBound('\uFFFF\uFFFF')).toBeUndefined()
    expect(prefixUpperBound('a\uFFFF')).toBe('b')
  })
})
