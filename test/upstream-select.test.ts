// Upstream.select across tiers with maxConns, and the refusal reason forward() answers with.
import t from 'tap'
import { Upstream } from '../src/upstream/upstream.js'
import type { Peer } from '../src/upstream/peer.js'

for (const balance of ['round_robin', 'least_conn', 'random', 'p2c', 'ewma', 'hash'] as const) {
  t.test(`${balance}: backups take over when primaries are full, and the refusal names maxConns`, async (t) => {
    const u = new Upstream('api', {
      balance,
      servers: [
        { address: '127.0.0.1:9001', maxConns: 1 },
        { address: '127.0.0.1:9002', maxConns: 1 },
        { address: '127.0.0.1:9003', backup: true, maxConns: 1 },
      ],
      queue: { size: 2 },
    })
    t.teardown(() => u.close())
    const [a, b, backup] = u.peers as [Peer, Peer, Peer]
    const req = { headers: {}, socket: { remoteAddress: '192.0.2.1' } }
    t.not(u.select([], req)?.backup, true, 'a primary while one has room')
    a.inflight = 1
    b.inflight = 1
    t.equal(u.select([], req), backup, 'primaries full: the backup')
    backup.inflight = 1
    t.equal(u.select([], req), undefined)
    t.equal(u.refusal().code, 'max_conns')
    t.equal(u.queue?.timeout, 60_000, "nginx's default queue timeout")
    a.operator = 'disabled'
    b.operator = 'disabled'
    u.refresh()
    t.equal(u.refusal().code, 'max_conns', 'the backup alone is full')
    backup.operator = 'disabled'
    u.refresh()
    t.equal(u.refusal().code, 'no_live_upstreams', 'nothing eligible')
  })
}

t.test('a peer becoming eligible lets queued requests in', async (t) => {
  const u = new Upstream('api', { servers: [{ address: '127.0.0.1:9001', maxConns: 1 }], queue: { size: 2, timeout: '1s' } })
  t.teardown(() => u.close())
  const p = u.peers[0] as Peer
  const admitted: number[] = []
  p.inflight = 1
  u.queue?.offer({ admit: () => admitted.push(1), refuse: () => undefined })
  u.queue?.offer({ admit: () => admitted.push(2), refuse: () => undefined })
  t.equal(u.queue?.offer({ admit: () => admitted.push(3), refuse: () => undefined }), false, 'full')
  u.admitWaiting()
  t.same(admitted, [], 'no room yet')
  p.inflight = 0
  u.refresh()
  t.same(admitted, [1, 2], 'in order, while there is room (the fake waiters take none)')
})
