/**
 * Random identifiers without platform APIs beyond `crypto.getRandomValues`, which every target
 * (browsers, Node 20, React Native with a polyfill) provides; falls back to `Math.random` only
 * where it is missing, since ids here need uniqueness, not secrecy.
 */
function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n)
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto
  if (c?.getRandomValues) c.getRandomValues(bytes)
  else for (let i = 0; i < n; i++) bytes[i] = Math.floor(Math.random() * 256)
  return bytes
}

/** Lowercase hex digits' char codes. */
const HEX = Array.from('0123456789abcdef', (ch) => ch.charCodeAt(0))

/**
 * A random RFC 4122 version 4 UUID, built as one flat string: a string joined from parts stays a
 * tree of them in V8, and every map lookup that meets an equal key walks that tree to compare.
 */
export function randomUuid(): string {
  const b = randomBytes(16)
  b[6] = (b[6]! & 0x0f) | 0x40
  b[8] = (b[8]! & 0x3f) | 0x80
  const codes: number[] = []
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) codes.push(45)
    codes.push(HEX[b[i]! >> 4]!, HEX[b[i]! & 15]!)
  }
  return String.fromCharCode(...codes)
}
