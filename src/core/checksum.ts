import SparkMD5 from 'spark-md5'

/**
 * Order-independent checksum of `(id, version)` pairs, computed exactly as the server's
 * `sync_checksum` does: the sum modulo 2^64 of the first 8 hex digits of `md5(id:version)`.
 */
export function checksumOf(entries: Iterable<{ id: string; version: number }>): { count: number; checksum: string } {
  let sum = 0n
  let count = 0
  for (const { id, version } of entries) {
    sum += BigInt('0x' + SparkMD5.hash(`${id}:${version}`).slice(0, 8))
    count++
  }
  return { count, checksum: (sum % (1n << 64n)).toString() }
}
