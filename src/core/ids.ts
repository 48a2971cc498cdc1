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

/** A random RFC 4122 version 4 UUID. */
export function randomUuid(): string {
  const b = randomBytes(16)
  b[6] = (b[6]! & 0x0f) | 0x40
  b[8] = (b[8]! & 0x3f) | 0x80
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}
