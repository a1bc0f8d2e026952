// Outlier mode end to end: five real providers; one answering 20% 503s is ejected, while all five answering 20%
// 503s (a shared dependency failing) ejects none. Counted on the providers' side.
import t from 'tap'
import type { Upstream } from '../src/upstream/upstream.js'
import type { HealthEvent } from '../src/health/passive-events.js'
import { client, control, get, spawnProvider, startProxy, type Provider } from './helpers/index.js'

type Tap = Parameters<typeof spawnProvider>[0]

async function fiveBehind(t: Tap, failing: number): Promise<{ ps: Provider[]; url: string; upstream: Upstream; events: HealthEvent[] }> {
  const ps = await Promise.all([0, 1, 2, 3, 4].map((i) => spawnProvider(t, `p${i}`)))
  for (const p of ps.slice(0, failing)) await control(p, 'failPercent=20')
  const proxy = await startProxy(t, {
    upstreams: {
      api: {
        servers: ps.map((p) => ({ address: p.address })),
        passive: { mode: 'outlier', failOn: ['error', 'timeout', 'http_503'], ejectTime: '60s', outlier: { interval: '1s', requestVolume: 30 } },
      },
    },
  })
  const upstream = proxy.vigil.upstreams.get('api') as Upstream
  const events: HealthEvent[] = []
  upstream.on('health', (e: HealthEvent) => e.kind !== 'suspect' && e.kind !== 'cleared' && events.push(e))
  return { ps, url: proxy.url, upstream, events }
}

/** Closed-loop GETs from four clients until `enough` holds (and at least `minMs` passed). */
async function drive(t: Tap, url: string, minMs: number, enough: () => boolean | Promise<boolean>): Promise<number[]> {
  const agent = client(t)
  const statuses: number[] = []
  const start = Date.now()
  let stop = false
  const loops = Array.from({ length: 4 }, async () => {
    while (!stop) statuses.push((await get(`${url}/work`, { dispatcher: agent })).status)
  })
  while (Date.now() - start < minMs || !(await enough())) {
    if (Date.now() - start > 60_000) break
    await new Promise((r) => setTimeout(r, 50))
  }
  stop = true
  await Promise.all(loops)
  return statuses
}

t.test('one provider of five answering 20% 503s is ejected by success rate', async (t) => {
  const { ps, url, events } = await fiveBehind(t, 1)
  await drive(t, url, 0, () => events.some((e) => e.kind === 'ejected'))
  t.match(events[0], { kind: 'ejected', peer: ps[0]?.address, reason: 'success_rate', evidence: { successRate: Number, limit: Number } })
  t.ok((events[0]?.evidence as { successRate: number }).successRate < 90, 'about 80% success')
  const before = (await control(ps[0] as Provider)).served
  await drive(t, url, 500, () => true)
  t.equal((await control(ps[0] as Provider)).served, before, 'ejected: it gets nothing more')
  t.equal(events.filter((e) => e.kind === 'ejected').length, 1, 'and nobody else is ejected')
})

t.test('all five answering 20% 503s: no ejection at all', async (t) => {
  const { ps, url, events } = await fiveBehind(t, 5)
  // At least four intervals, each server judged (30 requests a second each, i.e. 600 over four seconds for five).
  const statuses = await drive(t, url, 4_500, async () => (await Promise.all(ps.map((p) => control(p)))).every((s) => s.served >= 4 * 30))
  t.ok(statuses.filter((s) => s === 503).length > statuses.length / 10, 'the failures did reach the clients (503 is not retried)')
  t.same(events, [], 'no ejection, no capped ejection')
})
