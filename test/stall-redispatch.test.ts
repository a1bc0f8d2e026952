// Stall re-dispatch end to end: real providers, one SIGSTOPped; the GETs already waiting on it when the stall
// detector suspects it are answered from another server while it is still frozen; a POST waiting on it is not
// raced (it may not run twice) and is answered by the frozen server once it thaws.
import t from 'tap'
import type { Upstream } from '../src/upstream/upstream.js'
import type { HealthEvent } from '../src/health/passive-events.js'
import { client, get, spawnProvider, startProxy, type Provider, type Reply } from './helpers/index.js'

t.test("a frozen server's waiting GETs are raced on another server; a POST waiting on it waits", async (t) => {
  const ps = await Promise.all(['p0', 'p1', 'p2'].map((n) => spawnProvider(t, n)))
  const frozen = ps[0] as Provider
  const proxy = await startProxy(t, {
    upstreams: {
      api: {
        servers: ps.map((p) => ({ address: p.address })),
        // A key picks the server, so the test knows which requests wait on the frozen one.
        balance: 'hash',
        hashKey: 'header:x-key',
        timeouts: { response: '20s' },
      },
    },
  })
  const u = proxy.vigil.upstreams.get('api') as Upstream
  const events: HealthEvent[] = []
  u.on('health', (e: HealthEvent) => e.peer === frozen.address && events.push(e))
  const agent = client(t)
  const keys: string[] = []
  for (let k = 0; keys.length < 4 && k < 200; k++) {
    const r = await get(`${proxy.url}/work`, { dispatcher: agent, headers: { 'x-key': `k${k}` } })
    if (r.headers['x-provider'] === 'p0') keys.push(`k${k}`)
  }
  t.equal(keys.length, 4, 'four keys that hash to the frozen server')
  // Some traffic to every server, so the group's p99 (and the stall threshold, its floor 200 ms) is known.
  for (let i = 0; i < 30; i++) await get(`${proxy.url}/work`, { dispatcher: agent, headers: { 'x-key': `w${i}` } })

  frozen.signal('SIGSTOP')
  const done = new Map<string, Reply>()
  const send = (key: string, method: string): Promise<void> =>
    get(`${proxy.url}/work`, { dispatcher: client(t), method, headers: { 'x-key': key }, body: method === 'POST' ? 'order=1' : undefined }).then((r) => {
      done.set(`${method} ${key}`, r)
    })
  const post = send(keys[0] as string, 'POST')
  const gets = keys.slice(1).map((k) => send(k, 'GET'))
  // Answered while the frozen server is still stopped: nothing else could have answered them.
  await Promise.all(gets)
  t.equal(done.size, 3, 'the three GETs are answered, the POST is not')
  for (const k of keys.slice(1)) {
    const r = done.get(`GET ${k}`) as Reply
    t.equal(r.status, 200)
    t.not(r.headers['x-provider'], 'p0', `GET ${k} answered by ${String(r.headers['x-provider'])}`)
    t.equal(r.headers['x-vigil-attempts'], '2', 'the original attempt and its race')
  }
  t.match(events[0], { kind: 'suspect' })
  t.equal(u.retry.redispatches, 3, 'each waiting GET raced once, charged as a retry')
  t.equal(done.has(`POST ${keys[0] as string}`), false, 'the POST still waits on the frozen server')
  t.equal(u.peers[0]?.inflight, 1, 'only the POST is still in flight there: the GETs lost their race and were cancelled')

  frozen.signal('SIGCONT')
  await post
  const r = done.get(`POST ${keys[0] as string}`) as Reply
  t.equal(r.status, 200)
  t.equal(r.headers['x-provider'], 'p0', 'the POST was answered by the server it was sent to, once')
  t.equal(r.headers['x-vigil-attempts'], undefined)
  t.match(events.at(-1), { kind: 'cleared' }, 'the answer clears the suspicion')
  t.equal(u.passive.snapshot()[0]?.state, 'ok', 'a stall is no ejection: the losers said nothing against it')
})
