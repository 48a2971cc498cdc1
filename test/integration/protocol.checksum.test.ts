/**
 * sync_checksum agrees with the device-side checksumOf over the same rows, per table and per user.
 */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import type { Mutation } from '../../src/core/protocol.js'
import { checksumOf } from '../../src/core/checksum.js'
import { checksum, expectStatus, newUser, pullAll, push, useStack } from '../helpers/stack.js'

const stack = useStack()

describe('sync_checksum', () => {
  it('is zero over no rows', async () => {
    const result = await checksum(stack().createClient(newUser()), ['contacts', 'notes'])
    expect(result).toEqual([
      { table: 'contacts', count: 0, checksum: '0' },
      { table: 'notes', count: 0, checksum: '0' },
    ])
  })

  it('matches checksumOf over the live rows, whatever the writes', async () => {
    const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined
    // Per row: how many updates follow its create, and whether it ends deleted.
    const rowPlan = fc.record({ table: fc.constantFrom('contacts', 'notes'), updates: fc.nat(3), deleted: fc.boolean() })
    await fc.assert(
      fc.asyncProperty(fc.array(rowPlan, { minLength: 1, maxLength: 12 }), async (plans) => {
        const user = newUser()
        const client = stack().createClient(user)
        const clientId = randomUUID()
        let seq = 1
        const created = await push(
          client,
          clientId,
          plans.map((plan): Mutation => ({
            seq: seq++,
            table: plan.table,
            action: 'create',
            id: randomUUID(),
            data: plan.table === 'contacts' ? { name: 'c' } : { body: 'n' },
            baseVersion: null,
          })),
        )
        const ids = created.map((o) => String(expectStatus(o, 'applied').row!.id))
        const followUps: Mutation[] = []
        plans.forEach((plan, i) => {
          for (let u = 0; u < plan.updates; u++) {
            followUps.push({ seq: seq++, table: plan.table, action: 'update', id: ids[i]!, data: {}, baseVersion: null })
          }
          if (plan.deleted) followUps.push({ seq: seq++, table: plan.table, action: 'delete', id: ids[i]!, baseVersion: null })
        })
        if (followUps.length > 0) await push(client, clientId, followUps)

        const expected = (['contacts', 'notes'] as const).map((table) => ({
          table,
          ...checksumOf(
            plans.flatMap((plan, i) =>
              plan.table === table && !plan.deleted ? [{ id: ids[i]!, version: 1 + plan.updates }] : [],
            ),
          ),
        }))
        expect(await checksum(client, ['contacts', 'notes'])).toEqual(expected)

        // A device that pulled everything computes the same figures from what it holds.
        const { changes } = await pullAll(client, ['contacts', 'notes'], null, 100, stack())
        const held = (['contacts', 'notes'] as const).map((table) => ({
          table,
          ...checksumOf(changes.filter((c) => c.table === table && !c.deleted)),
        }))
        expect(held).toEqual(expected)
      }),
      { seed, numRuns: 15 },
    )
  })
})
