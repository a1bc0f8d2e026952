// Consistent hashing: unit tests of stability, weights, remapping and bounded load; end to end through the proxy.
import t, { type Test } from 'tap'
import { ConsistentHash, hashString, parseHashKey, type HashKey } from '../src/balance/hash.js'
import type { PickRequest } from '../src/balance/balancer.js'
import { Peer } from '../src/upstream/peer.js'
import { client, get, httpServer, startProxy } from './helpers/index.js'

const pool = { connectTimeout: 1000, responseTimeout: 1000, idleTimeout: 1000, keepAlive: 1000, connections: 1 }
const KEYS = 10_000

function group(t: Test, weights: number[], first = 1): Peer[] {
  const peers = weights.map((w, i) => new Peer({ address: `10.0.0.${first + i}:8080`, weight: w }, pool))
  t.teardown(() => Promise.all(peers.map((p) => p.close())))
  return peers
}

function ring(peers: readonly Peer[], key: HashKey = { kind: 'header', name: 'x-user' }, balanceFactor = 0): ConsistentHash {
  return new ConsistentHash({ key, balanceFactor, totalWeight: peers.reduce((s, p) => s + p.weight, 0) })
}

const user = (i: number): PickRequest => ({ headers: { 'x-user': `user-${i}` }, socket: {} })

/** The peer each of the 10k keys maps to. */
function mapping(h: ConsistentHash, peers: readonly Peer[]): (Peer | undefined)[] {
  return Array.from({ length: KEYS }, (_, i) => h.pick(peers, [], user(i)))
}

t.test('the same key always goes to the same server, and two rings over the same servers agree', async (t) => {
  const peers = group(t, [1, 1, 1])
  const a = mapping(ring(peers), peers)
  t.same(mapping(ring(peers), peers), a, 'a fresh ring maps every key the same way')
  t.same(mapping(ring(peers), [...peers].reverse()), a, 'server order does not matter, only addresses')
})

t.test('prepared rings: each list gets its ring in prepare(), the mapping is the same as an unprepared one, and a snapshot change moves only the lost server\'s keys', async (t) => {
  const peers = group(t, [1, 1, 1, 1])
  const want = mapping(ring(peers), peers)
  const h = ring(peers)
  const backups = group(t, [1], 20)
  h.prepare([peers, backups])
  t.same(mapping(h, peers), want, 'prepared primaries map as an unprepared ring does')
  t.equal(h.pick(backups, [], user(1)), backups[0], 'the backup tier has its own ring')
  const without = peers.slice(1)
  h.prepare([without, backups])
  const after = mapping(h, without)
  t.ok(after.every((p, i) => want[i] === peers[0] || p === want[i]), 'only keys of the server that left move')
})

t.test(`share per server follows weights within 20% of each share over ${KEYS} keys`, async (t) => {
  for (const weights of [
    [1, 1, 1],
    [3, 2, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
  ]) {
    const peers = group(t, weights)
    const total = weights.reduce((s, w) => s + w, 0)
    const got = mapping(ring(peers), peers)
    for (const p of peers) {
      const ratio = got.filter((x) => x === p).length / KEYS / (p.weight / total)
      t.ok(ratio > 0.8 && ratio < 1.2, `weights ${weights.join(':')}: ${p.address} gets ${ratio.toFixed(3)} of its share`)
    }
  }
})

t.test('removing one of 10 servers remaps only its own keys, about 1/10; adding one takes about 1/11', async (t) => {
  const peers = group(t, Array<number>(10).fill(1))
  const h = ring(peers)
  const before = mapping(h, peers)
  const gone = peers[3] as Peer
  const after = mapping(h, peers.filter((p) => p !== gone))
  const moved = before.filter((p, i) => p !== after[i]).length
  t.equal(moved, before.filter((p) => p === gone).length, 'exactly the keys of the removed server move')
  t.ok(moved / KEYS > 0.07 && moved / KEYS < 0.13, `moved ${moved / KEYS} of keys`)

  const extra = group(t, [1], 11)[0] as Peer
  const grown = mapping(h, [...peers, extra])
  const changed = before.filter((p, i) => p !== grown[i]).length
  t.ok(grown.every((p, i) => p === before[i] || p === extra), 'keys that move all go to the new server')
  t.ok(changed / KEYS > 0.06 && changed / KEYS < 0.12, `moved ${changed / KEYS} of keys to the new server`)
})

t.test('a tried server or one at its maxConns limit passes the key to the next server on the ring', async (t) => {
  const peers = group(t, [1, 1, 1])
  const limited = [new Peer({ address: '10.0.0.9:8080', maxConns: 1 }, pool), ...peers]
  t.teardown(() => limited[0]?.close())
  const h = ring(limited)
  const home = Array.from({ length: 50 }, (_, i) => h.pick(limited, [], user(i)))
  const i = home.findIndex((p) => p === limited[0])
  t.ok(i >= 0, 'some key lives on the limited server')
  ;(limited[0] as Peer).inflight = 1
  const next = h.pick(limited, [], user(i))
  t.not(next, limited[0], 'at its limit it is skipped')
  t.equal(h.pick(limited, [], user(i)), next, 'and the spill-over is itself stable')
  t.not(h.pick(limited, [next as Peer], user(i)), next, 'a tried server is skipped too')
  t.equal(h.pick(limited, limited.slice(1), user(i)), undefined, 'nothing left')
})

t.test('bounded load: a hot key spills over once its server holds more than factor x its share', async (t) => {
  const peers = group(t, [1, 1, 1, 1])
  const hot = user(42)
  const unbounded = ring(peers)
  const home = unbounded.pick(peers, [], hot) as Peer
  for (let i = 0; i < 40; i++) (unbounded.pick(peers, [], hot) as Peer).inflight++
  t.equal(home.inflight, 40, 'without a bound every request of the key lands on one server')
  for (const p of peers) p.inflight = 0
  const bounded = ring(peers, { kind: 'header', name: 'x-user' }, 150)
  for (let i = 0; i < 40; i++) (bounded.pick(peers, [], hot) as Peer).inflight++
  const most = Math.max(...peers.map((p) => p.inflight))
  t.ok(most <= Math.ceil((1.5 * 40) / 4), `no server holds more than 150% of the average (${peers.map((p) => p.inflight).join(',')})`)
  t.equal(home.inflight, most, 'the key still prefers its own server')
})

t.test('hash keys: ip, path without query, header (any case), cookie among others; no key spreads by weight', async (t) => {
  const peers = group(t, [1, 1, 1, 1, 1])
  const pick = (key: string, req: Partial<PickRequest>): Peer | undefined => ring(peers, parseHashKey(key)).pick(peers, [], { headers: {}, socket: {}, ...req })
  const byIp = (ip: string): Peer | undefined => pick('ip', { socket: { remoteAddress: ip } })
  t.equal(byIp('192.0.2.7'), byIp('192.0.2.7'))
  t.ok(new Set(Array.from({ length: 50 }, (_, i) => byIp(`192.0.2.${i}`))).size > 1, 'different clients spread')
  t.equal(pick('path', { url: '/a/b?x=1' }), pick('path', { url: '/a/b?y=2' }), 'the query is not part of the path key')
  t.equal(pick('header:X-Tenant', { headers: { 'x-tenant': 'acme' } }), pick('header:x-tenant', { headers: { 'x-tenant': 'acme' } }))
  const cookie = (c: string): Peer | undefined => pick('cookie:sid', { headers: { cookie: c } })
  t.equal(cookie('sid=abc'), cookie('theme=dark; sid=abc; lang=en'), 'the cookie is found among others')
  t.equal(cookie('sid=abc'), cookie('xsid=zzz; sid=abc'), 'a longer name ending in sid is not sid')
  t.equal(cookie('sid=abc; x=1'), pick('header:h', { headers: { h: 'abc' } }), 'only the value is hashed')
  const keyless = new Set(Array.from({ length: 200 }, () => cookie('theme=dark')))
  t.ok(keyless.size > 1, 'requests without the cookie are spread, not piled on one point')
  t.equal(hashString('abc'), hashString('xabcx', 1, 4), 'ranges hash like the substring')
  t.throws(() => parseHashKey('body'), /not a hash key/)
})

t.test('end to end: a key sticks to one provider, skips a disabled one, and returns when it is enabled', async (t) => {
  const providers = await Promise.all(
    ['a', 'b', 'c'].map((name) =>
      httpServer(t, (_req, res) => {
        res.writeHead(200, { 'x-provider': name })
        res.end(name)
      }),
    ),
  )
  const proxy = await startProxy(t, { upstreams: { api: { balance: 'hash', hashKey: 'header:x-user', servers: providers.map((p) => ({ address: p.address })) } } })
  const agent = client(t)
  const who = async (key: string): Promise<string> => (await get(`${proxy.url}/`, { dispatcher: agent, headers: { 'x-user': key } })).body
  const keys = Array.from({ length: 30 }, (_, i) => `user-${i}`)
  const home = new Map<string, string>()
  for (const k of keys) home.set(k, await who(k))
  for (const k of keys) t.equal(await who(k), home.get(k), `${k} sticks`)
  t.equal(new Set(home.values()).size, 3, 'the keys spread over all three providers')
  const victim = home.get('user-0') as string
  const address = (providers[['a', 'b', 'c'].indexOf(victim)] as { address: string }).address
  t.equal((await fetch(`${proxy.admin}/upstreams/api/servers/${address}/disable`, { method: 'POST' })).status, 200)
  for (const k of keys) {
    const now = await who(k)
    if (home.get(k) === victim) t.not(now, victim, `${k} leaves the disabled provider`)
    else t.equal(now, home.get(k), `${k} is not disturbed`)
  }
  await fetch(`${proxy.admin}/upstreams/api/servers/${address}/enable`, { method: 'POST' })
  for (const k of keys) t.equal(await who(k), home.get(k), `${k} is back home`)
})

t.test('hash edge cases: missing parts of the request, array headers, tiers, walking past the top of the ring', async (t) => {
  const peers = group(t, [1, 1, 1])
  const h = ring(peers, { kind: 'ip' })
  t.ok(h.pick(peers, [], { headers: {}, socket: {} }), 'no remote address hashes as an empty one')
  t.equal(h.pick([], [], { headers: {}, socket: {} }), undefined, 'no peers')
  t.equal(h.pick(peers, peers, { headers: {}, socket: { remoteAddress: '192.0.2.1' } }), undefined, 'every peer tried')
  t.ok(h.pick(peers, [], undefined), 'no request: a weighted random pick')
  t.equal(ring(peers, { kind: 'header', name: 'x-user' }).pick(peers, peers, { headers: {}, socket: {} }), undefined, 'no key and nobody left')
  const path = ring(peers, { kind: 'path' })
  t.equal(path.keyHash({ headers: {}, socket: {} }), path.keyHash({ headers: {}, socket: {}, url: '/' }), 'no url is "/"')
  const header = ring(peers, { kind: 'header', name: 'x-user' })
  t.equal(header.keyHash({ headers: { 'x-user': ['a', 'b'] }, socket: {} }), hashString('a'), 'a repeated header hashes its first value')
  const cookie = ring(peers, { kind: 'cookie', name: 'sid' })
  t.equal(cookie.keyHash({ headers: {}, socket: {} }), -1, 'no Cookie header')
  t.equal(cookie.keyHash({ headers: { cookie: 'a=1; b=2' }, socket: {} }), -1, 'no such cookie')
  t.equal(cookie.keyHash({ headers: { cookie: 'a=1; sid=x' }, socket: {} }), hashString('x'), 'last cookie runs to the end')

  const backups = [new Peer({ address: '10.0.1.1:8080', backup: true }, pool), new Peer({ address: '10.0.1.2:8080', backup: true }, pool)]
  t.teardown(() => Promise.all(backups.map((p) => p.close())))
  const both = ring([...peers, ...backups])
  const key = user(7)
  const primary = both.pick(peers, [], key)
  const backup = both.pick(backups, [], key)
  t.ok(backup?.backup, 'the backup tier has its own ring')
  t.equal(both.pick(peers, [], key), primary, 'and the primary ring is kept alongside it')
  t.equal(both.pick(backups, [], key), backup)

  // With two of three peers tried, every key walks to the third, many of them past the top of the ring.
  const [a, b, c] = peers as [Peer, Peer, Peer]
  const walked = Array.from({ length: 2000 }, (_, i) => h.pick(peers, [a, b], { headers: {}, socket: { remoteAddress: `198.51.100.${i % 250}:${i}` } }))
  t.ok(walked.every((p) => p === c))
  const bounded = ring(peers, { kind: 'ip' }, 100)
  const req = { headers: {}, socket: { remoteAddress: '192.0.2.99' } }
  const home = ring(peers, { kind: 'ip' }).pick(peers, [], req) as Peer
  home.inflight = 50
  const others = peers.filter((p) => p !== home)
  t.equal(bounded.pick(peers, others, req), home, 'over its bound but the only one left: it still takes the request')
})
