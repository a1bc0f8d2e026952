// An idle proxy is not woken for nothing: the watchdog and the check's lag ticker run only while something is in
// flight (each wake costs CPU on a small VM: an idle vigil spent 16 ms a second on its timers), and the first
// request after a quiet spell wakes the watchdog. Real provider, the real proxy, real sockets.
import t from 'tap'
import { request } from 'undici'
import { httpServer, startProxy } from './helpers/index.js'
import { until } from './helpers/config-file.js'

t.test('idle: the watchdog sleeps and a request wakes it, the lag ticker runs only inside a check', async (t) => {
  const held: (() => void)[] = []
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/held') held.push(() => res.end('late'))
    else res.end('ok')
  })
  const { vigil, url } = await startProxy(t, {
    upstreams: {
      api: {
        servers: [{ address: up.address }],
        active: { type: 'http', interval: '300ms', timeout: '1s', http: { path: '/healthz' } },
        passive: { mode: 'nginx', maxFails: 2, failTimeout: '5s' },
      },
    },
  })
  await until(() => !vigil.watchdog.awake, 'the watchdog asleep')
  await until(() => !vigil.checker.lag.ticking, 'the lag ticker stopped between checks')
  const [target] = [...vigil.checker.all]
  const checks = target?.checks ?? 0
  await until(() => (target?.checks ?? 0) >= checks + 2, 'two more checks')
  t.equal(target?.last?.result, 'success', 'checks go on while the proxy idles, with the ticker asleep between them')

  const answer = request(`${url}/held`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }))
  await until(() => held.length === 1, 'the request reached the provider')
  t.ok(vigil.watchdog.awake, 'a request in flight wakes the watchdog')
  ;(held.shift() as () => void)()
  t.same(await answer, { status: 200, body: 'late' }, 'the request is answered')
  await until(() => !vigil.watchdog.awake, 'asleep again once nothing is in flight')

  const again = await request(`${url}/`)
  t.equal(again.statusCode, 200, 'the next request after the quiet spell is served')
  await again.body.text()
})
