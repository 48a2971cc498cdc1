/**
 * One atomic change to the engine's state: in-memory effects are applied as they are planned, so
 * later steps see earlier ones, and every storage op is written in a single `commit` at the end.
 *
 * Invariant: storage and memory agree after every transaction. If the commit fails (quota, I/O),
 * the in-memory state may be ahead of storage, so the caller must reload it from storage before
 * anything else runs (`onAbort`); the failure is rethrown.
 */
import type { Storage, StorageOp } from './storage.js'

/** A planned change: storage ops plus the in-memory effect to run. */
export interface Plan {
  ops: StorageOp[]
  apply(): void
}

/** Collects plans for one atomic commit. */
export interface Transaction {
  /** Apply `plan` in memory now and keep its ops for the commit. */
  add(plan: Plan): void
  /** Keep raw ops for the commit. */
  write(...ops: StorageOp[]): void
  /** Run after a successful commit (events, notifications). */
  afterCommit(effect: () => void): void
}

/** Run `body` as one transaction over `storage`. */
export async function runTransaction<T>(
  storage: Storage,
  body: (tx: Transaction) => T | Promise<T>,
  onAbort: (error: unknown) => Promise<void>,
): Promise<T> {
  const ops: StorageOp[] = []
  const after: Array<() => void> = []
  const tx: Transaction = {
    add(plan) {
      plan.apply()
      ops.push(...plan.ops)
    },
    write(...more) {
      ops.push(...more)
    },
    afterCommit(effect) {
      after.push(effect)
    },
  }
  let result: T
  try {
    result = await body(tx)
    if (ops.length > 0) await storage.commit(ops)
  } catch (error) {
    await onAbort(error)
    throw error
  }
  for (const effect of after) effect()
  return result
}
