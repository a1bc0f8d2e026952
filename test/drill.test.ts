// One short drill end to end (real providers, the real vigil CLI, autocannon), with bounds that only prove the
// harness works: the full drill is `npm run drill`, not a test.
import t, { type Test } from 'tap'
import { runScenario } from '../bench/drill/drill.js'
import { ProviderSet } from '../bench/drill/providers.js'
import { ProviderRecorder } from '../bench/drill/timeline.js'
import { scenarioNamed } from '../bench/drill/scenarios.js'
import { isInstalled, startProxy, type ProxySpec } from '../bench/lib/proxies.js'
import { sleep } from '../bench/lib/procs.js'
import { client, get } from './helpers/index.js'

t.test('provider-side counts survive a SIGKILL and add up across a restart', async (t) => {
  const providers = new ProviderSet()
  t.teardown(() => providers.stopAll())
  const address = await providers.start('a')
  const origin = Date.now()
  const counts = new ProviderRecorder(origin)
  providers.sink = counts
  for (let i = 0; i < 5; i++) t.equal((await get(`http://${address}/x`)).status, 200)
  await sleep(350) // the intervals with traffic close and are written
  await providers.kill('a')
  t.equal(counts.total('a'), 5, 'every request counted before the kill is kept')
  await providers.restart('a')
  t.same(providers.servers(), [address], 'restarted on the same port')
  await providers.control('a', 'status=503')
  t.equal((await get(`http://${address}/x`)).status, 503)
  await get(`http://${address}/healthz`) // health checks are not counted as traffic
  await providers.stopAll() // a graceful stop writes the open interval
  t.equal(counts.total('a'), 6)
})

t.test('fault actions on real provider processes', async (t) => {
  const providers = new ProviderSet()
  t.teardown(() => providers.stopAll())
  const a = await providers.start('a')
  providers.onReplace = async (servers) => `reloaded with ${servers.join(' ')}`
  await providers.freeze('a')
  await t.rejects(fetch(`http://${a}/`, { signal: AbortSignal.timeout(300) }), 'a frozen provider accepts but does not answer')
  await providers.thaw('a')
  t.equal((await get(`http://${a}/`)).status, 200)
  const { replacement, note } = await providers.replace('a')
  t.equal(replacement, 'a2')
  const [fresh] = providers.servers()
  t.not(fresh, a, 'the replacement listens on a new port')
  t.equal(note, `reloaded with ${fresh}`)
  await providers.retire('a')
  await t.rejects(get(`http://${a}/`), 'the replaced provider is gone')
  t.equal((await get(`http://${fresh}/`)).body, 'hello from a2\n')
  await providers.burn(20) // busy processes that end by themselves
  await t.rejects(providers.kill('nobody'), /no provider named "nobody"/)
})

/** Providers a and b, and a proxy that serves a. */
async function proxyInFrontOfA(t: Test, spec: ProxySpec) {
  const providers = new ProviderSet()
  t.teardown(() => providers.stopAll())
  const a = await providers.start('a')
  const b = await providers.start('b')
  const proxy = await startProxy(spec, [a])
  t.teardown(() => proxy.stop())
  // A fresh agent per proxy: the shared global one may hold a keep-alive socket to an earlier subtest's proxy that
  // had the same port, and reusing it reads ECONNRESET.
  const agent = client(t)
  t.equal((await get(`http://127.0.0.1:${proxy.port}/`, { dispatcher: agent })).body, 'hello from a\n', `${spec.name} serves a`)
  return { a, b, proxy, agent }
}

t.test('nginx from bench/peers/ forwards and reloads', { skip: !(await isInstalled('nginx')) && 'nginx is not installed' }, async (t) => {
  const { b, proxy: nginx, agent } = await proxyInFrontOfA(t, { name: 'nginx', kind: 'nginx' })
  t.match(await nginx.reload([b]), /SIGHUP/)
  let body = ''
  for (let i = 0; i < 50 && body !== 'hello from b\n'; i++) {
    await sleep(100)
    // nginx's old workers close their idle keep-alive connections as they retire: a reused one may be cut.
    body = (await get(`http://127.0.0.1:${nginx.port}/`, { dispatcher: agent }).catch(() => ({ body: '' }))).body
  }
  t.equal(body, 'hello from b\n', 'the new config serves')
})

t.test('vigil reload hook reports what happened', async (t) => {
  const { a, b, proxy } = await proxyInFrontOfA(t, { name: 'vigil', kind: 'vigil' })
  const note = await proxy.reload([b])
  t.match(note, /^(POST \/reload|SIGHUP \(POST \/reload answered \d+\)); (applied|NOT applied \(still serving 127\.0\.0\.1:\d+\))$/)
  const forwarder = await startProxy({ name: 'http-proxy', kind: 'http-proxy' }, [b])
  t.teardown(() => forwarder.stop())
  t.equal((await get(`http://127.0.0.1:${forwarder.port}/`, { dispatcher: client(t) })).body, 'hello from b\n')
  t.match(await forwarder.reload([a]), /not supported/)
})

/**
 * A short errors drill (`scenario`: the fault is `fault`, the repair `repair`) against `spec`, with the checks every
 * drill's figures must pass: both steps ran in order, the load ran, every provider served in the first second and
 * no client failed before the fault.
 */
async function shortErrorsDrill(t: Test, scenario: string, spec: ProxySpec, fault: string, repair: string) {
  const timing = { before: 1_500, fault: 2_000, after: 1_500, flap: 0, flapHalf: 1_000, step: 0, settle: 0 }
  const load = { rate: 100, connections: 10, timeout: 5 }
  const r = await runScenario(scenarioNamed(scenario), spec, timing, load)
  t.equal(r.status, 'ok', r.note ?? 'ran')
  const c = r.client
  const s = r.series
  if (c === undefined || s === undefined || r.events === undefined) throw new Error('no figures')
  t.same(
    r.events.map((e) => [e.action, e.arg, e.mark]),
    [
      ['control', fault, 'fault'],
      ['control', repair, 'repair'],
    ],
  )
  t.ok((r.events[0]?.ran ?? 0) < (r.events[1]?.ran ?? 0))
  t.ok(c.requests > 0.3 * load.rate * 5, `load ran (${c.requests} requests)`)
  for (const p of ['a', 'b', 'c']) t.ok((s.providers[p]?.[0] ?? 0) > 0, `${p} got traffic in the first second`)
  t.equal((s.errors[0] ?? 0) + (s.non2xx[0] ?? 0), 0, 'no client errors before the fault')
  return { r, c, s }
}

t.test('a short "errors" drill against vigil', async (t) => {
  const { r, s } = await shortErrorsDrill(t, 'errors', { name: 'vigil-passive', kind: 'vigil', fragment: 'vigil-passive.json' }, 'status=503', 'status=200')
  const served = Object.values(s.providers).reduce((n, v) => n + v.reduce((a, b) => a + b, 0), 0)
  const answered = s.ok.reduce((a, b) => a + b, 0)
  t.ok(served >= 0.8 * answered, `providers counted what the clients got (${served} served, ${answered} ok)`)
  t.equal(r.falseEjections, 0, 'nothing idle for a second at this load')
  t.equal(r.detected?.endsWith('/1'), true)
  t.ok(r.faultyShare !== undefined && r.faultyShare < 0.5, 'the faulty provider never took more than its share')
})

t.test('a short "grpc-errors" drill against vigil: gRPC providers, gRPC load, the same figures', async (t) => {
  const spec: ProxySpec = { name: 'vigil-grpc', kind: 'vigil', fragment: 'vigil-grpc.json', listener: { http2: true } }
  const { c } = await shortErrorsDrill(t, 'grpc-errors', spec, 'fail=14', 'fail=0')
  t.ok(c.non2xx > 0, `calls answered UNAVAILABLE are reported as non-2xx (${c.non2xx})`)
})
