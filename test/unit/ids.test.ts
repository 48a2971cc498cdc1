import { afterEach, describe, expect, it, vi } from 'vitest'
import { randomUuid } from '../../src/core/ids.js'

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('randomUuid', () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it('spells the random bytes in order, with the version and variant bits set', () => {
    vi.spyOn(globalThis.crypto, 'getRandomValues').mockImplementation(<T extends ArrayBufferView | null>(array: T): T => {
      const bytes = array as unknown as Uint8Array
      for (let i = 0; i < bytes.length; i++) bytes[i] = i * 17
      return array
    })
    // Byte 6 (0x66) keeps its low nibble under version 4; byte 8 (0x88) keeps its low six bits
    // under variant 10.
    expect(randomUuid()).toBe('00112233-4455-4677-8899-aabbccddeeff')
  })

  it('gives well-formed, distinct version 4 UUIDs', () => {
    const ids = Array.from({ length: 10_000 }, () => randomUuid())
    for (const id of ids) expect(id).toMatch(UUID_V4)
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('falls back to Math.random where crypto.getRandomValues is missing', () => {
    vi.spyOn(globalThis, 'crypto', 'get').mockReturnValue(undefined as unknown as Crypto)
    vi.spyOn(Math, 'random').mockReturnValue(0.5)
    expect(randomUuid()).toBe('80808080-8080-4080-8080-808080808080')
  })
})
