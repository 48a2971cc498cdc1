/**
 * The local stack itself: a Supabase-shaped API, isolation between concurrent stacks, the token
 * endpoint, schema reloads, and that stopping (or dying) leaves nothing running.
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import pg from 'pg'
import { startLocalStack } from '../../src/testing/index.js'
import { createContact, expectStatus, newUser, onRealPostgres, push, useStack } from '../helpers/stack.js'

const stack = useStack()

/** Whether anything accepts HTTP connections at `url`. */
async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
    await res.body?.cancel()
    return true
  } catch {
    return false
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return check()
}

describe('startLocalStack', () => {
  it('serves a Supabase-shaped API over the chosen database', async () => {
    const s = stack()
    expect(s.kind).toBe(onRealPostgres ? 'postgres' : 'pglite')
    const user = newUser()
    const claims = JSON.parse(Buffer.from(s.signJwt(user).split('.')[1]!, 'base64url').toString('utf8'))
    expect(claims).toMatchObject({ sub: user, role: 'authenticated', aud: 'authenticated' })
    expect(claims.exp - claims.iat).toBe(3600)

    const client = s.createClient(user)
    const inserted = await client.from('contacts').insert({ name: 'rest' }).select().single()
    expect(inserted.error).toBeNull()
    expect(inserted.data).toMatchObject({ name: 'rest', user_id: user, _version: 1, _deleted: false })

    const db = new pg.Client({ connectionString: s.databaseUrl })
    await db.connect()
    try {
      const { rows } = await db.query('select name from contacts where user_id = $1', [user])
      expect(rows).toEqual([{ name: 'rest' }])
    } finally {
      await db.end()
    }
  })

  it('refreshes a session through the gateway token endpoint', async () => {
    const { client, userId } = await stack().createSessionClient(`${randomUUID()}@example.com`)
    const first = (await client.auth.getSession()).data.session!
    const refreshed = await client.auth.refreshSession()
    expect(refreshed.error).toBeNull()
    expect(refreshed.data.session?.access_token).toBeDefined()
    expect(refreshed.data.session?.refresh_token).not.toBe(first.refresh_token)
    expect(refreshed.data.user?.id).toBe(userId)

    const [outcome] = await push(client, randomUUID(), [createContact(1)])
    expect(expectStatus(outcome, 'applied').row).toMatchObject({ user_id: userId })

    // Refresh tokens are single use.
    const reused = await fetch(`${stack().url}/auth/v1/token?grant_type=refresh_token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', apikey: stack().anonKey },
      body: JSON.stringify({ refresh_token: first.refresh_token }),
    })
    expect(reused.status).toBe(400)
  })

  it('picks up DDL after reloadSchema', async () => {
    const s = stack()
    await s.query(`
      create table public.gadgets (id uuid primary key, user_id uuid default auth.uid(), label text);
      alter table public.gadgets enable row level security;
      create policy gadgets_own on public.gadgets using (user_id = auth.uid()) with check (user_id = auth.uid());
      grant all on public.gadgets to authenticated;
      select sync_enable_table('public.gadgets');
    `)
    await s.reloadSchema()
    const client = s.createClient(newUser())
    const [outcome] = await push(client, randomUUID(), [
      { seq: 1, table: 'gadgets', action: 'create', id: randomUUID(), data: { label: 'g' }, baseVersion: null },
    ])
    expectStatus(outcome, 'applied')
    const listed = await client.from('gadgets').select('label')
    expect(listed.data).toEqual([{ label: 'g' }])
  })

  it('runs stacks side by side in isolation, and stop() removes everything', async () => {
    const other = await startLocalStack()
    let stopped = false
    try {
      expect(other.url).not.toBe(stack().url)
      expect(other.jwtSecret).not.toBe(stack().jwtSecret)
      const user = newUser()
      await push(other.createClient(user), randomUUID(), [createContact(1)])
      expect(await other.query('select 1 from contacts where user_id = $1', [user])).toHaveLength(1)
      expect(await stack().query('select 1 from contacts where user_id = $1', [user])).toHaveLength(0)

      // A token of one stack means nothing to another.
      const foreign = await other.createClient(user).rpc('sync_pull', { p_tables: ['contacts'], p_cursor: null, p_limit: 1 })
      expect(foreign.error).toBeNull()
      const crossed = await fetch(`${stack().url}/rest/v1/rpc/sync_pull`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${other.signJwt(user)}` },
        body: JSON.stringify({ p_tables: ['contacts'], p_cursor: null, p_limit: 1 }),
      })
      expect(crossed.status).toBe(401)

      const database = new URL(other.databaseUrl).pathname.slice(1)
      await other.stop()
      await other.stop()
      stopped = true
      expect(await answers(other.url)).toBe(false)
      expect(await answers(other.postgrestUrl)).toBe(false)
      if (other.kind === 'postgres') {
        const left = await stack().query('select datname from pg_database where datname = $1', [database])
        expect(left).toEqual([])
        const roles = await stack().query('select rolname from pg_roles where rolname = $1', [`${database}_authenticator`])
        expect(roles).toEqual([])
      }
    } finally {
      if (!stopped) await other.stop()
    }
    // The first stack is unaffected.
    expect(await answers(stack().postgrestUrl)).toBe(true)
  })

  it('re-applies the migration without losing rows or push records', async () => {
    const s = stack()
    const user = newUser()
    const client = s.createClient(user)
    const clientId = randomUUID()
    const batch = [createContact(1, { name: 'kept' })]
    const first = await push(client, clientId, batch)
    await s.query(readFileSync(fileURLToPath(new URL('../../sql/sync_orchestrator.sql', import.meta.url)), 'utf8'))
    await s.query(`select sync_enable_table('public.contacts')`)
    await s.reloadSchema()
    expect(await push(client, clientId, batch)).toEqual(first)
    expect(await s.query('select name, _version from contacts where user_id = $1', [user])).toEqual([{ name: 'kept', _version: '1' }])
  })

  it.skipIf(onRealPostgres)('persists a PGlite database in dataDir across restarts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stack-data-'))
    try {
      const user = newUser()
      const first = await startLocalStack({ dataDir: dir })
      try {
        await push(first.createClient(user), randomUUID(), [createContact(1, { name: 'durable' })])
      } finally {
        await first.stop()
      }
      const second = await startLocalStack({ dataDir: dir })
      try {
        expect(second.kind).toBe('pglite')
        const { data } = await second.createClient(user).from('contacts').select('name')
        expect(data).toEqual([{ name: 'durable' }])
      } finally {
        await second.stop()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('explains a missing PostgREST binary, and one that fails, with its output', async () => {
    await expect(startLocalStack({ postgrestBin: '/nonexistent/postgrest' })).rejects.toThrow(
      /PostgREST executable not found.*\/nonexistent\/postgrest/,
    )
    const dir = mkdtempSync(join(tmpdir(), 'stack-test-'))
    const failing = join(dir, 'postgrest')
    writeFileSync(failing, '#!/bin/sh\necho "cannot start: port exploded" >&2\nexit 1\n', { mode: 0o755 })
    try {
      await expect(startLocalStack({ postgrestBin: failing })).rejects.toThrow(/exited during startup[\s\S]*port exploded/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it(`leaves no PostgREST behind when its process dies (${signal})`, async () => {
      const script = fileURLToPath(new URL('../helpers/stackProcess.ts', import.meta.url))
      const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env })
      let stderr = ''
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      const line = await new Promise<string>((resolve, reject) => {
        let out = ''
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString()
          if (out.includes('\n')) resolve(out.split('\n')[0]!)
        })
        child.once('exit', (code) => reject(new Error(`stack process exited (${code}): ${stderr}`)))
      })
      const { postgrestUrl, databaseUrl } = JSON.parse(line) as { postgrestUrl: string; databaseUrl: string }
      expect(await answers(postgrestUrl)).toBe(true)

      child.kill(signal)
      await exited
      expect(await waitUntil(async () => !(await answers(postgrestUrl)), 10_000)).toBe(true)

      if (onRealPostgres) {
        const name = new URL(databaseUrl).pathname.slice(1)
        if (signal === 'SIGTERM') {
          // A terminated process stops its stacks, dropping their databases.
          expect(await stack().query('select 1 from pg_database where datname = $1', [name])).toEqual([])
        } else {
          // A killed process cannot drop its database; a later stack sweeps it once it is old.
          await stack().query(`drop database if exists "${name}" with (force)`)
          await stack().query(`drop role if exists "${name}_authenticator"`)
        }
      }
    })
  }
})
