/**
 * Hybrid logical clocks (Kulkarni et al., "Logical Physical Clocks", 2014).
 *
 * A stamp is a string that sorts, as plain text, in clock order:
 *
 *     <wall ms, 15 digits zero-padded>:<counter, 5 digits zero-padded>:<node id>
 *     001718000000000:00003:0b5e2c1a-8f4d-4c1e-9a57-2f0d7c3e9b10
 *
 * The server migration stamps plain-SQL writes in this same format with node id `server`, so the
 * format is part of the protocol: change it only together with `sql/`.
 *
 * Invariants of a clock made by {@link createHlcClock}:
 * - Every stamp `tick()` returns sorts strictly after every stamp it returned before, and after every
 *   stamp passed to `receive()` before (up to the drift limit below), whatever the wall clock does.
 * - The wall part never runs more than `maxDriftMs` ahead of the local wall clock because of a
 *   received stamp. A remote stamp beyond that window is adopted only up to the window's edge
 *   (`receive` reports `'clamped'`), so one device with an absurd clock (year 2100) cannot drag every
 *   other clock with it. Within the window, causality holds: a device that has seen a stamp writes
 *   after it, so a skewed device cannot win "newest" comparisons forever.
 */

/** Largest wall time a stamp can carry (15 decimal digits, about the year 33658). */
export const HLC_MAX_WALL_MS = 999_999_999_999_999
/** Largest counter a stamp can carry (5 decimal digits). */
export const HLC_MAX_COUNTER = 99_999
/** Default `maxDriftMs`: 24 hours. */
export const HLC_DEFAULT_MAX_DRIFT_MS = 24 * 60 * 60 * 1000

/** The parts of a stamp. */
export interface HlcTimestamp {
  /** Milliseconds since the epoch, integer in `[0, HLC_MAX_WALL_MS]`. */
  wallMs: number
  /** Logical counter, integer in `[0, HLC_MAX_COUNTER]`. */
  counter: number
  /** Id of the node that issued the stamp; see {@link isValidHlcNodeId}. */
  nodeId: string
}

/** Why an HLC value or option was refused. */
export type HlcErrorKind = 'invalid-timestamp' | 'invalid-node-id' | 'invalid-option'

/** A programming error: an out-of-range timestamp part, a bad node id or clock option. */
export class HlcError extends Error {
  readonly kind: HlcErrorKind
  constructor(kind: HlcErrorKind, message: string) {
    super(message)
    this.name = 'HlcError'
    this.kind = kind
  }
}

// Node ids are printable ASCII without space or ':' so that (a) text order is the same in every
// runtime and in PostgreSQL under the "C" collation, and (b) the server can split a stamp on ':'.
const NODE_ID = /^[\x21-\x39\x3b-\x7e]{1,128}$/
const STAMP = /^(\d{15}):(\d{5}):([\x21-\x39\x3b-\x7e]{1,128})$/

/** Whether `nodeId` can appear in a stamp: 1–128 printable ASCII characters, no space, no `:`. */
export function isValidHlcNodeId(nodeId: string): boolean {
  return NODE_ID.test(nodeId)
}

/** Encode a timestamp. Throws {@link HlcError} when a part is out of range. */
export function encodeHlc(timestamp: HlcTimestamp): string {
  const { wallMs, counter, nodeId } = timestamp
  if (!Number.isInteger(wallMs) || wallMs < 0 || wallMs > HLC_MAX_WALL_MS) {
    throw new HlcError('invalid-timestamp', `HLC wall time out of range: ${String(wallMs)}`)
  }
  if (!Number.isInteger(counter) || counter < 0 || counter > HLC_MAX_COUNTER) {
    throw new HlcError('invalid-timestamp', `HLC counter out of range: ${String(counter)}`)
  }
  if (!isValidHlcNodeId(nodeId)) throw new HlcError('invalid-node-id', `invalid HLC node id: ${JSON.stringify(nodeId)}`)
  return `${String(wallMs).padStart(15, '0')}:${String(counter).padStart(5, '0')}:${nodeId}`
}

/** Decode a stamp; `null` when it is not a well-formed stamp (never throws). */
export function decodeHlc(stamp: unknown): HlcTimestamp | null {
  if (typeof stamp !== 'string') return null
  const m = STAMP.exec(stamp)
  if (!m) return null
  return { wallMs: Number(m[1]), counter: Number(m[2]), nodeId: m[3]! }
}

/** Whether `stamp` is a well-formed stamp. */
export function isHlc(stamp: unknown): stamp is string {
  return typeof stamp === 'string' && STAMP.test(stamp)
}

/**
 * Total order on stamps: -1, 0 or 1 as `a` sorts before, equal to, or after `b`. Well-formed stamps
 * compare as text (the encoding makes that the clock order; equal wall and counter fall back to the
 * node id, so distinct nodes never tie). `null`, `undefined` and malformed values sort before every
 * well-formed stamp and equal to each other, so a missing stamp never wins a "newest" comparison.
 */
export function compareHlc(a: string | null | undefined, b: string | null | undefined): -1 | 0 | 1 {
  const va = isHlc(a)
  const vb = isHlc(b)
  if (!va || !vb) return va === vb ? 0 : va ? 1 : -1
  return a < b ? -1 : a > b ? 1 : 0
}

/** Options of {@link createHlcClock}. */
export interface HlcClockOptions {
  /** This node's id (for a device: its client id). See {@link isValidHlcNodeId}. */
  nodeId: string
  /** Wall clock, ms since epoch (e.g. `environment.now`). */
  now: () => number
  /**
   * How far ahead of the local wall clock a received stamp may pull this clock (default 24 h).
   * A day covers clocks set by hand in the wrong time zone (up to ±14 h) while keeping stamps within
   * a day of real time when some device's clock is absurd.
   */
  maxDriftMs?: number
  /**
   * The last stamp this node issued or adopted before a restart (persist `peek()`); the clock resumes
   * after it, so stamps stay monotonic even if the wall clock was set back while the app was closed.
   * Malformed values are ignored.
   */
  last?: string | null
}

/** What `receive` did with a remote stamp. */
export type HlcReceiveResult =
  /** The clock now sorts at or after the remote stamp. */
  | 'ok'
  /** The remote stamp was too far in the future; the clock advanced only to `now + maxDriftMs`. */
  | 'clamped'
  /** Not a well-formed stamp (or `null`); the clock is unchanged. */
  | 'malformed'

/** A hybrid logical clock for one node. */
export interface HlcClock {
  readonly nodeId: string
  /** Stamp a local event; strictly after everything issued or received before. */
  tick(): string
  /** Merge a stamp seen from elsewhere (a server answer, a pulled change). Never throws. */
  receive(remote: string | null | undefined): HlcReceiveResult
  /** The latest stamp issued or adopted (wall 0, counter 0 before the first); does not advance. */
  peek(): string
}

interface ResolvedClockOptions {
  nodeId: string
  now: () => number
  maxDriftMs: number
  last: HlcTimestamp | null
}

function resolveClockOptions(options: HlcClockOptions): ResolvedClockOptions {
  if (!isValidHlcNodeId(options.nodeId)) {
    throw new HlcError('invalid-node-id', `invalid HLC node id: ${JSON.stringify(options.nodeId)}`)
  }
  const maxDriftMs = options.maxDriftMs ?? HLC_DEFAULT_MAX_DRIFT_MS
  if (!(maxDriftMs >= 0) || !Number.isFinite(maxDriftMs)) {
    throw new HlcError('invalid-option', `maxDriftMs must be a finite number >= 0, got ${String(maxDriftMs)}`)
  }
  return { nodeId: options.nodeId, now: options.now, maxDriftMs, last: decodeHlc(options.last) }
}

/**
 * Create a hybrid logical clock.
 *
 * State is `(l, c)`: the largest wall time seen and a counter that orders events within one `l`.
 * `tick` sets `l = max(l, now)` and bumps `c` when `l` did not move; `receive` sets
 * `l = max(l, remote.l, now)` and picks `c` so the new state sorts after both (standard HLC rules).
 * When the counter would pass {@link HLC_MAX_COUNTER} the wall part moves on by 1 ms instead, which
 * keeps the fixed-width encoding and the order.
 */
export function createHlcClock(options: HlcClockOptions): HlcClock {
  const { nodeId, now, maxDriftMs, last } = resolveClockOptions(options)
  let l = last?.wallMs ?? 0
  let c = last?.counter ?? 0

  // A wall clock that returns garbage must not corrupt the state: treat it as "no progress".
  function wall(): number {
    const t = Math.floor(now())
    if (!Number.isFinite(t)) return l
    return Math.min(Math.max(t, 0), HLC_MAX_WALL_MS)
  }

  function set(nextL: number, nextC: number): void {
    if (nextC > HLC_MAX_COUNTER) {
      l = Math.min(nextL + 1, HLC_MAX_WALL_MS)
      c = 0
    } else {
      l = nextL
      c = nextC
    }
  }

  const peek = (): string => encodeHlc({ wallMs: l, counter: c, nodeId })

  return {
    nodeId,
    tick() {
      const pt = wall()
      if (pt > l) set(pt, 0)
      else set(l, c + 1)
      return peek()
    },
    receive(remote) {
      const r = decodeHlc(remote)
      if (!r) return 'malformed'
      const pt = wall()
      const limit = Math.min(pt + maxDriftMs, HLC_MAX_WALL_MS)
      const clamped = r.wallMs > limit
      const rl = clamped ? limit : r.wallMs
      const rc = clamped ? 0 : r.counter
      const nl = Math.max(l, rl, pt)
      if (nl === l && nl === rl) set(nl, Math.max(c, rc) + 1)
      else if (nl === l) set(nl, c + 1)
      else if (nl === rl) set(nl, rc + 1)
      else set(nl, 0)
      return clamped ? 'clamped' : 'ok'
    },
    peek,
  }
}
