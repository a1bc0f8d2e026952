// Unit tests of the balancing policies: share per server over many picks, load awareness, maxConns, tried.
import t, { type Test } from 'tap'
import type { Balancer } from '../src/balance/balancer.js'
import { createBalancer } from '../src/balance/index.js'
import { PeakEwma } from '../src/balance/peak-ewma.js'
import { Peer } from '../src/upstream/peer.js'
import type { Upstream as UpstreamConfig } from '../src/config/schema.js'

const pool = { connectTimeout: 1000, responseTimeout: 1000, idleTimeout: 1000, keepAlive: 1000, connections: 1 }

function group(t: Test, servers: { weight?: number; maxConns?: number }[]): Peer[] {
  const peers = servers.map((s, i) => new Peer({ address: `127.0.0.1:${9001 + i}`, ...s }, pool))
  t.teardown(() => Promise.all(peers.map((p) => p.close())))
  return peers
}

/** `prepared`: the list is handed to prepare() first, as the Upstream does, so tables (alias, ring) serve the picks. */
function balancer(balance: NonNullable<UpstreamConfig['balance']>, peers: readonly Peer[], prepared = false): Balancer {
  const b = createBalancer({ balance, servers: peers.map((p) => ({ address: p.address, weight: p.weight })) })
  if (prepared) b.prepare?.([peers])
  return b
}

/** Share of `n` picks per peer, in peer order. */
function shares(b: Balancer, peers: readonly Peer[], n: number): number[] {
  const counts = new Map<Peer | undefined, number>()
  for (let i = 0; i < n; i++) {
    const p = b.pick(peers, [], undefined)
    counts.set(p, (counts.get(p) ?? 0) + 1)
  }
  return peers.map((p) => (counts.get(p) ?? 0) / n)
}

const POLICIES = ['round_robin', 'least_conn', 'random', 'p2c', 'ewma'] as const
// 20k picks: a random policy's share has a standard deviation under 0.004, so 0.02 is five of them.
const PICKS = 20_000
const TOLERANCE = 0.02

for (const policy of POLICIES) for (const prepared of [false, true]) {
  const how = prepared ? ' (prepared list)' : ''
  t.test(`${policy}: share per server follows weights 5:3:2 within ${TOLERANCE} over ${PICKS} picks${how}`, async (t) => {
    const peers = group(t, [{ weight: 5 }, { weight: 3 }, { weight: 2 }])
    const got = shares(balancer(policy, peers, prepared), peers, PICKS)
    const want = [0.5, 0.3, 0.2]
    got.forEach((s, i) => t.ok(Math.abs(s - (want[i] as number)) <= TOLERANCE, `server ${i}: ${s.toFixed(4)} vs ${want[i]}`))
  })

  t.test(`${policy}: skips tried peers and peers at maxConns; nothing left gives undefined${how}`, async (t) => {
    const peers = group(t, [{ weight: 1 }, { weight: 1, maxConns: 2 }, { weight: 1 }])
    const [a, b, c] = peers as [Peer, Peer, Peer]
    const bal = balancer(policy, peers, prepared)
    b.inflight = 2
    const picked = Array.from({ length: 200 }, () => bal.pick(peers, [a], undefined))
    t.ok(picked.every((p) => p === c), 'a was tried and b is at its limit: only c is left')
    t.equal(bal.pick(peers, [a, c], undefined), undefined)
    b.inflight = 1
    t.equal(bal.pick(peers, [a, c], undefined), b, 'under its limit again')
    t.equal(bal.pick([], [], undefined), undefined)
  })
}

t.test('least_conn: fewest in flight per weight wins, compared cross-multiplied', async (t) => {
  const peers = group(t, [{ weight: 1 }, { weight: 3 }, { weight: 1 }])
  const [a, b, c] = peers as [Peer, Peer, Peer]
  const bal = balancer('least_conn', peers)
  a.inflight = 1
  b.inflight = 2 // 2/3 per weight unit: less loaded than a
  c.inflight = 1
  t.equal(bal.pick(peers, [], undefined), b)
  b.inflight = 3 // 1 per unit: ties a and c, broken by weighted round robin among the three
  const seq = Array.from({ length: 5 }, () => bal.pick(peers, [], undefined)?.port)
  t.same(seq.sort(), [9001, 9002, 9002, 9002, 9003].sort(), 'ties share picks 1:3:1')
})

for (const policy of ['p2c', 'ewma'] as const) for (const prepared of [false, true]) {
  t.test(`${policy}: a peer with many requests in flight gets far fewer picks${prepared ? ' (prepared list)' : ''}`, async (t) => {
    const peers = group(t, [{}, {}, {}])
    const [a] = peers as [Peer, Peer, Peer]
    a.inflight = 50
    const got = shares(balancer(policy, peers, prepared), peers, 3000)
    // a loses every comparison it is drawn into, and is drawn alone never: its share is 0.
    t.equal(got[0], 0, `busy peer share ${got[0]}`)
  })
}

t.test('ewma: a slower peer is avoided in proportion to latency x load', async (t) => {
  const peers = group(t, [{}, {}, {}])
  const [a, b, c] = peers as [Peer, Peer, Peer]
  a.recordLatency(50)
  b.recordLatency(1)
  c.recordLatency(1)
  const got = shares(balancer('ewma', peers), peers, 3000)
  t.equal(got[0], 0, 'the 50 ms peer loses every comparison while the others are idle')
  b.inflight = 100
  c.inflight = 100
  const loaded = shares(balancer('ewma', peers), peers, 3000)
  t.ok((loaded[0] as number) > 0.5, `with 100 in flight elsewhere the slow idle peer wins: ${loaded[0]}`)
})

t.test('peak EWMA: peaks at once, recovers exponentially, decays while idle', async (t) => {
  const e = new PeakEwma(10_000)
  t.equal(e.estimate(0), 10, 'default RTT before any sample')
  e.observe(2, 0)
  t.equal(e.estimate(0), 2, 'first sample replaces the default')
  e.observe(50, 100)
  t.equal(e.estimate(100), 50, 'a slower sample is taken as the new peak')
  e.observe(1, 10_100)
  const after = e.estimate(10_100)
  t.ok(after > 1 && after < 50 * Math.exp(-1) + 1, `one decay period later a fast sample pulls it down: ${after}`)
  t.ok(e.estimate(60_100) < after * 0.01, 'five periods without samples decay it toward zero')
  const peers = group(t, [{}])
  t.equal((peers[0] as Peer).latency, 10, 'a peer exposes its estimate for the status page')
})

t.test('alias table: draws follow the effective weights, including a tiny and a dominant one', async (t) => {
  const { WeightTable } = await import('../src/balance/balancer.js')
  const peers = group(t, [{ weight: 1 }, { weight: 100 }, { weight: 7 }, { weight: 1 }])
  ;(peers[0] as Peer).effectiveWeight = 0.1 // slow start's 10%
  const table = new WeightTable(peers)
  const counts = new Map<Peer, number>()
  for (let i = 0; i < PICKS; i++) {
    const p = table.draw()
    counts.set(p, (counts.get(p) ?? 0) + 1)
  }
  const total = peers.reduce((n, p) => n + p.effectiveWeight, 0)
  peers.forEach((p, i) => {
    const got = (counts.get(p) ?? 0) / PICKS
    t.ok(Math.abs(got - p.effectiveWeight / total) <= TOLERANCE, `server ${i}: ${got.toFixed(4)} vs ${(p.effectiveWeight / total).toFixed(4)}`)
  })
})

t.test('p2c on an Upstream: tables follow the snapshot, so an ejected peer gets nothing and a returning one its share', async (t) => {
  const { Upstream } = await import('../src/upstream/upstream.js')
  const u = new Upstream('api', { balance: 'p2c', servers: [{ address: '127.0.0.1:9001' }, { address: '127.0.0.1:9002' }, { address: '127.0.0.1:9003' }] })
  t.teardown(() => u.close())
  const [a] = u.peers as [Peer, Peer, Peer]
  const count = (n: number): number => {
    let got = 0
    for (let i = 0; i < n; i++) if (u.select([]) === a) got++
    return got
  }
  a.passiveOk = false
  u.refresh()
  t.equal(count(1000), 0, 'out of the snapshot: never picked')
  a.passiveOk = true
  u.refresh()
  t.ok(count(3000) > 600, 'back in: about a third again')
})
