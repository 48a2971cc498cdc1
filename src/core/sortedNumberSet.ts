/**
 * An ordered set of numbers, kept as a list of sorted chunks (the layout of Python's
 * `sortedcontainers`): insert and delete cost a binary search plus a move inside one chunk of at
 * most `2 * CHUNK` numbers, and iteration in order is a plain walk. The queue appends increasing
 * sequence numbers almost always, so appending past the current maximum has a fast path.
 *
 * Invariants: every chunk is non-empty and sorted ascending; the last number of chunk `i` is lower
 * than the first number of chunk `i + 1`; no number appears twice.
 */
const CHUNK = 512

/** An ordered set of finite numbers with O(log n + CHUNK) insert and delete. */
export class SortedNumberSet {
  private chunks: number[][] = []
  private count = 0

  /** How many numbers the set holds. */
  get size(): number {
    return this.count
  }

  /** Add `value`; returns false when it was already present. */
  add(value: number): boolean {
    const chunks = this.chunks
    const last = chunks[chunks.length - 1]
    if (last === undefined) {
      chunks.push([value])
      this.count = 1
      return true
    }
    if (value > last[last.length - 1]!) {
      last.push(value)
      this.count++
      if (last.length > 2 * CHUNK) this.split(chunks.length - 1)
      return true
    }
    const c = this.chunkFor(value)
    const chunk = chunks[c]!
    const i = lowerBound(chunk, value)
    if (chunk[i] === value) return false
    chunk.splice(i, 0, value)
    this.count++
    if (chunk.length > 2 * CHUNK) this.split(c)
    return true
  }

  /** Remove `value`; returns false when it was absent. */
  delete(value: number): boolean {
    const chunks = this.chunks
    if (chunks.length === 0) return false
    const c = this.chunkFor(value)
    const chunk = chunks[c]
    if (chunk === undefined) return false
    const i = lowerBound(chunk, value)
    if (chunk[i] !== value) return false
    chunk.splice(i, 1)
    this.count--
    if (chunk.length === 0) chunks.splice(c, 1)
    return true
  }

  /** Whether `value` is in the set. */
  has(value: number): boolean {
    const chunk = this.chunks[this.chunkFor(value)]
    return chunk !== undefined && chunk[lowerBound(chunk, value)] === value
  }

  /** The numbers in ascending order. */
  *values(): IterableIterator<number> {
    for (const chunk of this.chunks) yield* chunk
  }

  /** The numbers greater than `value`, in ascending order. */
  *valuesAfter(value: number): IterableIterator<number> {
    const chunks = this.chunks
    let [c, i] = this.startAfter(value)
    for (; c < chunks.length; c++, i = 0) {
      const chunk = chunks[c]!
      for (; i < chunk.length; i++) yield chunk[i]!
    }
  }

  /**
   * Calls `visit` with the numbers greater than `after` (all of them without it), in ascending
   * order, until it returns false. A plain loop: a generator costs several times more a number
   * until the engine has optimized it.
   */
  forEachAfter(after: number | undefined, visit: (value: number) => boolean | void): boolean {
    const chunks = this.chunks
    let [c, i] = after === undefined ? [0, 0] : this.startAfter(after)
    for (; c < chunks.length; c++, i = 0) {
      const chunk = chunks[c]!
      for (; i < chunk.length; i++) if (visit(chunk[i]!) === false) return false
    }
    return true
  }

  /** Remove everything. */
  clear(): void {
    this.chunks = []
    this.count = 0
  }

  /** Chunk and index of the first number greater than `value` (chunk `chunks.length` when none). */
  private startAfter(value: number): [number, number] {
    const c = this.chunkFor(value)
    const chunk = this.chunks[c]
    if (chunk === undefined) return [c, 0]
    const i = lowerBound(chunk, value)
    return [c, chunk[i] === value ? i + 1 : i]
  }

  /** Index of the first chunk whose last number is >= `value` (`chunks.length` when none). */
  private chunkFor(value: number): number {
    const chunks = this.chunks
    let lo = 0
    let hi = chunks.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const chunk = chunks[mid]!
      if (chunk[chunk.length - 1]! < value) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  private split(c: number): void {
    const chunk = this.chunks[c]!
    this.chunks.splice(c + 1, 0, chunk.splice(chunk.length >>> 1))
  }
}

/** First index in sorted `xs` whose value is >= `value`. */
function lowerBound(xs: readonly number[], value: number): number {
  let lo = 0
  let hi = xs.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (xs[mid]! < value) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** Insert `value` into sorted array `xs` unless present; appending past the end is O(1). */
export function insertSorted(xs: number[], value: number): void {
  if (xs.length === 0 || value > xs[xs.length - 1]!) {
    xs.push(value)
    return
  }
  const i = lowerBound(xs, value)
  if (xs[i] !== value) xs.splice(i, 0, value)
}

/** Remove `value` from sorted array `xs`; returns false when absent. */
export function removeSorted(xs: number[], value: number): boolean {
  const i = lowerBound(xs, value)
  if (xs[i] !== value) return false
  // (pop allocates nothing; splice returns an array of what it removed)
  if (i === xs.length - 1) xs.pop()
  else xs.splice(i, 1)
  return true
}
