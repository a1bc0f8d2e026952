// The html status page in a real browser (Debian's chromium, driven by playwright-core): it refreshes itself
// and marks a frozen server down.
import t from 'tap'
import { chromium } from 'playwright-core'
import { spawnProvider, startProxy } from './helpers/index.js'
import { statusOf, waitFor } from './helpers/health.js'

const CHROMIUM = '/usr/bin/chromium'
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync']

t.test('the html status page, loaded in headless Chromium, shows a frozen server as down', async (t) => {
  const ps = await Promise.all(['p1', 'p2'].map((n) => spawnProvider(t, n)))
  const proxy = await startProxy(t, {
    upstreams: { api: { servers: ps.map((p) => ({ address: p.address })), active: { type: 'http', interval: 100, timeout: 1_000, rise: 1, fall: 2, http: { path: '/healthz' } } } },
  })
  await waitFor('both checked', async () => (await statusOf(proxy.admin)).every((s) => s.check === 'up'))
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, timeout: 60_000 })
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  await page.goto(`${proxy.admin}/status?format=html&refresh=1`)
  t.equal(await page.title(), 'vigil status')
  t.equal(await page.locator('tbody tr').count(), 2)
  t.equal(await page.locator('tr.down').count(), 0, 'nothing down yet')
  const frozen = ps[0]!
  frozen.signal('SIGSTOP')
  // No reload from here: the page refreshes itself.
  const row = page.locator(`tr.down[data-name="${frozen.address}"]`)
  await row.waitFor({ timeout: 60_000 })
  t.match(await row.innerText(), /down/)
  t.equal(await page.locator('#down').innerText(), '1')
  const color = await row.evaluate((el) => getComputedStyle(el).backgroundColor)
  t.not(color, 'rgba(0, 0, 0, 0)', 'the down row is highlighted')
})
