// Active and passive health joined, end to end: real child-process providers, the real proxy, the admin page.
// Passive ejections show on the status page and in metrics; passing checks lift the ejections they disprove
// and vouch for stalled-looking servers; failed requests ask for an immediate check (counted provider-side).
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Upstream as UpstreamConfig } from '../src/config/schema.js'
import { client, get, spawnProvider, startProxy, type Provider } from './helpers/index.js'
import { control, recordEvents, statusOf, waitFor } from './helpers/health.js'

type Tap = Parameters<typeof spawnProvider>[0]

/** A group of the given providers with `extra` settings, its passive events recorded. */
async function proxyFor(t: Tap, ps: Provider[], extra: Partial<UpstreamConfig>) {
  const proxy = await startProxy(t, { upstreams: { api: { servers: ps.map((p) => ({ address: p.address })), ...extra } } })
  return { proxy, passive: recordEvents(proxy.vigil, 'passive'), upstream: proxy.vigil.upstreams.get('api')! }
}

/** GETs until `done` holds (bounded): each one is answered, whatever its status. */
async function getUntil(t: Tap, url: string, done: () => boolean, what: string): Promise<number[]> {
  const agent = client(t)
  const statuses: number[] = []
  await waitFor(what, async () => {
    if (done()) return true
    statuses.push((await get(`${url}/work`, { dispatcher: agent })).status)
    return done()
  })
  return statuses
}

/** Stall suspicions a loaded machine may add to any test; these tests are about ejections. */
const STALL = new Set(['suspect', 'cleared'])

/** Periodic checks this far apart never run during a test (the first one is spread over the interval). */
const DAY = 86_400_000

const failOn503 = { maxFails: 1, failTimeout: '60s', failOn: ['error', 'timeout', 'http_503'] }

t.test('a passive ejection shows on the status page (reason, failure, until) and is counted once in metrics', async (t) => {
  const ps = await Promise.all([spawnProvider(t, 'bad'), spawnProvider(t, 'good')])
  const [bad, good] = ps as [Provider, Provider]
  await control(bad, 'status=503')
  const { proxy, passive } = await proxyFor(t, ps, { passive: failOn503 })
  await getUntil(t, proxy.url, () => passive.some((e) => e.event === 'ejected'), 'the ejection')
  const ejectedAt = Date.now()
  const rows = await statusOf(proxy.admin)
  const row = rows.find((r) => r.name === bad.address)!
  t.match(row, { status: 'down', passive: 'ejected', ejectionReason: 'max_fails', ejectionFailure: 'http_503', ejections: 1, check: 'none' })
  const until = Date.parse(row.ejectedUntil as string)
  t.ok(until > ejectedAt && until <= ejectedAt + 60_000, `ejected until ${row.ejectedUntil}, failTimeout after the ejection`)
  t.match(rows.find((r) => r.name === good.address), { status: 'up', passive: 'ok', ejectionReason: null, ejectedUntil: null, ejections: 0 })

  // More traffic while ejected neither reaches it nor counts another ejection.
  const before = (await control(bad)).served
  const agent = client(t)
  for (let i = 0; i < 6; i++) t.equal((await get(`${proxy.url}/work`, { dispatcher: agent })).status, 200)
  t.equal((await control(bad)).served, before)
  const ejected = passive.filter((e) => e.event === 'ejected')
  t.equal(ejected.length, 1)
  t.match(ejected[0], { server: bad.address, reason: 'max_fails', evidence: { failure: 'http_503', failures: 1 } })
  const metrics = (await get(`${proxy.admin}/metrics`)).body
  t.match(metrics, new RegExp(`^vigil_ejections_total\\{upstream="api",server="${bad.address}",reason="max_fails"\\} 1$`, 'm'), 'counted once')
  t.equal(metrics.match(/^vigil_ejections_total\{/gm)?.length, 1, 'and nowhere else')

  const csv = (await get(`${proxy.admin}/status?format=csv`)).body.trimEnd().split('\n').map((l) => l.split(','))
  const header = csv[0]!
  const badRow = csv.find((r) => r[2] === bad.address)!
  t.same(
    ['passive', 'ejection_reason', 'ejection_failure', 'ejections'].map((c) => badRow[header.indexOf(c)]),
    ['ejected', 'max_fails', 'http_503', '1'],
  )
  const prom = (await get(`${proxy.admin}/status?format=prometheus`)).body
  t.match(prom, new RegExp(`^vigil_upstream_server_ejected\\{index="0",upstream_type="none",upstream="api",name="${bad.address}",status="down",port="0"\\} 1$`, 'm'))
  t.match(prom, new RegExp(`^vigil_upstream_server_ejections\\{index="1",[^}]*name="${good.address}"[^}]*\\} 0$`, 'm'))
})

t.test('the status page shows balance state: effective weight under slow start, maxConns, learned latency', async (t) => {
  const ps = await Promise.all([spawnProvider(t, 'w1'), spawnProvider(t, 'w2')])
  const proxy = await startProxy(t, {
    upstreams: { api: { servers: [{ address: ps[0]!.address, weight: 4, maxConns: 10 }, { address: ps[1]!.address }], slowStart: '1h' } },
  })
  const before = await statusOf(proxy.admin)
  t.match(before, [
    { weight: 4, effectiveWeight: 4, maxConns: 10, latencyMs: null },
    { weight: 1, effectiveWeight: 1, maxConns: null, latencyMs: null },
  ])
  const agent = client(t)
  for (let i = 0; i < 10; i++) await get(`${proxy.url}/work`, { dispatcher: agent })
  const upstream = proxy.vigil.upstreams.get('api')!
  // An operator disable and enable makes the server newly eligible: slow start ramps it from 10% of its weight.
  upstream.peers[0]!.operator = 'disabled'
  upstream.refresh()
  upstream.peers[0]!.operator = 'enabled'
  upstream.refresh()
  const rows = await statusOf(proxy.admin)
  t.ok(rows[0]!.effectiveWeight < 4, `ramping: effective weight ${rows[0]!.effectiveWeight} of 4`)
  for (const r of rows) t.ok(typeof r.latencyMs === 'number' && r.latencyMs > 0, `learned latency ${r.latencyMs} ms`)
  const csv = (await get(`${proxy.admin}/status?format=csv`)).body.split('\n')
  t.match(csv[0], /,weight,effective_weight,max_conns,/)
})

/** A provider answering 503 (its checks too) until told otherwise; an http check that needs many failures to go down. */
async function ejectedThenHealthy(t: Tap, unejectOnPass: boolean) {
  const ps = await Promise.all([spawnProvider(t, 'flaky'), spawnProvider(t, 'steady')])
  const flaky = ps[0] as Provider
  const active = { type: 'http' as const, interval: DAY, fastInterval: 100, rise: 1, fall: 50, unejectOnPass, http: { path: '/healthz' } }
  const ctx = await proxyFor(t, ps, { passive: failOn503, active, slowStart: '1h' })
  const peer = ctx.upstream.find(flaky.address)!
  const target = ctx.proxy.vigil.checker.stateOf(peer)!
  await waitFor('the first checks', () => target.checks >= 1)
  await control(flaky, 'status=503')
  await getUntil(t, ctx.proxy.url, () => ctx.passive.some((e) => e.event === 'ejected'), 'the ejection')
  const checks = target.checks
  await control(flaky, 'status=200')
  // While its check is still changing state it runs every fastInterval: wait for one that passed after the repair.
  await waitFor('a passing check after the repair', () => target.checks > checks && target.last?.result === 'success')
  return { ...ctx, flaky, peer }
}

t.test('an http check that passes lifts a passive ejection, through the passive restore path', async (t) => {
  const { proxy, passive, flaky, peer } = await ejectedThenHealthy(t, true)
  await waitFor('restored', () => passive.some((e) => e.event === 'restored'))
  t.same(
    passive.filter((e) => e.server === flaky.address && !STALL.has(e.event)).map((e) => [e.event, e.reason]),
    [
      ['ejected', 'max_fails'],
      ['restored', 'active check passed'],
    ],
  )
  t.match(passive.find((e) => e.event === 'restored')?.evidence, { check: 'http', ejectedFor: 'http_503', multiplier: 1 })
  t.ok(peer.eligible)
  const row = (await statusOf(proxy.admin)).find((r) => r.name === flaky.address)!
  t.match(row, { status: 'up', passive: 'ok', check: 'up', ejections: 1, ejectionReason: null })
  t.ok(row.effectiveWeight < row.weight, 'back in rotation like any recovery: slow start ramps it up')
  const agent = client(t)
  const before = (await control(flaky)).served
  // At a tenth of its weight (slow start) smooth round robin still gives it one request in eleven.
  for (let i = 0; i < 24; i++) await get(`${proxy.url}/work`, { dispatcher: agent })
  t.ok((await control(flaky)).served > before, 'it serves again long before its 60 s ejection is over')
})

t.test('with unejectOnPass false a passing check leaves the passive ejection alone', async (t) => {
  const { proxy, passive, flaky, peer } = await ejectedThenHealthy(t, false)
  t.same(
    passive.filter((e) => e.server === flaky.address && !STALL.has(e.event)).map((e) => e.event),
    ['ejected'],
  )
  t.notOk(peer.eligible)
  t.match((await statusOf(proxy.admin)).find((r) => r.name === flaky.address), { status: 'down', check: 'up', passive: 'ejected', ejectionReason: 'max_fails' })
})

t.test('a passive failure triggers an immediate check of that server (HAProxy observe), at most once per fastInterval', async (t) => {
  const p = await spawnProvider(t, 'observed')
  // A daily check: after the first one, only a re-check can make the provider see /healthz again.
  const { proxy, upstream } = await proxyFor(t, [p], { passive: failOn503, active: { type: 'http', interval: DAY, fall: 5, http: { path: '/healthz' } } })
  const target = proxy.vigil.checker.stateOf(upstream.peers[0]!)!
  await waitFor('the first check', () => target.checks === 1)
  t.equal((await control(p)).healthz, 1)
  const agent = client(t)
  t.equal((await get(`${proxy.url}/work`, { dispatcher: agent })).status, 200, 'a success asks for nothing')
  await control(p, 'status=503')
  t.equal((await get(`${proxy.url}/work`, { dispatcher: agent })).status, 503)
  await waitFor('the re-check reached the provider', async () => (await control(p)).healthz === 2)
  await waitFor('the re-check concluded', () => target.checks === 2)
  t.match(target.last, { result: 'failure', reason: 'status_503' })
  t.equal(target.state.fallCount, 1, 'it counts toward fall like any check')
  for (let i = 0; i < 3; i++) t.equal((await get(`${proxy.url}/work`, { dispatcher: agent })).status, 503)
  await sleep(300)
  t.equal((await control(p)).healthz, 2, 'more failures within fastInterval (here a day) ask for no more checks')
})

t.test('a suspect server is cleared by a passing check while its slow request still waits', async (t) => {
  const ps = await Promise.all([spawnProvider(t, 's1'), spawnProvider(t, 's2')])
  // Requests take 5 s on both; /healthz answers at once (the process is slow, not frozen).
  await Promise.all(ps.map((p) => control(p, 'delay=5000')))
  const { proxy, passive, upstream } = await proxyFor(t, ps, {
    passive: { stall: { factor: 10, floor: 100 } },
    active: { type: 'http', interval: 600, http: { path: '/healthz' } },
    timeouts: { response: '20s' },
  })
  let answered = false
  const slow = get(`${proxy.url}/work`).then((r) => {
    answered = true
    return r.status
  })
  await waitFor('the request is on its way', () => upstream.peers.some((p) => p.inflight === 1))
  const address = upstream.peers.find((p) => p.inflight === 1)!.address
  await waitFor('suspected', () => passive.some((e) => e.event === 'suspect' && e.server === address))
  await waitFor('cleared', () => passive.some((e) => e.event === 'cleared' && e.server === address))
  t.notOk(answered, 'cleared before the slow request was answered: only a passing check could vouch for it')
  const kinds = passive.filter((e) => e.server === address).map((e) => e.event)
  t.same(kinds.slice(0, 2), ['suspect', 'cleared'])
  t.equal(await slow, 200, 'the waiting request was never failed early')
})
