/**
 * Builds one record of the file storage log in its documented format (`src/storage/file.ts`), for
 * tests that need bytes the adapter itself never writes (torn commits, corrupt values).
 */
import { crc32 } from '../../src/storage/file.js'

/** One log record; `flags` 1 ends a commit, 0 leaves it open. A `null` text is a delete. */
export function logRecord(ops: ReadonlyArray<readonly [key: string, text: string | null]>, flags = 1): Buffer {
  const parts: Buffer[] = [Buffer.from([flags])]
  for (const [key, text] of ops) {
    const keyBytes = Buffer.from(key, 'utf16le')
    const head = Buffer.alloc(5)
    head[0] = text === null ? 2 : 1
    head.writeUInt32LE(keyBytes.length, 1)
    parts.push(head, keyBytes)
    if (text !== null) {
      const value = Buffer.from(text, 'utf8')
      const length = Buffer.alloc(4)
      length.writeUInt32LE(value.length)
      parts.push(length, value)
    }
  }
  const payload = Buffer.concat(parts)
  const header = Buffer.alloc(8)
  header.writeUInt32LE(payload.length, 0)
  header.writeUInt32LE(crc32(payload, crc32(header.subarray(0, 4))), 4)
  return Buffer.concat([header, payload])
}
