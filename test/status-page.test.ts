// The html status page in a real browser (Debian's chromium, driven by playwright-core): it refreshes itself and
// marks a frozen server down; and at 1280 px, with servers out of rotation for every kind of reason and a failed
// reload, every reason is in words, the charts and transitions are there, and nothing is cut off. The screenshot
// goes to $VIGIL_STATUS_SCREENSHOT (default: the temp dir), outside the repository.
import t from 'tap'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { connect as connectH2, createServer as createH2Server, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { client, get, spawnProvider, startProxy } from './helpers/index.js'
import { control, statusOf, waitFor } from './helpers/health.js'
import { proxyConfig, startProxyFromFile, tempDir, writeConfig } from './helpers/config-file.js'

const CHROMIUM = '/usr/bin/chromium'
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync']
const SCREENSHOT = process.env['VIGIL_STATUS_SCREENSHOT'] ?? join(tmpdir(), 'vigil-status-1280.png')

let browser: Browser | undefined
const launch = async (): Promise<Browser> => (browser ??= await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, timeout: 60_000 }))
t.teardown(() => browser?.close())

t.test('the html status page, loaded in headless Chromium, shows a frozen server as down', async (t) => {
  const ps = await Promise.all(['p1', 'p2'].map((n) => spawnProvider(t, n)))
  const proxy = await startProxy(t, {
    upstreams: { api: { servers: ps.map((p) => ({ address: p.address })), active: { type: 'http', interval: 100, timeout: 1_000, rise: 1, fall: 2, http: { path: '/healthz' } } } },
  })
  await waitFor('both checked', async () => (await statusOf(proxy.admin)).every((s) => s.check === 'up'))
  const page = await (await launch()).newPage()
  t.teardown(() => page.close())
  await page.goto(`${proxy.admin}/status?format=html&refresh=1`)
  t.equal(await page.title(), 'vigil status')
  t.equal(await page.locator('tr.server').count(), 2)
  t.equal(await page.locator('tr.server.down').count(), 0, 'nothing down yet')
  const frozen = ps[0]!
  frozen.signal('SIGSTOP')
  // No reload from here: the page refreshes itself.
  const row = page.locator(`tr.server.down[data-name="${frozen.address}"]`)
  await row.waitFor({ timeout: 60_000 })
  t.match(await row.locator('.why').innerText(), /down by http check/)
  t.equal(await page.locator('#down').innerText(), '1')
  const color = await row.evaluate((el) => getComputedStyle(el).backgroundColor)
  t.not(color, 'rgba(0, 0, 0, 0)', 'the down row is highlighted')
})

t.test('at 1280 px: one section per upstream, every reason in words, charts, transitions, a failed reload; nothing cut off', async (t) => {
  const [a, b, c, d, e] = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => spawnProvider(t, n)))
  const base = proxyConfig([])
  const config = {
    ...base,
    listeners: [{ address: '127.0.0.1:0', routes: [{ host: 'billing.local', upstream: 'billing' }, { pathPrefix: '/', upstream: 'api' }] }],
    upstreams: {
      api: {
        servers: [{ address: a!.address, weight: 2 }, { address: b!.address }, { address: c!.address }],
        // A tcp check: b's 503s are real-request failures only a passive ejection catches.
        active: { type: 'tcp' as const, interval: 200, timeout: 1_000, rise: 1, fall: 2 },
        passive: { maxFails: 2, failTimeout: '30s', failOn: ['error' as const, 'timeout' as const, 'http_503'] },
        retry: { on: ['error' as const, 'timeout' as const, 'http_503'], tries: 3 },
      },
      billing: { balance: 'least_conn' as const, servers: [{ address: d!.address }, { address: e!.address }, { address: '127.0.0.1:1', down: true }] },
    },
  }
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), config)
  const agent = client(t)
  const traffic = async (n: number, host = 'api.local'): Promise<void> => {
    for (let i = 0; i < n; i++) await get(`${proxy.url}/`, { dispatcher: agent, headers: { host } })
  }
  await waitFor('first checks', async () => (await statusOf(proxy.admin)).filter((s) => s.upstream === 'api').every((s) => s.check === 'up'))
  // Three intervals of traffic for the charts: calm, then b failing and c killed.
  await traffic(12)
  await traffic(6, 'billing.local')
  proxy.vigil.history.sample()
  await traffic(20)
  proxy.vigil.history.sample()
  // c dies and its check takes it out before traffic meets it; then b answers 503, which only requests see.
  c!.signal('SIGKILL')
  await waitFor('c down by check', async () => (await statusOf(proxy.admin)).find((r) => r.name === c!.address)?.check === 'down')
  await control(b!, 'status=503')
  await traffic(16)
  await waitFor('b ejected and c down by check', async () => {
    const rows = await statusOf(proxy.admin)
    return rows.find((r) => r.name === b!.address)?.passive === 'ejected' && rows.find((r) => r.name === c!.address)?.check === 'down'
  }).catch(async (err: unknown) => {
    t.comment(JSON.stringify(await statusOf(proxy.admin)))
    throw err
  })
  t.equal((await get(`${proxy.admin}/upstreams/billing/servers/${e!.address}/drain`, { method: 'POST' })).status, 200)
  // A reload that fails: the page must say so, with its reason.
  writeConfig(proxy.file, JSON.stringify({ ...config, upstreams: { ...config.upstreams, api: { ...config.upstreams.api, servers: [{ address: a!.address, weight: 0 }] } } }))
  t.equal((await get(`${proxy.admin}/reload`, { method: 'POST' })).status, 422)

  const page = await (await launch()).newPage({ viewport: { width: 1280, height: 900 } })
  t.teardown(() => page.close())
  await page.goto(`${proxy.admin}/status?format=html&refresh=60`)
  t.same(await page.locator('section.upstream h2').evaluateAll((hs) => hs.map((h) => h.firstChild?.textContent?.trim())), ['api', 'billing'], 'one section per upstream')
  t.same(await page.locator('section.upstream th').evaluateAll((th) => th.slice(0, 6).map((h) => h.textContent?.split(',')[0])), ['server', 'state', 'traffic', 'failures', 'latency', 'check'])

  const why = (address: string) => page.locator(`tr.server[data-name="${address}"] .why`).innerText()
  t.match(await why(b!.address), /^ejected \d+ s ago for 2 http_503 \(max_fails\), trial in \d+ s$/, 'a passive ejection in words')
  t.match(await why(c!.address), /^down by tcp check for \d+ s, \d+ failures in a row; last failed: connect_refused \d+ s ago$/, 'a check failure in words')
  t.match(await why(e!.address), /^draining since \d+ s ago: no new requests, 0 in flight$/)
  t.equal(await why('127.0.0.1:1'), 'down in the config ("down": true)')
  t.equal(await page.locator(`tr.server[data-name="${a!.address}"] .why`).count(), 0, 'nothing to explain for a healthy server')
  t.equal(await page.locator('tr.server.down').count(), 4)

  const bars = await page.locator(`tr.server[data-name="${a!.address}"] svg.chart rect.rq`).count()
  t.equal(bars, 3, 'three intervals of requests on the chart of a')
  t.ok((await page.locator(`tr.server[data-name="${b!.address}"] svg.chart rect.fl`).count()) >= 1, 'failures on the chart of b')
  t.match(await page.locator(`tr.server[data-name="${a!.address}"] svg.chart title`).innerHTML(), /^\d+ requests, 0 failures in the last 30 s/)

  const events = await page.locator('#upstream-api .events li').allInnerTexts()
  t.ok(events.some((l) => /passive ejected/.test(l) && /failures=2/.test(l) && /failure=http_503/.test(l)), 'the ejection with its evidence')
  t.ok(events.some((l) => /active down/.test(l)), "c's check transition")
  t.match(await page.locator('#upstream-billing .events').innerText(), /operator draining admin_drain/)

  const banner = page.locator('#reload-failed')
  t.ok(await banner.isVisible(), 'the failed reload is a banner')
  t.match(await banner.innerText(), /Last reload failed \(admin, \d+ s ago\); still serving generation 1/)
  t.match(await banner.innerText(), /upstreams\.api\.servers\[0\]\.weight: found number 0, expected an integer from 1 to 1000/)
  t.equal(await banner.evaluate((el) => getComputedStyle(el).borderTopColor), 'rgb(207, 34, 46)', 'in red')

  // The rest on demand: one click shows every other field.
  await page.locator(`tr.server[data-name="${b!.address}"] details summary`).click()
  t.match(await page.locator(`tr.server[data-name="${b!.address}"] details dl`).innerText(), /ejections\s+1[\s\S]*rise \/ fall/)

  // Nothing cut off: no horizontal scrolling, no cell whose content overflows it.
  const overflow = await page.evaluate(() => {
    const out: string[] = []
    const root = document.documentElement
    if (root.scrollWidth > root.clientWidth) out.push(`page ${root.scrollWidth} > ${root.clientWidth}`)
    for (const el of document.querySelectorAll<HTMLElement>('table, td, th, .alert, header')) {
      if (el.scrollWidth > el.clientWidth + 1) out.push(`${el.tagName}.${el.className} ${el.scrollWidth} > ${el.clientWidth}: ${el.innerText.slice(0, 60)}`)
      const r = el.getBoundingClientRect()
      if (r.right > root.clientWidth + 0.5) out.push(`${el.tagName} ends at ${r.right}`)
    }
    return out
  })
  t.same(overflow, [], 'nothing is cut off at 1280 px')
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  t.comment(`screenshot: ${SCREENSHOT}`)
})

t.test('HTTP/2 servers: the protocol per group and server, streams open, gRPC classes; nothing cut off', async (t) => {
  // An in-process h2c provider: /hold is answered only at the end; anything else is a gRPC answer, UNAVAILABLE for /err.
  const server = createH2Server()
  const held: ServerHttp2Stream[] = []
  server.on('stream', (stream, headers) => {
    if (headers[':path'] === '/hold') return void held.push(stream)
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': headers[':path'] === '/err' ? '14' : '0' }, { endStream: true })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'rpc', http2: true }],
    upstreams: { rpc: { protocol: 'h2c', servers: [{ address }], passive: { stall: { enabled: false } } } },
  })
  const session = connectH2(`http://127.0.0.1:${proxy.port}`)
  t.teardown(() => {
    session.destroy()
    for (const s of held) s.destroy()
    server.close()
  })
  const call = (path: string): Promise<void> =>
    new Promise((resolve) => {
      const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' }, { endStream: true })
      req.on('error', () => resolve())
      req.on('close', () => resolve())
      req.resume()
    })
  for (const path of ['/ok', '/ok', '/err']) await call(path)
  for (let i = 0; i < 2; i++) session.request({ ':method': 'GET', ':path': '/hold' }, { endStream: true }).on('error', () => {})
  await waitFor('two streams held open', () => held.length === 2)

  const page = await (await launch()).newPage({ viewport: { width: 1280, height: 900 } })
  t.teardown(() => page.close())
  await page.goto(`${proxy.admin}/status?format=html&refresh=60`)
  t.match(await page.locator('#upstream-rpc h2 .meta').innerText(), /· h2c ·/, 'the group says how it reaches its servers')
  const row = page.locator(`tr.server[data-name="${address}"]`)
  t.equal(await row.locator('.name .tag').first().innerText(), 'h2c', 'and each server')
  t.match(await row.locator('.traffic').innerText(), /2 in flight \(2 streams open\)/, 'streams in flight')
  t.match(await row.locator('.failures .grpc').innerText(), /gRPC 2 OK · 1 error/, 'gRPC status classes')
  await row.locator('details summary').click()
  t.match(await row.locator('details dl').innerText(), /protocol\s+h2c[\s\S]*streams open\s+2[\s\S]*GOAWAYs\s+0[\s\S]*gRPC calls\s+2 OK, 1 error/)
  const overflow = await page.evaluate(() => [...document.querySelectorAll<HTMLElement>('td')].filter((el) => el.scrollWidth > el.clientWidth + 1).map((el) => el.innerText.slice(0, 60)))
  t.same(overflow, [], 'nothing cut off')
})
