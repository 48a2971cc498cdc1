import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.{ts,tsx}'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration files each start their own stack; keep parallelism within 2 cores.
    maxWorkers: 2,
  },
})
