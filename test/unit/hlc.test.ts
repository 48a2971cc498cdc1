import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import {
  HLC_DEFAULT_MAX_DRIFT_MS,
  HLC_MAX_COUNTER,
  HLC_MAX_WALL_MS,
  HlcError,
  compareHlc,
  createHlcClock,
  decodeHlc,
  encodeHlc,
  isHlc,
} from '../../src/core/hlc.js'

// Replay a failing property with FC_SEED=<seed printed in the failure>.
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)
const params = (numRuns: number) => ({ seed, numRuns })

const HOUR = 60 * 60 * 1000
const T0 = Date.UTC(2024, 5, 1)

/** A wall clock the test moves by hand. */
function manualClock(start: number) {
  let t = start
  return {
    now: () => t,
    set: (v: number) => {
      t = v
    },
    advance: (ms: number) => {
      t += ms
    },
  }
}

const nodeIdArb = fc.stringMatching(/^[a-z0-9-]{1,12}$/)
const stampArb = fc.record({
  wallMs: fc.integer({ min: 0, max: HLC_MAX_WALL_MS }),
  counter: fc.integer({ min: 0, max: HLC_MAX_COUNTER }),
  nodeId: nodeIdArb,
})

describe('encodeHlc / decodeHlc', () => {
  it('encodes in the fixed-width format shared with the server', () => {
    expect(encodeHlc({ wallMs: T0, counter: 7, nodeId: 'server' })).toBe(`00${T0}:00007:server`)
    expect(encodeHlc({ wallMs: 0, counter: 0, nodeId: 'a' })).toBe('000000000000000:00000:a')
  })

  it('round-trips every valid timestamp', () => {
    fc.assert(
      fc.property(stampArb, (ts) => {
        expect(decodeHlc(encodeHlc(ts))).toEqual(ts)
      }),
      params(300),
    )
  })

  it('sorts as text exactly in (wall, counter, node) order', () => {
    const tuple = (a: { wallMs: number; counter: number; nodeId: string }, b: typeof a) =>
      Math.sign(a.wallMs - b.wallMs) || Math.sign(a.counter - b.counter) || (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0)
    fc.assert(
      fc.property(stampArb, stampArb, (a, b) => {
        expect(compareHlc(encodeHlc(a), encodeHlc(b))).toBe(tuple(a, b))
        const sorted = [encodeHlc(a), encodeHlc(b)].sort()
        expect(compareHlc(sorted[0], sorted[1])).toBeLessThanOrEqual(0)
      }),
      params(300),
    )
  })

  it.each([
    ['', 'empty'],
    ['00000000000000:00000:a', 'short wall'],
    ['0000000000000000:00000:a', 'long wall'],
    ['000000000000000:0000:a', 'short counter'],
    ['000000000000000:00000:', 'empty node'],
    ['000000000000000:00000:a b', 'space in node'],
    ['000000000000000:00000:a:b', 'colon in node'],
    ['-00000000000000:00000:a', 'sign'],
    [' 000000000000000:00000:a', 'leading space'],
  ])('rejects %j (%s)', (stamp) => {
    expect(decodeHlc(stamp)).toBeNull()
    expect(isHlc(stamp)).toBe(false)
  })

  it('rejects non-strings without throwing', () => {
    for (const v of [null, undefined, 42, {}, ['000000000000000:00000:a']]) expect(decodeHlc(v)).toBeNull()
  })

  it('refuses out-of-range parts with a typed error', () => {
    const bad = [
      { wallMs: -1, counter: 0, nodeId: 'a' },
      { wallMs: HLC_MAX_WALL_MS + 1, counter: 0, nodeId: 'a' },
      { wallMs: 1.5, counter: 0, nodeId: 'a' },
      { wallMs: 0, counter: HLC_MAX_COUNTER + 1, nodeId: 'a' },
      { wallMs: 0, counter: 0, nodeId: 'has:colon' },
      { wallMs: 0, counter: 0, nodeId: '' },
    ]
    for (const ts of bad) {
      expect(() => encodeHlc(ts)).toThrow(HlcError)
    }
  })
})

describe('compareHlc', () => {
  it('puts missing and malformed stamps before every valid one, equal to each other', () => {
    const valid = encodeHlc({ wallMs: 0, counter: 0, nodeId: 'a' })
    for (const missing of [null, undefined, 'garbage']) {
      expect(compareHlc(missing, valid)).toBe(-1)
      expect(compareHlc(valid, missing)).toBe(1)
      expect(compareHlc(missing, null)).toBe(0)
    }
  })

  it('breaks equal wall and counter by node id', () => {
    const a = encodeHlc({ wallMs: T0, counter: 3, nodeId: 'device-a' })
    const b = encodeHlc({ wallMs: T0, counter: 3, nodeId: 'device-b' })
    expect(compareHlc(a, b)).toBe(-1)
    expect(compareHlc(b, a)).toBe(1)
    expect(compareHlc(a, a)).toBe(0)
  })
})

describe('createHlcClock', () => {
  it('validates its options', () => {
    expect(() => createHlcClock({ nodeId: 'a:b', now: () => 0 })).toThrow(HlcError)
    expect(() => createHlcClock({ nodeId: 'a', now: () => 0, maxDriftMs: -1 })).toThrow(HlcError)
    expect(() => createHlcClock({ nodeId: 'a', now: () => 0, maxDriftMs: Number.NaN })).toThrow(HlcError)
  })

  it('follows the wall clock while it moves forward', () => {
    const wall = manualClock(T0)
    const clock = createHlcClock({ nodeId: 'a', now: wall.now })
    expect(decodeHlc(clock.tick())).toEqual({ wallMs: T0, counter: 0, nodeId: 'a' })
    expect(decodeHlc(clock.tick())).toEqual({ wallMs: T0, counter: 1, nodeId: 'a' })
    wall.advance(5)
    expect(decodeHlc(clock.tick())).toEqual({ wallMs: T0 + 5, counter: 0, nodeId: 'a' })
  })

  it('stays strictly monotonic when the wall clock goes backwards', () => {
    const wall = manualClock(T0)
    const clock = createHlcClock({ nodeId: 'a', now: wall.now })
    const first = clock.tick()
    wall.set(T0 - HOUR)
    const second = clock.tick()
    const third = clock.tick()
    expect(compareHlc(second, first)).toBe(1)
    expect(compareHlc(third, second)).toBe(1)
    // The wall part holds at the latest value seen rather than following the clock back.
    expect(decodeHlc(third)?.wallMs).toBe(T0)
  })

  it('ignores a wall clock that returns garbage', () => {
    let t = T0
    const clock = createHlcClock({ nodeId: 'a', now: () => t })
    const first = clock.tick()
    t = Number.NaN
    const second = clock.tick()
    expect(compareHlc(second, first)).toBe(1)
    expect(decodeHlc(second)?.wallMs).toBe(T0)
  })

  it('moves the wall part on by 1 ms when the counter is full, keeping the order', () => {
    const last = encodeHlc({ wallMs: T0, counter: HLC_MAX_COUNTER, nodeId: 'a' })
    const clock = createHlcClock({ nodeId: 'a', now: () => T0, last })
    const next = clock.tick()
    expect(decodeHlc(next)).toEqual({ wallMs: T0 + 1, counter: 0, nodeId: 'a' })
    expect(compareHlc(next, last)).toBe(1)
  })

  it('resumes after a persisted stamp even when the wall clock was set back across a restart', () => {
    const before = createHlcClock({ nodeId: 'a', now: () => T0 })
    before.tick()
    const persisted = before.peek()
    const after = createHlcClock({ nodeId: 'a', now: () => T0 - HOUR, last: persisted })
    expect(after.peek()).toBe(persisted)
    expect(compareHlc(after.tick(), persisted)).toBe(1)
  })

  it('peek does not advance the clock', () => {
    const clock = createHlcClock({ nodeId: 'a', now: () => T0 })
    const stamp = clock.tick()
    expect(clock.peek()).toBe(stamp)
    expect(clock.peek()).toBe(stamp)
  })

  it('after receive, local ticks sort after the received stamp', () => {
    const wall = manualClock(T0)
    const clock = createHlcClock({ nodeId: 'a', now: wall.now })
    const remote = encodeHlc({ wallMs: T0 + 10 * 60_000, counter: 42, nodeId: 'b' })
    expect(clock.receive(remote)).toBe('ok')
    expect(compareHlc(clock.peek(), remote)).toBe(1)
    expect(compareHlc(clock.tick(), remote)).toBe(1)
    // Equal wall and higher remote counter.
    const sameWall = encodeHlc({ wallMs: decodeHlc(clock.peek())!.wallMs, counter: 900, nodeId: '0' })
    clock.receive(sameWall)
    expect(compareHlc(clock.tick(), sameWall)).toBe(1)
  })

  it('leaves the state alone on a malformed stamp', () => {
    const clock = createHlcClock({ nodeId: 'a', now: () => T0 })
    const stamp = clock.tick()
    expect(clock.receive('999999999999999:99999')).toBe('malformed')
    expect(clock.receive(null)).toBe('malformed')
    expect(clock.peek()).toBe(stamp)
  })

  it('is not dragged beyond maxDriftMs by a stamp from an absurd clock', () => {
    const wall = manualClock(T0)
    const clock = createHlcClock({ nodeId: 'a', now: wall.now })
    const absurd = encodeHlc({ wallMs: Date.UTC(2100, 0, 1), counter: 0, nodeId: 'broken' })
    expect(clock.receive(absurd)).toBe('clamped')
    const wallPart = decodeHlc(clock.tick())!.wallMs
    expect(wallPart).toBeLessThanOrEqual(T0 + HLC_DEFAULT_MAX_DRIFT_MS)
    expect(wallPart).toBeGreaterThanOrEqual(T0 + HLC_DEFAULT_MAX_DRIFT_MS)
    // Once real time has passed the window, the clock follows real time again.
    wall.set(T0 + 2 * HLC_DEFAULT_MAX_DRIFT_MS)
    expect(decodeHlc(clock.tick())!.wallMs).toBe(T0 + 2 * HLC_DEFAULT_MAX_DRIFT_MS)
  })

  it('honours a custom maxDriftMs', () => {
    const clock = createHlcClock({ nodeId: 'a', now: () => T0, maxDriftMs: 1000 })
    expect(clock.receive(encodeHlc({ wallMs: T0 + 999, counter: 0, nodeId: 'b' }))).toBe('ok')
    expect(clock.receive(encodeHlc({ wallMs: T0 + 5000, counter: 0, nodeId: 'b' }))).toBe('clamped')
    expect(decodeHlc(clock.peek())!.wallMs).toBe(T0 + 1000)
  })

  it.each([
    ['+1 h', HOUR, -HOUR],
    ['-1 h', -HOUR, HOUR],
  ])('a device %s skewed writes after a stamp it has received, and so does the other', (_label, skewA, skewB) => {
    // Two devices whose wall clocks disagree by two hours; real time advances one minute per step.
    let real = T0
    const a = createHlcClock({ nodeId: 'device-a', now: () => real + skewA })
    const b = createHlcClock({ nodeId: 'device-b', now: () => real + skewB })

    const aEdit = a.tick()
    real += 60_000
    b.receive(aEdit)
    const bEdit = b.tick()
    expect(compareHlc(bEdit, aEdit)).toBe(1)

    real += 60_000
    a.receive(bEdit)
    const aLater = a.tick()
    expect(compareHlc(aLater, bEdit)).toBe(1)
  })

  it('ticks stay strictly increasing and after every received stamp, whatever the wall clock does', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('tick' as const) }),
      fc.record({ kind: fc.constant('jump' as const), ms: fc.integer({ min: -3 * HOUR, max: 3 * HOUR }) }),
      fc.record({
        kind: fc.constant('receive' as const),
        offset: fc.integer({ min: -3 * HOUR, max: 3 * HOUR }),
        counter: fc.integer({ min: 0, max: HLC_MAX_COUNTER }),
        nodeId: nodeIdArb,
      }),
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const wall = manualClock(T0)
        const clock = createHlcClock({ nodeId: 'self', now: wall.now })
        let highest: string | null = null
        for (const o of ops) {
          if (o.kind === 'jump') wall.advance(o.ms)
          else if (o.kind === 'receive') {
            const stamp = encodeHlc({ wallMs: wall.now() + o.offset, counter: o.counter, nodeId: o.nodeId })
            expect(clock.receive(stamp)).toBe('ok')
            if (compareHlc(stamp, highest) > 0) highest = stamp
          } else {
            const stamp = clock.tick()
            expect(compareHlc(stamp, highest)).toBe(1)
            highest = stamp
          }
        }
      }),
      params(200),
    )
  })
})
