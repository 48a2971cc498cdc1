/**
 * Starts a local stack in a process of its own and prints its addresses as one JSON line, then
 * idles until killed. Used to check that a killed process leaves no PostgREST behind.
 */
import { startLocalStack } from '../../src/testing/index.js'

const stack = await startLocalStack()
process.stdout.write(`${JSON.stringify({ postgrestUrl: stack.postgrestUrl, url: stack.url, databaseUrl: stack.databaseUrl })}\n`)
setInterval(() => undefined, 1 << 30)
