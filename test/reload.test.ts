// Reloads end to end: real providers, the real proxy started from a real file, POST /reload as the trigger.
import t from 'tap'
import { join } from 'node:path'
import { client, get, spawnProvider } from './helpers/index.js'
import { capture, liveSet, proxyConfig, startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'
import type { Config, ReloadResult } from '../src/index.js'

async function postReload(admin: string): Promise<{ status: number; body: ReloadResult }> {
  const r = await get(`${admin}/reload`, { method: 'POST' })
  return { status: r.status, body: JSON.parse(r.body) as ReloadResult }
}

t.test('POST /reload swaps the set; a kept server keeps its Peer, counters and operator state', async (t) => {
  const [a, b, c] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b'), spawnProvider(t, 'c')])
  const { logger, lines } = capture()
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([a.address, b.address]), logger)
  const agent = client(t)
  for (let i = 0; i < 4; i++) t.equal((await get(proxy.url, { dispatcher: agent })).status, 200)
  await get(`${proxy.admin}/upstreams/api/servers/${a.address}/drain`, { method: 'POST' })
  const peerA = proxy.vigil.upstreams.get('api')?.find(a.address)
  const requestsA = peerA?.requests

  writeConfig(proxy.file, proxyConfig([a.address, c.address], { upstreams: { api: { servers: [{ address: a.address, weight: 3 }, { address: c.address }] } } }))
  const r = await postReload(proxy.admin)
  t.equal(r.status, 200)
  t.equal(r.body.ok, true)
  t.equal(r.body.generation, 2)
  t.same(r.body.change?.added, [`api/${c.address}`])
  t.same(r.body.change?.removed, [`api/${b.address}`])
  t.same(r.body.change?.changed, [`api/${a.address} (weight 1->3)`])
  t.same(liveSet(proxy.vigil), [a.address, c.address])

  const kept = proxy.vigil.upstreams.get('api')?.find(a.address)
  t.equal(kept, peerA, 'the same Peer object')
  t.equal(kept?.operator, 'draining', 'operator state survives')
  t.equal(kept?.requests, requestsA, 'counters survive')
  t.equal(kept?.weight, 3, 'the new weight applies in place')
  // a is draining, so only c serves now.
  for (let i = 0; i < 4; i++) t.equal((await get(proxy.url, { dispatcher: agent })).headers['x-provider'], 'c')

  const logged = lines.find((l) => l['msg'] === 'config reloaded')
  t.match(logged, { generation: 2, source: 'admin', added: [`api/${c.address}`], removed: [`api/${b.address}`] }, 'one log line with the diff')
  t.match(proxy.vigil.reloadStatus, { generation: 2, reloads: 1, failures: 0, last: { ok: true, source: 'admin', generation: 2 } })
  const status = JSON.parse((await get(`${proxy.admin}/reload`)).body) as unknown
  t.match(status, { generation: 2, last: { ok: true } }, 'GET /reload reports the last reload')
  t.match(JSON.parse((await get(`${proxy.admin}/status?format=json`)).body), { servers: { generation: 2 }, reload: { ok: true, source: 'admin', generation: 2 } }, 'so does the status page')
  const metrics = (await get(`${proxy.admin}/metrics`)).body
  t.match(metrics, /^vigil_config_generation 2$/m)
  t.match(metrics, /^vigil_config_last_reload_success 1$/m)
  t.match(metrics, /^vigil_config_reloads_total\{result="ok"\} 1$/m)
  t.match(metrics, /^vigil_config_last_reload_timestamp_seconds \d+/m)
})

t.test('a bad file is rejected with its JSON paths and the running set keeps serving', async (t) => {
  const [a, b] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  const { logger, lines } = capture()
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([a.address]), logger)
  writeConfig(proxy.file, JSON.stringify({ ...proxyConfig([b.address]), upstreams: { api: { servers: [{ address: b.address, weight: 0 }] } } }))
  const r = await postReload(proxy.admin)
  t.equal(r.status, 422)
  t.equal(r.body.ok, false)
  t.equal(r.body.generation, 1)
  t.match(r.body.issues, [{ path: 'upstreams.api.servers[0].weight', found: 'number 0' }])
  t.same(liveSet(proxy.vigil), [a.address])
  t.equal((await get(proxy.url)).headers['x-provider'], 'a')
  t.match(lines.find((l) => l['msg'] === 'config reload rejected; the running config stays'), { issues: [{ path: 'upstreams.api.servers[0].weight' }] })
  t.match(proxy.vigil.reloadStatus, { generation: 1, failures: 1, last: { ok: false, source: 'admin' } })
  t.match((await get(`${proxy.admin}/status?format=html`)).body, /last reload <span id="reload">failed<\/span> \(admin, /)
  const metrics = (await get(`${proxy.admin}/metrics`)).body
  t.match(metrics, /^vigil_config_last_reload_success 0$/m)
  t.match(metrics, /^vigil_config_reloads_total\{result="failed"\} 1$/m)

  writeConfig(proxy.file, '{ "listeners": [')
  t.match((await postReload(proxy.admin)).body, { ok: false, issues: [{ found: 'end of file' }] }, 'a syntax error is reported too')
  writeConfig(proxy.file, proxyConfig([b.address]))
  t.match((await postReload(proxy.admin)).body, { ok: true, generation: 2 }, 'the next good file applies')
  t.equal((await get(proxy.url)).headers['x-provider'], 'b')
})

t.test('an in-flight slow request to a removed server completes, then its pool closes', async (t) => {
  const [a, b] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([a.address]))
  await get(`http://${a.address}/_control?delay=1500`)
  const peerA = proxy.vigil.upstreams.get('api')?.find(a.address)
  const slow = get(`${proxy.url}/slow`)
  await until(() => peerA?.inflight === 1, 'the slow request to reach a')
  writeConfig(proxy.file, proxyConfig([b.address]))
  t.match(await proxy.vigil.reload(), { ok: true, source: 'api' }, 'the library call reloads like the others')
  t.equal((await get(proxy.url)).headers['x-provider'], 'b', 'new requests go to the new set at once')
  t.equal(peerA?.pool.closed, true, 'the removed pool takes no new requests')
  t.equal(peerA?.pool.destroyed, false, 'but is not torn down under the request')
  const r = await slow
  t.equal(r.status, 200)
  t.equal(r.headers['x-provider'], 'a', 'the in-flight request finished on the removed server')
  await until(() => peerA?.pool.destroyed === true && proxy.vigil.membership.retiringPools === 0, 'the removed pool to close')
})

t.test('changed timeouts replace pools without failing in-flight requests; listeners are added and removed', async (t) => {
  const a = await spawnProvider(t, 'a')
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([a.address]))
  const peer = proxy.vigil.upstreams.get('api')?.find(a.address)
  const pool = peer?.pool
  await get(`http://${a.address}/_control?delay=800`)
  const inflight = get(proxy.url)
  await until(() => peer?.inflight === 1, 'the request to reach a')
  const next: Config = {
    ...proxyConfig([a.address]),
    listeners: [
      { address: '127.0.0.1:0', upstream: 'api' },
      { address: '127.0.0.2:0', upstream: 'api' },
    ],
    upstreams: { api: { servers: [{ address: a.address }], timeouts: { response: '20s' } } },
  }
  writeConfig(proxy.file, next)
  const r = await postReload(proxy.admin)
  t.equal(r.status, 200)
  t.same(r.body.change?.upstreams.changed, ['api (timeouts)'])
  t.not(peer?.pool, pool, 'a new pool with the new timeouts')
  t.equal(proxy.vigil.upstreams.get('api')?.timeouts.response, 20_000)
  t.equal((await inflight).status, 200, 'the request on the old pool finished')
  t.equal(proxy.vigil.listenerAddresses.length, 2)
  const second = proxy.vigil.listenerAddresses[1]
  await get(`http://${a.address}/_control?delay=0`)
  t.equal((await get(`http://127.0.0.2:${second?.port}/`)).headers['x-provider'], 'a', 'the added listener serves')

  writeConfig(proxy.file, { ...next, listeners: [{ address: '127.0.0.2:0', upstream: 'api' }] })
  t.equal((await postReload(proxy.admin)).status, 200)
  t.equal(proxy.vigil.listenerAddresses.length, 1)
  await t.rejects(get(proxy.url, { dispatcher: client(t) }), { code: 'ECONNREFUSED' }, 'the removed listener is closed')
  t.equal((await get(`http://127.0.0.2:${second?.port}/`)).status, 200, 'the kept one still serves')
})

t.test('a listener that cannot bind fails the whole reload and changes nothing', async (t) => {
  const [a, b] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([a.address]))
  writeConfig(proxy.file, {
    ...proxyConfig([b.address]),
    listeners: [
      { address: '127.0.0.1:0', upstream: 'api' },
      { address: a.address, upstream: 'api' },
    ],
  })
  const r = await postReload(proxy.admin)
  t.equal(r.status, 422)
  t.match(r.body.issues, [{ path: 'listeners[1].address', found: /EADDRINUSE/ }])
  t.same(liveSet(proxy.vigil), [a.address])
  t.equal(proxy.vigil.generation, 1)
})

t.test('groups are added and removed, and routes move to them', async (t) => {
  const [a, b] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([a.address]))
  writeConfig(proxy.file, {
    ...proxyConfig([]),
    listeners: [{ address: '127.0.0.1:0', routes: [{ pathPrefix: '/b', upstream: 'billing' }, { upstream: 'api' }] }],
    upstreams: { api: { servers: [{ address: a.address }] }, billing: { servers: [{ address: b.address }], balance: 'round_robin' } },
  })
  const r = await postReload(proxy.admin)
  t.same(r.body.change?.upstreams.added, ['billing'])
  t.equal((await get(`${proxy.url}/b/x`)).headers['x-provider'], 'b')
  t.equal((await get(`${proxy.url}/x`)).headers['x-provider'], 'a')
  const billing = proxy.vigil.upstreams.get('billing')
  writeConfig(proxy.file, proxyConfig([b.address]))
  const r2 = await postReload(proxy.admin)
  t.same(r2.body.change?.upstreams.removed, ['billing'])
  t.same(r2.body.change?.removed, [`billing/${b.address}`, `api/${a.address}`])
  t.equal(proxy.vigil.upstreams.has('billing'), false)
  t.equal((await get(`${proxy.url}/b/x`)).headers['x-provider'], 'b', 'served by api now')
  await until(() => billing?.peers[0]?.pool.destroyed === true, 'the removed group to close')
})

t.test('POST /reload without a config file reports it', async (t) => {
  const { startProxy } = await import('./helpers/index.js')
  const a = await spawnProvider(t, 'a')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: a.address }] } } })
  const r = await postReload(proxy.admin)
  t.equal(r.status, 422)
  t.match(r.body.error, /without a config file/)
  t.equal((await get(`${proxy.admin}/reload`, { method: 'PATCH' })).status, 405)
})

t.test('log settings apply at once; admin and resolver settings are named as waiting for a restart', async (t) => {
  const { logger, lines } = capture()
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig(['127.0.0.1:1']), logger)
  writeConfig(proxy.file, proxyConfig(['127.0.0.1:1'], { admin: { address: '127.0.0.1:0', token: 'new' }, resolver: { servers: ['127.0.0.1:53'] }, log: { level: 'warn', access: true } }))
  t.equal((await postReload(proxy.admin)).status, 200, 'the old admin listener (no token) still answers')
  t.match(lines.find((l) => l['msg'] === 'these settings change at the next restart'), { settings: ['admin', 'resolver.servers'] })
  t.equal(proxy.vigil.log.level, 'info', "a logger passed in keeps the caller's level (vigil sets the level of its own logger only)")
  t.equal(proxy.vigil.config.log?.access, true)
})

t.test('with active checks, an added server waits for its first check; a kept one keeps its check state', async (t) => {
  const [a, b] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  const active = { type: 'http' as const, interval: '100ms', rise: 1, fall: 1, defaultDown: true, http: { path: '/healthz' } }
  const config = (servers: string[]): Config => ({ ...proxyConfig([]), upstreams: { api: { servers: servers.map((address) => ({ address })), active } } })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), config([a.address]))
  await until(() => proxy.vigil.upstreams.get('api')?.eligibleCount === 1, 'a to pass its first check')
  const targetOfA = () => proxy.vigil.checker.stateOf(proxy.vigil.upstreams.get('api')?.find(a.address) as never)
  const events: string[] = []
  const m = proxy.vigil.membership
  m.on('peers-added', (u, peers) => events.push(`added ${u.name} ${peers.map((p) => p.address).join()}`))
  m.on('peers-removed', (u, peers) => events.push(`removed ${u.name} ${peers.map((p) => p.address).join()}`))
  m.on('upstream-changed', (u, c, fields) => events.push(`changed ${u.name} ${fields.join()} ${c.retry?.tries}`))
  // b fails its health check: default-down, it must not take a single request.
  await get(`http://${b.address}/_control?status=503`)
  const before = targetOfA()
  const checks = before?.checks ?? 0
  writeConfig(proxy.file, { ...config([a.address, b.address]), upstreams: { api: { ...config([a.address, b.address]).upstreams['api'], servers: [{ address: a.address }, { address: b.address }], retry: { tries: 2 } } } })
  t.equal((await postReload(proxy.admin)).status, 200)
  t.same(events, [`added api ${b.address}`, 'changed api retry 2'])
  t.equal(targetOfA(), before, 'the kept server keeps its check target')
  t.ok((targetOfA()?.checks ?? 0) >= checks && checks > 0, 'and its check counts')
  for (let i = 0; i < 4; i++) t.equal((await get(proxy.url)).headers['x-provider'], 'a', 'the added server waits for a passing check')
  await get(`http://${b.address}/_control?status=200`)
  await until(async () => (await get(proxy.url)).headers['x-provider'] === 'b', 'b to serve once its check passes')
  writeConfig(proxy.file, config([b.address]))
  await postReload(proxy.admin)
  t.same(events.slice(2), [`removed api ${a.address}`, 'changed api retry undefined'])
})

t.test('a kept server stays ejected across a reload; an added one gets clean passive state and takes traffic', async (t) => {
  const [a, b, c] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b'), spawnProvider(t, 'c')])
  const passive = { maxFails: 1, failTimeout: '1m', failOn: ['http_503'] }
  const config = (servers: string[]): Config => ({ ...proxyConfig([]), upstreams: { api: { servers: servers.map((address) => ({ address })), passive } } })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), config([a.address, b.address]))
  await get(`http://${b.address}/_control?status=503`)
  const peerB = proxy.vigil.upstreams.get('api')?.find(b.address)
  await until(async () => {
    await get(proxy.url)
    return peerB?.passiveOk === false
  }, 'b to be ejected')
  const health = peerB?.passive
  writeConfig(proxy.file, config([a.address, b.address, c.address]))
  t.equal((await postReload(proxy.admin)).status, 200)
  t.equal(peerB?.passive, health, 'the same passive state')
  t.equal(peerB?.passiveOk, false, 'still ejected')
  t.equal(health?.ejections, 1)
  const peerC = proxy.vigil.upstreams.get('api')?.find(c.address)
  t.equal(peerC?.passive?.state, 'ok', 'the added server starts clean')
  const seen = new Set<unknown>()
  for (let i = 0; i < 6; i++) seen.add((await get(proxy.url)).headers['x-provider'])
  t.same([...seen].sort(), ['a', 'c'], 'the ejected one gets nothing, the added one serves')
})
