// The per-server state registry (src/upstream/hosts.ts): state survives generations by key, is counted by the
// generations holding it, and a released server's pool closes. End to end: update-matrix and reload tests.
import t from 'tap'
import { Hosts } from '../src/upstream/hosts.js'
import { connections } from '../src/upstream/upstream.js'
import { serverSpec } from '../src/config/diff.js'
import { Membership } from '../src/upstream/membership.js'

const spec = (address: string, weight = 1) => serverSpec({ address, weight })

t.test('a server is one state holder while any generation holds it, and leaves with the last', async (t) => {
  const hosts = new Hosts(() => 1_000)
  t.teardown(() => hosts.close())
  const c = connections({ servers: [] })
  const first = hosts.acquire('api', spec('127.0.0.1:9001'), c)
  first.requests = 7
  // The next generation acquires before the previous one releases: the same holder, with the new settings.
  const next = hosts.acquire('api', spec('127.0.0.1:9001', 5), c)
  t.equal(next, first, 'kept by its key')
  t.equal(next.requests, 7, 'its counters kept')
  t.equal(next.weight, 5, "the new generation's weight")
  t.equal(hosts.release('api', first), false, 'still held by the new generation')
  t.equal(first.pool.closed, false, 'its pool stays open')
  t.equal(hosts.release('api', first), true, 'the last holder lets it go')
  t.equal(first.pool.closed, true, 'its pool takes no new requests')
  t.equal(hosts.release('api', first), false, 'a second release of a gone server is nothing')
  const again = hosts.acquire('api', spec('127.0.0.1:9001'), c)
  t.not(again, first, 'the address coming back later starts afresh')
  t.equal(again.requests, 0)
  hosts.release('api', again)
  await t.resolves(hosts.close())
})

t.test('groups keep their own state for one address; new connection settings mean a new pool', async (t) => {
  const hosts = new Hosts(() => 1_000)
  t.teardown(() => hosts.close())
  const plain = connections({ servers: [] })
  const a = hosts.acquire('api', spec('127.0.0.1:9001'), plain)
  const b = hosts.acquire('billing', spec('127.0.0.1:9001'), plain)
  t.not(a, b, 'one holder per group')
  const pool = a.pool
  t.equal(hosts.acquire('api', spec('127.0.0.1:9001'), connections({ servers: [] })).pool, pool, 'equal settings built again: the same pool')
  hosts.release('api', a)
  const slower = connections({ servers: [], timeouts: { response: '45s' } })
  t.not(slower.key, plain.key, 'the key follows the timeouts')
  t.equal(hosts.acquire('api', spec('127.0.0.1:9001'), slower), a, 'the same state holder')
  t.not(a.pool, pool, 'with a new pool')
  t.equal(pool.closed, true, 'the old pool finishes what it carries and takes nothing new')
  t.not(connections({ servers: [], maxResponseSize: 10 }).key, plain.key, 'and the response limit')
  t.equal(connections({ servers: [], ewmaDecay: '3s' }).key, plain.key, 'but not the latency decay (retuned in place)')
  t.equal(hosts.acquire('api', spec('127.0.0.1:9001'), { ...slower, latencyDecay: 3_000 }).rtt.decay, 3_000, 'which every acquire sets')
  for (let i = 0; i < 3; i++) hosts.release('api', a)
  hosts.release('billing', b)
  t.equal(b.pool.closed, true)
})

t.test('a new group prepared and discarded leaves nothing behind: prepared again, it starts with open pools', async (t) => {
  const m = new Membership({ api: { servers: [{ address: '127.0.0.1:9001' }] } }, { retireGrace: () => 1_000 })
  t.teardown(async () => {
    await Promise.all([...m.upstreams.values()].map((u) => u.close()))
    await m.close()
  })
  const next = { api: { servers: [{ address: '127.0.0.1:9001' }] }, billing: { servers: [{ address: '127.0.0.1:9002' }] } }
  const first = m.prepare(next)
  const discarded = first.upstreams.get('billing')?.peers[0]
  first.discard()
  t.equal(discarded?.pool.closed, true, 'the discarded group released its pool')
  const second = m.prepare(next)
  second.commit('api')
  const live = m.upstreams.get('billing')?.peers[0]
  t.not(live, discarded, 'a new state holder')
  t.equal(live?.pool.closed, false, 'with an open pool')
})
