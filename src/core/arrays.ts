/**
 * Array helpers for the sync path.
 *
 * `Array.prototype.map` returns a packed array when it runs in V8's interpreter and a holey one
 * when optimized code inlines it. An array built one way and read by optimized code that has only
 * seen the other has the wrong map: that code is thrown away and compiled again, in the middle of a
 * sync and on a core the database needs. Arrays handed from one step of the sync path to the next
 * are therefore built with `mapPacked`, packed whichever tier builds them.
 */

/** `xs.map(fn)`, always as a packed array. */
export function mapPacked<T, U>(xs: readonly T[], fn: (x: T, index: number) => U): U[] {
  const out: U[] = []
  for (let i = 0; i < xs.length; i++) out.push(fn(xs[i]!, i))
  return out
}
