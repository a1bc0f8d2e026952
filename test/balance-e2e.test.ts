// Balancing end to end: real providers, the real proxy, counts per provider (never timings).
import t, { type Test } from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { client, get, httpServer, spawnProvider, startProxy, type Reply } from './helpers/index.js'
import { parseConfig } from '../src/index.js'
import type { Agent } from 'undici'
import type { Upstream } from '../src/config/schema.js'

/** How a test provider answers: after a delay in ms, or only once the test calls `open()`. */
type Hold = number | 'until-opened'

/** An in-process provider that counts what it served and its peak concurrency. */
async function provider(t: Test, name: string, hold: Hold = 0) {
  const stats = { name, served: 0, open: 0, peak: 0 }
  const held: (() => void)[] = []
  let opened = false
  const { address } = await httpServer(t, (_req: IncomingMessage, res: ServerResponse) => {
    stats.served++
    stats.peak = Math.max(stats.peak, ++stats.open)
    const reply = (): void => {
      stats.open--
      res.writeHead(200, { 'x-provider': name })
      res.end(name)
    }
    if (hold === 'until-opened' && !opened) held.push(reply)
    else if (typeof hold === 'number' && hold > 0) setTimeout(reply, hold)
    else reply()
  })
  const open = (): void => {
    opened = true
    for (const reply of held.splice(0)) reply()
  }
  return { address, stats, open }
}

/** A provider that holds every request until `open()` is called. */
const gated = (t: Test, name: string): ReturnType<typeof provider> => provider(t, name, 'until-opened')

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5))
}

/** Send `n` GETs at once; `refused` counts the 503s as they come back. */
function burst(url: string, n: number) {
  const progress = { refused: 0 }
  const replies = Promise.all(
    Array.from({ length: n }, async () => {
      const r = await get(url)
      if (r.status === 503) progress.refused++
      return r
    }),
  )
  return { progress, replies }
}

/** `n` GETs with at most `concurrency` outstanding at once. */
async function load(url: string, agent: Agent, n: number, concurrency: number): Promise<Reply[]> {
  const replies: Reply[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++
      replies.push(await get(url, { dispatcher: agent }))
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return replies
}

const share = (replies: readonly Reply[], name: string): number => replies.filter((r) => r.headers['x-provider'] === name).length / replies.length

for (const balance of ['round_robin', 'least_conn', 'p2c'] as const) {
  t.test(`${balance}: a provider that holds requests open for 200 ms gets ${balance === 'round_robin' ? 'its third (the control)' : 'under a sixth'}`, async (t) => {
    const [slow, a, b] = [await provider(t, 'slow', 200), await provider(t, 'a'), await provider(t, 'b')]
    const proxy = await startProxy(t, { upstreams: { api: { balance, servers: [slow, a, b].map((p) => ({ address: p.address })) } } })
    const replies = await load(`${proxy.url}/`, client(t), 150, 15)
    t.equal(replies.filter((r) => r.status === 200).length, 150)
    const s = share(replies, 'slow')
    if (balance === 'round_robin') t.ok(s > 0.3, `round robin ignores load: slow share ${s}`)
    else t.ok(s < 1 / 6, `slow share ${s} (served ${slow.stats.served}, a ${a.stats.served}, b ${b.stats.served})`)
  })
}

t.test('random: traffic follows weights through the proxy', async (t) => {
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  const proxy = await startProxy(t, { upstreams: { api: { balance: 'random', servers: [{ address: a.address, weight: 3 }, { address: b.address }] } } })
  const replies = await load(`${proxy.url}/`, client(t), 400, 4)
  const s = share(replies, 'a')
  // Binomial(400, 0.75) has a standard deviation of 0.022: 0.6..0.9 is more than six of them.
  t.ok(s > 0.6 && s < 0.9, `weight 3 of 4 gets ${s}`)
})

t.test('ewma: traffic leaves a provider that adds 50 ms of latency and comes back when it recovers', async (t) => {
  const names = ['a', 'b', 'c']
  const providers = await Promise.all(names.map((n) => spawnProvider(t, n)))
  // A short decay keeps the test quick; the mechanism is the same as with the default 10 s.
  const proxy = await startProxy(t, { upstreams: { api: { balance: 'ewma', ewmaDecay: '1s', servers: providers.map((p) => ({ address: p.address })) } } })
  const agent = client(t)
  const warm = await load(`${proxy.url}/`, agent, 150, 5)
  for (const n of names) t.ok(share(warm, n) > 0.05, `warm: ${n} gets ${share(warm, n)}`)

  const slow = providers[1] as (typeof providers)[number]
  await get(`http://${slow.address}/_control?delay=50`)
  const during = await load(`${proxy.url}/`, agent, 300, 5)
  t.ok(share(during, 'b') < 0.2, `while slow, b gets ${share(during, 'b')} (round robin would give 0.33)`)

  await get(`http://${slow.address}/_control?delay=0`)
  // Recovery needs b's estimate to decay before it is tried again: give it up to 100 rounds, counting rounds.
  let back = 0
  for (let round = 0; round < 100 && back === 0; round++) {
    const batch = await load(`${proxy.url}/`, agent, 60, 5)
    if (share(batch, 'b') >= 0.2) back = round + 1
    else await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.ok(back > 0, `b is back to at least a fifth of a batch after ${back} rounds`)
})

t.test('maxConns: a provider never sees more than its limit; when all are full the answer is 503 max_conns', async (t) => {
  const [a, b] = [await gated(t, 'a'), await gated(t, 'b')]
  const proxy = await startProxy(t, { upstreams: { api: { balance: 'least_conn', servers: [a, b].map((p) => ({ address: p.address, maxConns: 2 })) } } })
  const { progress, replies } = burst(`${proxy.url}/`, 40)
  await until(() => progress.refused === 36)
  t.equal(a.stats.open + b.stats.open, 4, '2 + 2 held in flight, the other 36 refused')
  a.open()
  b.open()
  const all = await replies
  t.ok(a.stats.peak <= 2 && b.stats.peak <= 2, `peak concurrency a ${a.stats.peak}, b ${b.stats.peak}`)
  const refused = all.filter((r) => r.status === 503)
  t.ok(refused.every((r) => r.headers['x-vigil-error'] === 'max_conns' && /maxConns/.test(r.body)))
  t.equal(all.filter((r) => r.status === 200).length, 4)
})

t.test('maxConns: a full server is skipped, not failed, while another has room', async (t) => {
  const [a, b] = [await provider(t, 'a', 50), await provider(t, 'b', 50)]
  const servers: Upstream['servers'] = [{ address: a.address, maxConns: 1 }, { address: b.address }]
  const proxy = await startProxy(t, { upstreams: { api: { servers } } })
  const replies = await Promise.all(Array.from({ length: 20 }, () => get(`${proxy.url}/`)))
  t.ok(replies.every((r) => r.status === 200), 'every request served')
  t.equal(a.stats.peak, 1)
  t.ok(b.stats.served >= 10, `b took the rest: ${b.stats.served}`)
})

t.test('queue: requests wait for room under maxConns, up to the queue size', async (t) => {
  const [a, b] = [await gated(t, 'a'), await gated(t, 'b')]
  const proxy = await startProxy(t, {
    upstreams: { api: { balance: 'least_conn', queue: { size: 10, timeout: '1m' }, servers: [a, b].map((p) => ({ address: p.address, maxConns: 1 })) } },
  })
  const queue = proxy.vigil.upstreams.get('api')?.queue
  const { progress, replies } = burst(`${proxy.url}/`, 20)
  await until(() => progress.refused === 8 && queue?.length === 10)
  t.pass('2 in flight, 10 queued, the other 8 refused at once')
  a.open()
  b.open()
  const all = await replies
  t.equal(all.filter((r) => r.status === 200).length, 12, 'the queued requests are served once there is room')
  t.ok(all.filter((r) => r.status === 503).every((r) => r.headers['x-vigil-error'] === 'max_conns'))
  t.ok(a.stats.peak <= 1 && b.stats.peak <= 1, `the limit holds while the queue drains (peaks ${a.stats.peak}, ${b.stats.peak})`)
  t.equal(queue?.length, 0, 'the queue is empty afterwards')
})

t.test('queue: a request that waits too long gets 503 queue_timeout and never reaches the provider', async (t) => {
  const a = await gated(t, 'a')
  const proxy = await startProxy(t, { upstreams: { api: { queue: { size: 5, timeout: 50 }, servers: [{ address: a.address, maxConns: 1 }] } } })
  const { progress, replies } = burst(`${proxy.url}/`, 3)
  await until(() => progress.refused === 2)
  a.open()
  const all = await replies
  t.same(all.map((r) => r.status).sort(), [200, 503, 503])
  t.ok(all.filter((r) => r.status === 503).every((r) => r.headers['x-vigil-error'] === 'queue_timeout' && /in time/.test(r.body)))
  t.equal(a.stats.served, 1)
})

t.test('queue: a request whose client leaves while it waits is dropped from the queue', async (t) => {
  const a = await gated(t, 'a')
  const proxy = await startProxy(t, { upstreams: { api: { queue: { size: 5, timeout: '1m' }, servers: [{ address: a.address, maxConns: 1 }] } } })
  const queue = proxy.vigil.upstreams.get('api')?.queue
  const first = get(`${proxy.url}/`)
  await until(() => a.stats.open === 1)
  const leaving = new AbortController()
  const gone = fetch(`${proxy.url}/`, { signal: leaving.signal }).catch(() => 'aborted')
  await until(() => queue?.length === 1)
  leaving.abort()
  t.equal(await gone, 'aborted')
  await until(() => queue?.length === 0)
  a.open()
  t.equal((await first).status, 200)
  t.equal(a.stats.served, 1, 'the request whose client left was never sent')
})

t.test('config: policies, hash keys and policy options are validated with their path', async (t) => {
  const doc = (upstream: Record<string, unknown>): string =>
    JSON.stringify({ listeners: [{ address: '127.0.0.1:0', upstream: 'api' }], upstreams: { api: { servers: [{ address: '127.0.0.1:1', maxConns: 10 }], ...upstream } } })
  for (const balance of ['round_robin', 'least_conn', 'random', 'p2c', 'ewma', 'hash']) t.ok(parseConfig(doc({ balance, slowStart: '30s' })))
  t.ok(parseConfig(doc({ balance: 'hash', hashKey: 'cookie:session_id', hashBalanceFactor: 125 })))
  t.ok(parseConfig(doc({ balance: 'ewma', ewmaDecay: '5s', queue: { size: 100, timeout: '2s' } })))
  t.throws(() => parseConfig(doc({ queue: { timeout: '2s' } })), /upstreams\.api\.queue\.size: found nothing, expected an integer >= 1 \(required\)/)
  t.throws(() => parseConfig(doc({ balance: 'hash', hashKey: 'header:' })), /upstreams\.api\.hashKey: found string "header:", expected "ip", "path", "header:NAME" or "cookie:NAME"/)
  t.throws(() => parseConfig(doc({ balance: 'hash', hashKey: 'query:x' })), /upstreams\.api\.hashKey/)
  t.throws(() => parseConfig(doc({ balance: 'leastconn' })), /upstreams\.api\.balance: found string "leastconn", expected "round_robin" or "least_conn"/)
  t.throws(() => parseConfig(doc({ hashKey: 'ip' })), /upstreams\.api\.hashKey: found hashKey with balance "round_robin", expected balance "hash" \(hashKey applies only to it\)/)
  t.throws(() => parseConfig(doc({ balance: 'p2c', ewmaDecay: '1s' })), /upstreams\.api\.ewmaDecay/)
  t.throws(() => parseConfig(doc({ balance: 'hash', hashBalanceFactor: 50 })), /hashBalanceFactor: found number 50, expected an integer >= 100/)
})
