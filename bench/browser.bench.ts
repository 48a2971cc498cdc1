/**
 * The engine in a real browser: the contacts demo (its local stack started in-process) in Debian's
 * chromium through playwright-core, device A storing in `localStorage`. Device A writes an offline
 * backlog of `BROWSER_BACKLOG` contacts (default 5000) through its collection, then goes online; the
 * figures are the local write latency while the backlog grows, the time from going online until
 * `forceSyncAll()` resolves, and meanwhile the long tasks (> 50 ms, `PerformanceObserver`) and the
 * longest gap between ticks of a `MessageChannel` probe (its messages wait behind tasks of every
 * source: network, timers, the demo's own rendering of the growing list, so a gap can be longer
 * than any one task). Device B stays offline.
 *
 * `DATABASE_URL` puts the stack on PostgreSQL (default: PGlite). Prints a line saying so, and
 * nothing else, when /usr/bin/chromium is missing (`apt-get install chromium`). Never passes or
 * fails on time.
 */
import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import { startDemoServer } from '../demo/server.js'
import type { DemoTestHooks } from '../demo/app/App.js'

const CHROMIUM = '/usr/bin/chromium'
const N = Number(process.env.BROWSER_BACKLOG ?? 5000)

function report(text: string, figure: Record<string, unknown>): void {
  console.log(text)
  console.log(JSON.stringify(figure))
}

/** What the page measures; runs in the browser. */
interface PageFigures {
  writes: number[]
  syncMs: number
  ok: boolean
  message?: string
  maxGapMs: number
  longTasks: number[]
  queuedAfter: number
}

export default async function browserBench(): Promise<void> {
  if (!existsSync(CHROMIUM)) {
    console.log(`browser bench skipped: ${CHROMIUM} not found (apt-get install chromium)`)
    return
  }
  const demo = await startDemoServer({ port: 0, dataDir: false, testHooks: true, log: () => undefined })
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  try {
    const page = await browser.newPage()
    await page.goto(demo.url)
    await page.locator('[data-testid=devices][data-ready=true]').waitFor()
    await page.waitForFunction(() => {
      const hooks = (window as { __demo?: DemoTestHooks }).__demo
      return !!hooks?.device('A') && !!hooks.device('B')
    })
    const figures = await page.evaluate(async (n: number): Promise<PageFigures> => {
      const hooks = (window as { __demo?: DemoTestHooks }).__demo!
      const a = hooks.device('A')!
      // Device B stays offline: its pulls would share the page's thread with A's push.
      hooks.device('B')!.network.setOnline(false)
      await a.orchestrator.ready
      a.network.setOnline(false)
      const contacts = a.orchestrator.collection('contacts')
      const writes: number[] = []
      for (let i = 0; i < n; i++) {
        const t0 = performance.now()
        await contacts.insert({ name: `Backlog ${String(i).padStart(5, '0')}`, phone: '+1 555 0100', tags: ['bench'] })
        writes.push(performance.now() - t0)
      }
      // The loop above ran as one task (every write resolves without waiting on the host): let it
      // end before the probes start.
      await new Promise((resolve) => setTimeout(resolve, 50))
      const longTasks: number[] = []
      const observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) longTasks.push(entry.duration)
      })
      observer.observe({ type: 'longtask' })
      let maxGapMs = 0
      let probing = true
      let last = performance.now()
      const channel = new MessageChannel()
      channel.port1.onmessage = () => {
        const now = performance.now()
        maxGapMs = Math.max(maxGapMs, now - last)
        last = now
        if (probing) channel.port2.postMessage(0)
      }
      channel.port2.postMessage(0)
      await new Promise((resolve) => setTimeout(resolve, 20))
      const t0 = performance.now()
      a.network.setOnline(true)
      const result = await a.orchestrator.forceSyncAll()
      const syncMs = performance.now() - t0
      probing = false
      observer.disconnect()
      return {
        writes,
        syncMs,
        ok: result.ok,
        ...(result.ok ? {} : { message: result.message }),
        maxGapMs,
        longTasks,
        queuedAfter: a.orchestrator.getSyncStatus().queueLength,
      }
    }, N)
    if (!figures.ok) throw new Error(`the backlog did not sync: ${figures.message}`)
    const sorted = [...figures.writes].sort((x, y) => x - y)
    const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
    const r2 = (x: number) => Number(x.toFixed(2))
    const stack = process.env.DATABASE_URL ? 'PostgreSQL' : 'PGlite'
    report(`chromium, localStorage: local write of a contact while ${N} queue up offline: p50 ${r2(pct(50))} ms, p99 ${r2(pct(99))} ms`, {
      bench: 'browser-write-latency', storage: 'localStorage', queued: N, p50Ms: r2(pct(50)), p99Ms: r2(pct(99)),
    })
    report(
      `chromium, localStorage: offline backlog of ${N} synced in ${r2(figures.syncMs / 1000)} s (${stack}); ` +
        `longest gap between probe ticks ${r2(figures.maxGapMs)} ms; long tasks (> 50 ms): ${figures.longTasks.length}` +
        (figures.longTasks.length ? `, longest ${r2(Math.max(...figures.longTasks))} ms` : '') +
        `; queued afterwards: ${figures.queuedAfter}`,
      {
        bench: 'browser-backlog', storage: 'localStorage', stack, changes: N, seconds: r2(figures.syncMs / 1000),
        maxGapMs: r2(figures.maxGapMs), longTasks: figures.longTasks.length, queuedAfter: figures.queuedAfter,
      },
    )
  } finally {
    await browser.close()
    await demo.close()
  }
}
