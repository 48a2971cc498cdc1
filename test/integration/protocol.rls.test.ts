/**
 * Row level security and authentication around the sync RPCs: a user reads and writes only their
 * own rows, anon is refused, and bad JWTs fail with 401 before reaching the database.
 */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createClient } from '@supabase/supabase-js'
import type { SupabaseClient } from '@supabase/supabase-js'
import ws from 'ws'
import pg from 'pg'
import { createContact, expectStatus, newUser, pullAll, push, useStack } from '../helpers/stack.js'

const stack = useStack()

/** Two users, each with one contact. */
async function twoUsers() {
  const a = newUser()
  const b = newUser()
  const clientA = stack().createClient(a)
  const clientB = stack().createClient(b)
  const rowA = randomUUID()
  const rowB = randomUUID()
  await push(clientA, randomUUID(), [createContact(1, { name: 'of a' }, rowA)])
  await push(clientB, randomUUID(), [createContact(1, { name: 'of b' }, rowB)])
  return { a, b, clientA, clientB, rowA, rowB }
}

async function rowOf(id: string) {
  const [row] = await stack().query<{ name: string; _version: string; _deleted: boolean; user_id: string }>(
    'select name, _version, _deleted, user_id from contacts where id = $1',
    [id],
  )
  return row
}

describe('row level security', () => {
  it("never pulls another user's rows", async () => {
    const { clientA, rowA, rowB } = await twoUsers()
    const { changes } = await pullAll(clientA, ['contacts'], null, 1000, stack())
    const ids = changes.map((c) => c.id)
    expect(ids).toContain(rowA)
    expect(ids).not.toContain(rowB)
    expect(changes.every((c) => c.row.user_id === changes[0]!.row.user_id)).toBe(true)
  })

  it("cannot create (forged owner), update or delete another user's rows", async () => {
    const { b, clientA, rowB } = await twoUsers()
    const before = await rowOf(rowB)
    const forged = randomUUID()
    const outcomes = await push(clientA, randomUUID(), [
      createContact(1, { name: 'forged', user_id: b }, forged),
      { seq: 2, table: 'contacts', action: 'update', id: rowB, data: { name: 'hijacked' }, baseVersion: null },
      { seq: 3, table: 'contacts', action: 'update', id: rowB, data: { name: 'hijacked' }, baseVersion: 1 },
      { seq: 4, table: 'contacts', action: 'delete', id: rowB, baseVersion: null },
      createContact(5, { name: 'same id as b' }, rowB),
    ])
    expect(expectStatus(outcomes[0], 'rejected').code).toBe('42501')
    expect(expectStatus(outcomes[1], 'rejected').code).toBe('P0002')
    expect(expectStatus(outcomes[2], 'rejected').code).toBe('P0002')
    expect(expectStatus(outcomes[3], 'rejected').code).toBe('P0002')
    // The id exists but is invisible: the key violation says nothing about B's row.
    const dup = expectStatus(outcomes[4], 'rejected')
    expect(dup.code).toBe('23505')
    expect(dup.message).not.toContain('of b')

    expect(await stack().query('select 1 from contacts where id = $1', [forged])).toHaveLength(0)
    expect(await rowOf(rowB)).toEqual(before)
    expect(before).toMatchObject({ name: 'of b', _version: '1', _deleted: false, user_id: b })
  })

  it("cannot move its own row to another user", async () => {
    const { a, b, clientA, rowA } = await twoUsers()
    const [outcome] = await push(clientA, randomUUID(), [
      { seq: 1, table: 'contacts', action: 'update', id: rowA, data: { user_id: b }, baseVersion: null },
    ])
    expect(expectStatus(outcome, 'rejected').code).toBe('42501')
    expect((await rowOf(rowA))?.user_id).toBe(a)
  })

  it('keeps idempotency records per user: the same client id and seq do not collide', async () => {
    const a = newUser()
    const b = newUser()
    const sharedClient = randomUUID()
    const [outA] = await push(stack().createClient(a), sharedClient, [createContact(1, { name: 'a' })])
    const [outB] = await push(stack().createClient(b), sharedClient, [createContact(1, { name: 'b' })])
    expect(expectStatus(outA, 'applied').row).toMatchObject({ name: 'a', user_id: a })
    expect(expectStatus(outB, 'applied').row).toMatchObject({ name: 'b', user_id: b })

    // Through SQL as user a: only a's records are visible.
    const session = new pg.Client({ connectionString: stack().databaseUrl })
    await session.connect()
    try {
      await session.query('begin')
      await session.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: a, role: 'authenticated' })])
      await session.query('set local role authenticated')
      const { rows } = await session.query('select user_id from sync.idempotency where client_id = $1', [sharedClient])
      expect(rows).toEqual([{ user_id: a }])
      await session.query('rollback')
    } finally {
      await session.end()
    }
  })

  it('lets the service role read every row', async () => {
    const { rowA, rowB } = await twoUsers()
    const service = createClient(stack().url, stack().serviceRoleKey, {
      auth: { persistSession: false, autoRefreshToken: false },
      realtime: { transport: ws as any },
    })
    const { data, error } = await service.from('contacts').select('id').in('id', [rowA, rowB])
    expect(error).toBeNull()
    expect(data).toHaveLength(2)
  })
})

describe('authentication', () => {
  const call = (client: SupabaseClient) =>
    client.rpc('sync_pull', { p_tables: ['contacts'], p_cursor: null, p_limit: 10 })

  it('refuses anon', async () => {
    const anon = createClient(stack().url, stack().anonKey, {
      auth: { persistSession: false, autoRefreshToken: false },
      realtime: { transport: ws as any },
    })
    for (const result of [
      await call(anon),
      await anon.rpc('sync_push', { p_client_id: randomUUID(), p_mutations: [] }),
      await anon.rpc('sync_checksum', { p_tables: ['contacts'] }),
    ]) {
      expect(result.error?.code).toBe('42501')
      expect(result.status).toBe(401)
    }
  })

  it('fails an expired JWT with 401', async () => {
    // PostgREST allows 30 s of clock skew; this token expired well before that.
    const expired = stack().createClient(newUser(), { expiresInSeconds: -120 })
    const result = await call(expired)
    expect(result.status).toBe(401)
    expect(result.error?.code).toBe('PGRST301')
  })

  it('fails a tampered or foreign JWT with 401', async () => {
    const { a, b, rowB } = await twoUsers()
    const token = stack().signJwt(a)
    const [header, payload, signature] = token.split('.') as [string, string, string]
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    const forgedPayload = Buffer.from(JSON.stringify({ ...claims, sub: b })).toString('base64url')
    const withToken = (jwt: string) =>
      createClient(stack().url, stack().anonKey, {
        auth: { persistSession: false, autoRefreshToken: false },
        realtime: { transport: ws as any },
        global: { headers: { Authorization: `Bearer ${jwt}` } },
      })

    const tampered = await call(withToken(`${header}.${forgedPayload}.${signature}`))
    expect(tampered.status).toBe(401)
    expect(tampered.data).toBeNull()

    const badSignature = await call(withToken(`${header}.${payload}.${signature.slice(0, -4)}AAAA`))
    expect(badSignature.status).toBe(401)

    // The untampered token still works, and sees only a's rows.
    const honest = await call(withToken(token))
    expect(honest.error).toBeNull()
    expect(JSON.stringify(honest.data)).not.toContain(rowB)
  })
})
