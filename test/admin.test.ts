// The admin listener end to end: token, status formats and filters, metrics, drain/disable/enable.
import t from 'tap'
import { client, get, spawnProvider, startProxy } from './helpers/index.js'
import { control, recordEvents, statusOf, waitFor } from './helpers/health.js'

const check = { type: 'http' as const, interval: 100, timeout: 2_000, rise: 1, fall: 2, http: { path: '/healthz' } }

t.test('when a token is set, every admin route requires it', async (t) => {
  const p = await spawnProvider(t, 'tok')
  const proxy = await startProxy(t, { admin: { address: '127.0.0.1:0', token: 's3cret' }, upstreams: { api: { servers: [{ address: p.address }] } } })
  const routes: [string, string][] = [
    ['GET', '/status'],
    ['GET', '/status?format=html'],
    ['GET', '/metrics'],
    ['POST', `/upstreams/api/servers/${p.address}/drain`],
    ['GET', '/nowhere'],
  ]
  for (const [method, path] of routes) {
    for (const authorization of [undefined, 'Bearer wrong', 's3cret', 'Bearer s3cret2']) {
      const r = await get(`${proxy.admin}${path}`, { method, headers: authorization === undefined ? {} : { authorization } })
      t.equal(r.status, 401, `${method} ${path} with ${authorization ?? 'no token'}`)
      t.equal(r.headers['www-authenticate'], 'Bearer')
    }
  }
  t.equal(proxy.vigil.upstreams.get('api')!.peers[0]!.operator, 'enabled', 'the refused action did nothing')
  const ok = await get(`${proxy.admin}/status`, { headers: { authorization: 'Bearer s3cret' } })
  t.equal(ok.status, 200)
})

t.test('status in json, csv and prometheus carries each server state, with and without filters', async (t) => {
  const [good, bad] = await Promise.all([spawnProvider(t, 'good'), spawnProvider(t, 'bad')])
  await control(bad, 'status=500')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: good.address, weight: 3 }, { address: bad.address }], active: check } } })
  await waitFor('bad down', async () => (await statusOf(proxy.admin)).some((s) => s.check === 'down'))

  const all = JSON.parse((await get(`${proxy.admin}/status?format=json`)).body) as { servers: { total: number; generation: number; server: Record<string, unknown>[] } }
  t.equal(all.servers.total, 2)
  t.equal(all.servers.generation, 1)
  t.match(all.servers.server[0], { index: 0, upstream: 'api', name: good.address, status: 'up', type: 'http', port: 0, weight: 3, check: 'up', eligible: true, passive: 'ok' })
  t.match(all.servers.server[1], { index: 1, upstream: 'api', name: bad.address, status: 'down', rise: 0, type: 'http', check: 'down', eligible: false, lastCheck: { result: 'failure', reason: 'status_503', at: /^20[0-9]{2}-/ } })
  t.ok((all.servers.server[1]?.['fall'] as number) >= 1)
  t.type(all.servers.server[1]?.['lastChange'], 'string')
  for (const [filter, name] of [
    ['up', good.address],
    ['down', bad.address],
  ]) {
    const body = (await get(`${proxy.admin}/status?format=json&status=${filter}`)).body
    const parsed = JSON.parse(body) as { servers: { total: number; server: { name: string; status: string }[] } }
    t.equal(parsed.servers.total, 1, `valid JSON filtered by ${filter}`)
    t.same(parsed.servers.server.map((s) => [s.name, s.status]), [[name, filter]])
  }
  const noneUp = JSON.parse((await get(`${proxy.admin}/status?status=down&format=json`)).body) as { servers: { server: unknown[] } }
  t.equal(noneUp.servers.server.length, 1)

  const csv = (await get(`${proxy.admin}/status?format=csv`)).body.trimEnd().split('\n').map((l) => l.split(','))
  const header = csv[0]!
  t.same(header.slice(0, 8), ['index', 'upstream', 'name', 'status', 'rise', 'fall', 'type', 'port'], "Tengine's columns first")
  t.equal(csv.length, 3)
  t.same(csv.slice(1).map((row) => [row[2], row[3], row[header.indexOf('check')]]), [
    [good.address, 'up', 'up'],
    [bad.address, 'down', 'down'],
  ])
  t.equal((await get(`${proxy.admin}/status?format=csv&status=down`)).body.trimEnd().split('\n').length, 2)

  const prom = (await get(`${proxy.admin}/status?format=prometheus`)).body
  t.match(prom, /^vigil_upstream_count_total 2$/m)
  t.match(prom, /^vigil_upstream_count_up 1$/m)
  t.match(prom, /^vigil_upstream_count_down 1$/m)
  t.match(prom, new RegExp(`^vigil_upstream_server_active\\{index="1",upstream_type="http",upstream="api",name="${bad.address}",status="down",port="0"\\} 0$`, 'm'))
  for (const line of prom.trimEnd().split('\n')) t.match(line, /^(# (HELP|TYPE) .+|[a-z_]+(\{[^}]*\})? -?[0-9.]+)$/, 'prometheus text line')

  const html = await get(`${proxy.admin}/status`, { headers: { accept: 'text/html' } })
  t.match(html.headers['content-type'], /text\/html/, 'a browser gets html by default')
  t.equal((await get(`${proxy.admin}/status?format=xml`)).status, 400)
  t.equal((await get(`${proxy.admin}/status?status=sideways`)).status, 400)
})

t.test('/metrics: health gauges, checks, responses by class and latency', async (t) => {
  const [good, bad] = await Promise.all([spawnProvider(t, 'm1'), spawnProvider(t, 'm2')])
  await control(bad, 'status=500')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: good.address }, { address: bad.address }], active: check } } })
  await waitFor('bad down', async () => (await statusOf(proxy.admin)).some((s) => s.check === 'down'))
  const agent = client(t)
  for (let i = 0; i < 3; i++) t.equal((await get(`${proxy.url}/`, { dispatcher: agent })).headers['x-provider'], 'm1')
  proxy.vigil.metrics.ejected('api', bad.address, 'max_fails')
  const text = (await get(`${proxy.admin}/metrics`)).body
  const g = good.address
  t.match(text, new RegExp(`^vigil_server_up\\{upstream="api",server="${g}"\\} 1$`, 'm'))
  t.match(text, new RegExp(`^vigil_server_eligible\\{upstream="api",server="${g}"\\} 1$`, 'm'))
  t.match(text, new RegExp(`^vigil_server_inflight\\{upstream="api",server="${g}"\\} 0$`, 'm'))
  t.match(text, new RegExp(`^vigil_requests_total\\{upstream="api",server="${g}"\\} 3$`, 'm'))
  t.match(text, new RegExp(`^vigil_responses_total\\{upstream="api",server="${g}",class="2xx"\\} 3$`, 'm'))
  t.match(text, new RegExp(`^vigil_upstream_response_seconds_count\\{upstream="api",server="${g}"\\} 3$`, 'm'))
  t.match(text, new RegExp(`^vigil_upstream_response_seconds_bucket\\{upstream="api",server="${g}",le="\\+Inf"\\} 3$`, 'm'))
  t.match(text, new RegExp(`^vigil_checks_total\\{server="${bad.address}",type="http",result="failure"\\} [1-9]`, 'm'))
  t.match(text, new RegExp(`^vigil_ejections_total\\{upstream="api",server="${bad.address}",reason="max_fails"\\} 1$`, 'm'))
  for (const name of ['retries', 'hedges', 'retry_budget_exhausted']) t.match(text, new RegExp(`^vigil_${name}_total\\{upstream="api"\\} 0$`, 'm'))
  t.match(text, new RegExp(`^vigil_stall_suspicions_total\\{upstream="api",server="${g}"\\} 0$`, 'm'))
  t.match(text, /^process_cpu_user_seconds_total /m, 'process metrics')
  t.match(text, /^nodejs_eventloop_lag_seconds /m)
})

t.test('drain lets an in-flight slow request finish while new requests go elsewhere; enable brings it back', async (t) => {
  const [slow, other] = await Promise.all([spawnProvider(t, 'slow'), spawnProvider(t, 'other')])
  await control(slow, 'delay=3000')
  // A 3 s answer beside 1 ms ones looks like a stall: without redispatch off, the waiting GET would be raced on the other server.
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: slow.address }, { address: other.address }], passive: { stall: { redispatch: false } } } } })
  const events = recordEvents(proxy.vigil, 'operator')
  const peer = proxy.vigil.upstreams.get('api')!.peers[0]!
  const agent = client(t)
  // Round robin alternates, so of two concurrent requests one lands on the slow server.
  const first = [get(`${proxy.url}/`, { dispatcher: agent }), get(`${proxy.url}/`, { dispatcher: agent })]
  await waitFor('a request in flight on the slow server', () => peer.inflight === 1)
  const drained = await get(`${proxy.admin}/upstreams/api/servers/${slow.address}/drain`, { method: 'POST' })
  t.same(JSON.parse(drained.body), { upstream: 'api', server: slow.address, operator: 'draining', previous: 'enabled', inflight: 1 })
  for (let i = 0; i < 4; i++) {
    const r = await get(`${proxy.url}/`, { dispatcher: agent })
    t.equal(r.headers['x-provider'], 'other', 'new requests avoid the draining server')
  }
  const replies = await Promise.all(first)
  t.same(replies.map((r) => [r.status, r.headers['x-provider']]).sort(), [
    [200, 'other'],
    [200, 'slow'],
  ], 'the in-flight request finished')
  t.equal(peer.inflight, 0)
  const row = (await statusOf(proxy.admin)).find((s) => s.name === slow.address)
  t.match(row, { status: 'down', operator: 'draining' })
  await get(`${proxy.admin}/upstreams/api/servers/${slow.address}/disable`, { method: 'POST' })
  await get(`${proxy.admin}/upstreams/api/servers/${slow.address}/enable`, { method: 'POST' })
  t.equal(peer.eligible, true)
  t.same(events.map((e) => [e.source, e.event, e.reason]), [
    ['operator', 'draining', 'admin_drain'],
    ['operator', 'disabled', 'admin_disable'],
    ['operator', 'enabled', 'admin_enable'],
  ])
  const missing = await get(`${proxy.admin}/upstreams/api/servers/127.0.0.1:1/drain`, { method: 'POST' })
  t.equal(missing.status, 404)
  t.match(missing.body, /no server/)
})
