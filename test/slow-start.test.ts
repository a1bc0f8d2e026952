// Slow start: the ramp on a fake clock, the eligibility transitions that start it, and the share it gives end to end.
import t, { type Test } from 'tap'
import { SlowStart, MIN_WEIGHT_SHARE } from '../src/balance/slow-start.js'
import { createBalancer } from '../src/balance/index.js'
import { Peer } from '../src/upstream/peer.js'
import { Upstream } from '../src/upstream/upstream.js'
import type { Upstream as UpstreamConfig } from '../src/config/schema.js'
import { client, get, httpServer, startProxy } from './helpers/index.js'

const pool = { connectTimeout: 1000, responseTimeout: 1000, idleTimeout: 1000, keepAlive: 1000, connections: 1 }

function upstream(t: Test, config: Partial<Omit<UpstreamConfig, 'servers'>>): Upstream {
  const u = new Upstream('api', { servers: [{ address: '127.0.0.1:9001' }, { address: '127.0.0.1:9002' }], ...config })
  t.teardown(() => u.close())
  return u
}

t.test('the effective weight ramps linearly from 10% to 100% over the window (fake clock)', async (t) => {
  let now = 1_000_000
  const ramp = new SlowStart(10_000, () => now)
  t.teardown(() => ramp.stop())
  const peers = [new Peer({ address: '127.0.0.1:9001', weight: 4 }, pool), new Peer({ address: '127.0.0.1:9002', weight: 4 }, pool)]
  t.teardown(() => Promise.all(peers.map((p) => p.close())))
  const [a, b] = peers as [Peer, Peer]
  for (const policy of ['round_robin', 'least_conn', 'random', 'p2c', 'ewma'] as const) {
    const start = now
    ramp.begin(b)
    t.equal(b.effectiveWeight, 4 * MIN_WEIGHT_SHARE, 'starts at 10%')
    t.equal(ramp.active, 1)
    const bal = createBalancer({ balance: policy, servers: [{ address: a.address }, { address: b.address }] })
    const shareOfB: number[] = []
    for (const at of [0, 2_500, 5_000, 7_500, 10_000]) {
      now = start + at
      ramp.update(now)
      let got = 0
      for (let i = 0; i < 4000; i++) if (bal.pick(peers, [], undefined) === b) got++
      shareOfB.push(got / 4000)
    }
    t.ok(
      shareOfB.every((s, i) => i === 0 || s > (shareOfB[i - 1] as number)),
      `${policy}: b's share grows over the window: ${shareOfB.map((s) => s.toFixed(3)).join(' ')}`,
    )
    // Expected 0.1/1.1, 0.25/1.25, 0.5/1.5, 0.75/1.75, 1/2; random ones within 0.04 over 4000 picks.
    const want = [0.1 / 1.1, 0.25 / 1.25, 0.5 / 1.5, 0.75 / 1.75, 0.5]
    t.ok(shareOfB.every((s, i) => Math.abs(s - (want[i] as number)) < 0.04), `${policy}: shares match the ramp`)
    t.equal(b.effectiveWeight, 4, 'full weight at the end of the window')
    t.equal(ramp.active, 0, 'and the ramp is over')
  }
})

t.test('a peer that becomes eligible again starts its ramp; the first snapshot and a zero window do not', async (t) => {
  const u = upstream(t, { slowStart: '1h' })
  const [a, b] = u.peers as [Peer, Peer]
  t.equal(a.effectiveWeight, 1, 'no ramp at start')
  b.passiveOk = false
  u.refresh()
  t.equal(u.slowStart.active, 0, 'leaving the snapshot does not ramp')
  b.passiveOk = true
  u.refresh()
  t.equal(b.effectiveWeight, MIN_WEIGHT_SHARE, 'back from ejection: 10%')
  a.operator = 'disabled'
  u.refresh()
  a.operator = 'enabled'
  u.refresh()
  t.equal(a.effectiveWeight, MIN_WEIGHT_SHARE, 're-enabled: 10%')
  const off = upstream(t, {})
  const c = off.peers[0] as Peer
  c.checkUp = false
  off.refresh()
  c.checkUp = true
  off.refresh()
  t.equal(c.effectiveWeight, 1, 'without slowStart a recovered peer gets its full weight at once')
})

t.test('end to end: a re-enabled provider gets a small share at first and its full share after the window', async (t) => {
  const servers = await Promise.all(
    ['a', 'b'].map((name) =>
      httpServer(t, (_req, res) => {
        res.writeHead(200, { 'x-provider': name })
        res.end()
      }),
    ),
  )
  const proxy = await startProxy(t, { upstreams: { api: { slowStart: '4s', servers: servers.map((s) => ({ address: s.address })) } } })
  const agent = client(t)
  const shareOfB = async (n: number): Promise<number> => {
    let b = 0
    for (let i = 0; i < n; i++) if ((await get(`${proxy.url}/`, { dispatcher: agent })).headers['x-provider'] === 'b') b++
    return b / n
  }
  const b = (servers[1] as { address: string }).address
  await fetch(`${proxy.admin}/upstreams/api/servers/${b}/disable`, { method: 'POST' })
  await fetch(`${proxy.admin}/upstreams/api/servers/${b}/enable`, { method: 'POST' })
  const early = await shareOfB(20)
  await new Promise((resolve) => setTimeout(resolve, 4_500))
  const late = await shareOfB(40)
  t.ok(early < 0.3, `just after it is enabled: ${early}`)
  t.ok(late > 0.4, `after the window: ${late}`)
})
