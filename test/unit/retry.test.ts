import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { SyncError } from '../../src/core/errors.js'
import type { SyncErrorKind } from '../../src/core/errors.js'
import { createBackoff, decideRetry, resolveBackoffOptions } from '../../src/core/retry.js'
import type { Jitter } from '../../src/core/retry.js'

const fcSeed = process.env.FC_SEED === undefined ? {} : { seed: Number(process.env.FC_SEED) }

const unit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })

describe('createBackoff', () => {
  it('draws every delay within the jitter band under the capped exponential ceiling', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 0, max: 20 }),
        fc.double({ min: 1, max: 4, noNaN: true }),
        fc.constantFrom<Jitter>('full', 'equal', 'none'),
        fc.array(unit, { minLength: 1, maxLength: 40 }),
        (baseMs, capSteps, factor, jitter, draws) => {
          const maxMs = baseMs * 2 ** capSteps
          let i = 0
          const backoff = createBackoff({ baseMs, maxMs, factor, jitter, random: () => draws[i++ % draws.length] as number })
          for (let n = 1; n <= 40; n++) {
            const ceiling = Math.min(maxMs, baseMs * factor ** (n - 1))
            const delay = backoff.next()
            expect(Number.isInteger(delay)).toBe(true)
            expect(delay).toBeLessThanOrEqual(ceiling)
            if (jitter === 'full') expect(delay).toBeGreaterThanOrEqual(0)
            if (jitter === 'equal') expect(delay).toBeGreaterThanOrEqual(Math.floor(ceiling / 2))
            if (jitter === 'none') expect(delay).toBe(Math.floor(ceiling))
            expect(backoff.failures).toBe(n)
          }
        },
      ),
      { ...fcSeed, numRuns: 200 },
    )
  })

  it('grows by the factor until the cap, then stays there', () => {
    const backoff = createBackoff({ baseMs: 100, maxMs: 1000, factor: 3, jitter: 'none' })
    const delays = Array.from({ length: 6 }, () => backoff.next())
    expect(delays).toEqual([100, 300, 900, 1000, 1000, 1000])
  })

  it('never overflows after a very long failure streak', () => {
    const backoff = createBackoff({ baseMs: 1000, maxMs: 60_000, jitter: 'none' })
    for (let i = 0; i < 5000; i++) backoff.next()
    expect(backoff.next()).toBe(60_000)
  })

  it('starts again from the first step after reset()', () => {
    const backoff = createBackoff({ baseMs: 250, jitter: 'none' })
    const first = backoff.next()
    backoff.next()
    backoff.next()
    backoff.reset()
    expect(backoff.failures).toBe(0)
    expect(backoff.next()).toBe(first)
  })

  it('uses the documented defaults', () => {
    const resolved = resolveBackoffOptions()
    expect(resolved).toMatchObject({ baseMs: 1000, maxMs: 5 * 60_000, factor: 2, jitter: 'full' })
    expect(resolved.random).toBe(Math.random)
  })

  it('keeps delays in range when the random source misbehaves', () => {
    for (const value of [Number.NaN, -1, 7, Number.POSITIVE_INFINITY]) {
      const backoff = createBackoff({ baseMs: 1000, maxMs: 8000, random: () => value })
      for (let n = 1; n <= 6; n++) {
        const delay = backoff.next()
        expect(delay).toBeGreaterThanOrEqual(0)
        expect(delay).toBeLessThanOrEqual(Math.min(8000, 1000 * 2 ** (n - 1)))
      }
    }
  })

  it('rejects nonsensical options when created', () => {
    expect(() => createBackoff({ baseMs: 0 })).toThrow(RangeError)
    expect(() => createBackoff({ baseMs: 1000, maxMs: 10 })).toThrow(RangeError)
    expect(() => createBackoff({ factor: 0.5 })).toThrow(RangeError)
    expect(() => createBackoff({ baseMs: Number.NaN })).toThrow(RangeError)
  })
})

describe('decideRetry', () => {
  const fixed = () => createBackoff({ baseMs: 1000, maxMs: 60_000, jitter: 'none' })

  it('backs off on network and server failures, counting each', () => {
    for (const kind of ['network', 'server'] as const) {
      const backoff = fixed()
      const error = new SyncError(kind, 'down')
      expect(decideRetry({ error, backoff, authRefreshed: false })).toEqual({ action: 'backoff', delayMs: 1000 })
      expect(decideRetry({ error, backoff, authRefreshed: false })).toEqual({ action: 'backoff', delayMs: 2000 })
      expect(backoff.failures).toBe(2)
    }
  })

  it('waits at least Retry-After on a rate limit, and at least the backoff', () => {
    fc.assert(
      fc.property(fc.option(fc.integer({ min: 0, max: 10 * 60_000 }), { nil: undefined }), fc.integer({ min: 0, max: 8 }), (retryAfterMs, earlier) => {
        const backoff = fixed()
        for (let i = 0; i < earlier; i++) backoff.next()
        const expectedBackoff = Math.min(60_000, 1000 * 2 ** earlier)
        const decision = decideRetry({ error: new SyncError('rate-limit', 'slow down', { status: 429, retryAfterMs }), backoff, authRefreshed: false })
        expect(decision).toEqual({ action: 'rate-limit', delayMs: Math.max(retryAfterMs ?? 0, expectedBackoff) })
      }),
      { ...fcSeed, numRuns: 100 },
    )
  })

  it('ignores a malformed Retry-After rather than waiting forever or not at all', () => {
    for (const retryAfterMs of [Number.NaN, Number.POSITIVE_INFINITY, -5000]) {
      const decision = decideRetry({ error: new SyncError('rate-limit', 'slow down', { retryAfterMs }), backoff: fixed(), authRefreshed: false })
      expect(decision).toEqual({ action: 'rate-limit', delayMs: 1000 })
    }
  })

  it('refreshes the session on auth, then backs off if the retry after a refresh fails too', () => {
    const backoff = fixed()
    const error = new SyncError('auth', 'jwt expired', { status: 401 })
    expect(decideRetry({ error, backoff, authRefreshed: false })).toEqual({ action: 'refresh-auth' })
    expect(backoff.failures).toBe(0)
    expect(decideRetry({ error, backoff, authRefreshed: true })).toEqual({ action: 'backoff', delayMs: 1000 })
  })

  it('does not retry conflicts or permanent failures', () => {
    for (const kind of ['conflict', 'permanent', 'too-large'] as const) {
      const backoff = fixed()
      expect(decideRetry({ error: new SyncError(kind, 'no'), backoff, authRefreshed: false })).toEqual({ action: 'give-up' })
      expect(backoff.failures).toBe(0)
    }
  })

  it('agrees with SyncError.retryable on which kinds are retried', () => {
    const kinds: SyncErrorKind[] = ['network', 'server', 'auth', 'rate-limit', 'conflict', 'permanent', 'too-large']
    for (const kind of kinds) {
      const error = new SyncError(kind, kind)
      expect(decideRetry({ error, backoff: fixed(), authRefreshed: false }).action !== 'give-up').toBe(error.retryable)
    }
  })
})
