import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { mapPacked } from '../../src/core/arrays.js'

describe('mapPacked', () => {
  it('gives what Array.prototype.map gives, index included', () => {
    fc.assert(
      fc.property(fc.array(fc.anything()), (xs) => {
        const fn = (x: unknown, i: number): [unknown, number] => [x, i]
        expect(mapPacked(xs, fn)).toEqual(xs.map(fn))
      }),
    )
  })

  it('reads holes as undefined and leaves the input alone', () => {
    const xs: number[] = [1]
    xs[2] = 3
    expect(mapPacked(xs, (x) => x)).toEqual([1, undefined, 3])
    expect(1 in mapPacked(xs, (x) => x)).toBe(true)
    expect(1 in xs).toBe(false)
  })
})
