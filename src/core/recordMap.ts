/**
 * A map keyed by record: (entity type, record id) → value, as a map of maps. The hot paths of a
 * sync look a record up several times per queued item; a joined string key would be built, and
 * its hash computed, on every lookup, while the two strings a lookup is given are usually the
 * item's own, whose hashes are computed once and kept.
 */
export class RecordMap<V> {
  private readonly byType = new Map<string, Map<string, V>>()
  private count = 0

  /** How many records have a value. */
  get size(): number {
    return this.count
  }

  /** The value of a record, if any. */
  get(entityType: string, recordId: string): V | undefined {
    return this.byType.get(entityType)?.get(recordId)
  }

  /** Whether a record has a value. */
  has(entityType: string, recordId: string): boolean {
    return this.byType.get(entityType)?.has(recordId) ?? false
  }

  /** Sets a record's value. */
  set(entityType: string, recordId: string, value: V): void {
    let ids = this.byType.get(entityType)
    if (!ids) this.byType.set(entityType, (ids = new Map()))
    const before = ids.size
    ids.set(recordId, value)
    this.count += ids.size - before
  }

  /** Removes a record's value; says whether it had one. */
  delete(entityType: string, recordId: string): boolean {
    const ids = this.byType.get(entityType)
    if (!ids?.delete(recordId)) return false
    this.count--
    if (ids.size === 0) this.byType.delete(entityType)
    return true
  }

  /** Every value, entity type by entity type. */
  *values(): Generator<V> {
    for (const ids of this.byType.values()) yield* ids.values()
  }
}
