/** Display helpers. */

// One formatter for the page: `toLocaleTimeString` builds a new one per call, which is slow.
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })

/** A clock time, or a dash when there is none. */
export function clockTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—'
  return timeFormat.format(ms)
}

/** "in 3 s", "now", or a dash. */
export function fromNow(ms: number | null | undefined, now: number): string {
  if (ms === null || ms === undefined) return '—'
  const seconds = Math.round((ms - now) / 1000)
  if (seconds <= 0) return 'now'
  if (seconds < 120) return `in ${seconds} s`
  return `in ${Math.round(seconds / 60)} min`
}

/** Tags typed as "a, b ,c" → ["a", "b", "c"], without blanks or repeats. */
export function parseTags(text: string): string[] {
  return [...new Set(text.split(',').map((t) => t.trim()).filter(Boolean))]
}

/** A value as a short, readable string for the conflict view. */
export function showValue(value: unknown): string {
  if (value === null || value === undefined || value === '') return '—'
  if (Array.isArray(value)) return value.length ? value.join(', ') : '—'
  if (typeof value === 'object') return JSON.stringify(value)
  return String(value)
}
