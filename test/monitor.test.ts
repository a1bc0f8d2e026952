// The monitor: the one interface the data path reports attempts to. Real proxy, real provider.
import t from 'tap'
import type { Peer } from '../src/upstream/peer.js'
import type { Upstream } from '../src/upstream/upstream.js'
import type { AttemptObserver } from '../src/health/monitor.js'
import { client, get, httpServer, startProxy } from './helpers/index.js'

t.test('every settled attempt reaches every subscriber once, also one that subscribes while outcomes flow', async (t) => {
  const ok = await httpServer(t, (_req, res) => res.end('ok'))
  const teapot = await httpServer(t, (_req, res) => {
    res.statusCode = 418
    res.end()
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: ok.address }, { address: teapot.address }] } } })
  const u = proxy.vigil.upstreams.get('api') as Upstream
  const seen: { peer: string; status: number }[] = []
  const late: number[] = []
  const lateObserver: AttemptObserver = { finished: (_p, status) => late.push(status) }
  const first: AttemptObserver = {
    finished(peer: Peer, status: number) {
      seen.push({ peer: peer.address, status })
      // Subscribing from inside a report: this report is not delivered to it, every later one is.
      if (seen.length === 2) u.monitor.subscribe(lateObserver)
    },
  }
  u.monitor.subscribe(first)
  u.monitor.subscribe(first)
  const agent = client(t)
  for (let i = 0; i < 10; i++) await get(`${proxy.url}/`, { dispatcher: agent })
  t.equal(seen.length, 10, 'one report per attempt, however often the same subscriber subscribed')
  t.equal(late.length, 8, 'the late subscriber sees every attempt after it joined')
  t.same(new Set(seen.map((s) => s.status)), new Set([200, 418]), 'the status each server answered')
  t.equal(seen.filter((s) => s.peer === teapot.address).length, 5, 'round robin: half each')
  t.equal(u.peers.reduce((n, p) => n + p.requests, 0), 10, 'the servers counters come from the same reports')
  t.equal(u.peers.reduce((n, p) => n + p.inflight, 0), 0, 'every attempt released its server')
  u.monitor.unsubscribe(first)
  await get(`${proxy.url}/`, { dispatcher: agent })
  t.equal(seen.length, 10, 'unsubscribed: no more reports')
  t.equal(late.length, 9)
})
