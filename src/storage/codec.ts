import { StorageError } from '../core/errors.js'

/**
 * Value encoding shared by the adapters that store text. Values are JSON: what a reader gets back
 * is `JSON.parse(JSON.stringify(value))`, a fresh copy every time.
 */

/** Encode a value for storage; a value JSON cannot represent fails before anything is written. */
export function encodeValue(key: string, value: unknown): string {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (cause) {
    throw new TypeError(`the value for key ${JSON.stringify(key)} is not JSON-serializable`, { cause })
  }
  if (text === undefined) throw new TypeError(`the value for key ${JSON.stringify(key)} is not JSON-serializable`)
  return text
}

/** Decode a stored value; text that is not JSON is a `StorageError('corrupt')` naming the key. */
export function decodeValue(key: string, text: string): unknown {
  try {
    return JSON.parse(text)
  } catch (cause) {
    throw new StorageError('corrupt', `the stored value for key ${JSON.stringify(key)} is not valid JSON`, { cause })
  }
}

/** Whether `text` parses as JSON. */
export function isJson(text: string): boolean {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

/**
 * Whether an error means the storage quota is full: a DOM `QuotaExceededError` (Firefox's older
 * `NS_ERROR_DOM_QUOTA_REACHED`, legacy codes 22 and 1014), or Node's `ENOSPC` / `EDQUOT`.
 */
export function isQuotaError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const { name, code } = error as { name?: unknown; code?: unknown }
  return (
    name === 'QuotaExceededError' ||
    name === 'NS_ERROR_DOM_QUOTA_REACHED' ||
    code === 22 ||
    code === 1014 ||
    code === 'ENOSPC' ||
    code === 'EDQUOT'
  )
}

/** Map any failure of a backing store to a `StorageError`, keeping the original as `cause`. */
export function toStorageError(error: unknown, message: string): StorageError {
  if (error instanceof StorageError) return error
  if (isQuotaError(error)) return new StorageError('quota-exceeded', `${message}: storage quota exceeded`, { cause: error })
  const detail = error instanceof Error ? error.message : String(error)
  return new StorageError('io', `${message}: ${detail}`, { cause: error })
}
