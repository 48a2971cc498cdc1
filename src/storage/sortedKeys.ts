/**
 * An ordered set of keys for adapters whose backing store has no ordered scan.
 *
 * Invariant: `keys` is sorted in code-unit order (the order of `<` on strings, which is the order
 * the storage port promises for `scan`) and holds no duplicates.
 */
export class SortedKeys {
  private keys: string[]

  private constructor(sorted: string[]) {
    this.keys = sorted
  }

  /** Build from any keys in O(n log n); duplicates are dropped. */
  static from(keys: Iterable<string>): SortedKeys {
    const sorted = [...new Set(keys)].sort(compareKeys)
    return new SortedKeys(sorted)
  }

  get size(): number {
    return this.keys.length
  }

  /**
   * Add a key. O(log n) to find the slot plus one `splice`; appending in order (the common
   * case for sequence-numbered keys) moves nothing.
   */
  insert(key: string): void {
    const at = this.lowerBound(key)
    if (this.keys[at] !== key) this.keys.splice(at, 0, key)
  }

  remove(key: string): void {
    const at = this.lowerBound(key)
    if (this.keys[at] === key) this.keys.splice(at, 1)
  }

  /** Keys starting with `prefix`, in order: O(log n + matches). */
  *withPrefix(prefix: string): Generator<string> {
    for (let i = this.lowerBound(prefix); i < this.keys.length; i++) {
      const key = this.keys[i] as string
      if (!key.startsWith(prefix)) return
      yield key
    }
  }

  /** A copy of all keys, in order. */
  toArray(): string[] {
    return this.keys.slice()
  }

  private lowerBound(key: string): number {
    let lo = 0
    let hi = this.keys.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.keys[mid] as string) < key) lo = mid + 1
      else hi = mid
    }
    return lo
  }
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
