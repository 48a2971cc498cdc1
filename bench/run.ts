/**
 * Benchmark runner: imports every `bench/*.bench.ts` in name order and runs its default export.
 *
 *   npm run bench                  # all of them
 *   npm run bench -- protocol      # only files whose name contains "protocol" (any of the arguments)
 *
 * Benchmarks print figures (human-readable lines and one JSON line per figure); they never pass or
 * fail on time. The runner exits non-zero only when a benchmark could not run at all.
 */
import { readdir } from 'node:fs/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { dirname, join } from 'node:path'

const here = dirname(fileURLToPath(import.meta.url))
const filters = process.argv.slice(2).filter((arg) => arg !== '--')

const files = (await readdir(here))
  .filter((name) => name.endsWith('.bench.ts'))
  .filter((name) => filters.length === 0 || filters.some((filter) => name.includes(filter)))
  .sort()

if (files.length === 0) {
  console.error(`no benchmark matches ${filters.map((f) => JSON.stringify(f)).join(', ') || '(none found)'}`)
  process.exitCode = 1
}

let failed = 0
for (const name of files) {
  console.log(`\n=== ${name}`)
  const started = performance.now()
  try {
    const module = (await import(pathToFileURL(join(here, name)).href)) as { default?: () => Promise<void> }
    if (typeof module.default !== 'function') throw new TypeError(`${name} has no default export function`)
    await module.default()
    console.log(`=== ${name} done in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  } catch (error) {
    failed++
    console.error(`=== ${name} could not run:`, error)
  }
}
if (failed > 0) process.exitCode = 1
