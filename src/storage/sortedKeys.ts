/**
 * An ordered set of keys for adapters whose backing store has no ordered scan.
 *
 * Kept as a list of sorted chunks (like a one-level B+tree) rather than one big sorted array:
 * inserting into the middle of a 100,000-element array with `splice` is a slow element-by-element
 * copy in V8 once the array has grown by splicing, while a chunk is small enough that any insert is
 * cheap. Cost: O(log n) to find a key's chunk and slot, plus O(chunk size) to shift within it.
 *
 * Invariants: every chunk is non-empty and sorted in code-unit order (the order of `<` on strings,
 * which is the order the storage port promises for `scan`); every key of chunk i is below every key
 * of chunk i + 1; `maxes[i]` is the last key of chunk i; no key appears twice.
 */
export class SortedKeys {
  private chunks: string[][]
  private maxes: string[]
  private count: number

  private constructor(chunks: string[][]) {
    this.chunks = chunks
    this.maxes = chunks.map((chunk) => chunk[chunk.length - 1] as string)
    this.count = chunks.reduce((sum, chunk) => sum + chunk.length, 0)
  }

  /** Build from any keys in O(n log n); duplicates are dropped. */
  static from(keys: Iterable<string>): SortedKeys {
    const sorted = [...new Set(keys)].sort(compareKeys)
    const chunks: string[][] = []
    for (let i = 0; i < sorted.length; i += CHUNK) chunks.push(sorted.slice(i, i + CHUNK))
    return new SortedKeys(chunks)
  }

  get size(): number {
    return this.count
  }

  /** Add a key (no-op when present). */
  insert(key: string): void {
    if (this.chunks.length === 0) {
      this.chunks.push([key])
      this.maxes.push(key)
      this.count = 1
      return
    }
    // Past every max: it belongs at the end of the last chunk.
    const at = Math.min(lowerBound(this.maxes, key), this.chunks.length - 1)
    const chunk = this.chunks[at] as string[]
    const slot = lowerBound(chunk, key)
    if (chunk[slot] === key) return
    chunk.splice(slot, 0, key)
    this.count++
    if (chunk.length > 2 * CHUNK) {
      const right = chunk.splice(CHUNK)
      this.chunks.splice(at + 1, 0, right)
      this.maxes.splice(at, 1, chunk[chunk.length - 1] as string, right[right.length - 1] as string)
    } else {
      this.maxes[at] = chunk[chunk.length - 1] as string
    }
  }

  /** Remove a key (no-op when absent). */
  remove(key: string): void {
    const at = lowerBound(this.maxes, key)
    const chunk = this.chunks[at]
    if (!chunk) return
    const slot = lowerBound(chunk, key)
    if (chunk[slot] !== key) return
    chunk.splice(slot, 1)
    this.count--
    if (chunk.length === 0) {
      this.chunks.splice(at, 1)
      this.maxes.splice(at, 1)
    } else {
      this.maxes[at] = chunk[chunk.length - 1] as string
    }
  }

  /** Keys starting with `prefix`, in order: O(log n + matches). */
  *withPrefix(prefix: string): Generator<string> {
    let at = lowerBound(this.maxes, prefix)
    if (at >= this.chunks.length) return
    let slot = lowerBound(this.chunks[at] as string[], prefix)
    for (; at < this.chunks.length; at++, slot = 0) {
      const chunk = this.chunks[at] as string[]
      for (; slot < chunk.length; slot++) {
        const key = chunk[slot] as string
        if (!key.startsWith(prefix)) return
        yield key
      }
    }
  }

  /** A copy of all keys, in order. */
  toArray(): string[] {
    return this.chunks.flat()
  }
}

/** Target chunk length; a chunk splits in two when it grows past twice this. */
const CHUNK = 512

/** Index of the first element of sorted `list` that is not below `key`. */
function lowerBound(list: readonly string[], key: string): number {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((list[mid] as string) < key) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** Code-unit order, the order `scan` promises. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * The smallest string greater than every string that starts with `prefix`, for an exclusive
 * upper bound of a key range; `undefined` when no such bound exists (empty prefix, or only U+FFFF).
 */
export function prefixUpperBound(prefix: string): string | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const unit = prefix.charCodeAt(i)
    if (unit < 0xffff) return prefix.slice(0, i) + String.fromCharCode(unit + 1)
  }
  return undefined
}
