// The forwarding behaviours the retry rewrite must keep: a cut mid-body is never retried, a client that goes
// away is not the provider's failure, and large responses stream with backpressure.
import t from 'tap'
import { request } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { HealthEvent } from '../src/health/passive-events.js'
import type { Upstream } from '../src/upstream/upstream.js'
import { get, httpServer, startProxy } from './helpers/index.js'

t.test('a provider that fails after the status line: the client connection is cut, nothing is retried', async (t) => {
  let hits = 0
  const cut = (_req: IncomingMessage, res: ServerResponse): void => {
    hits++
    res.writeHead(200, { 'content-length': '100' })
    res.write('partial')
    setTimeout(() => res.socket?.destroy(), 20)
  }
  const a = await httpServer(t, cut)
  const b = await httpServer(t, cut)
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: a.address }, { address: b.address }], passive: { maxEjectPercent: 100 } } } })
  const events: HealthEvent[] = []
  ;(proxy.vigil.upstreams.get('api') as Upstream).on('health', (e: HealthEvent) => events.push(e))
  await t.rejects(get(`${proxy.url}/`), 'the body never completes')
  t.equal(hits, 1, 'one attempt only: the status line was already sent')
  t.match(
    events.filter((e) => e.kind === 'ejected'),
    [{ reason: 'max_fails', failure: 'upstream_reset' }],
    'but it counts against the provider',
  )
})

t.test('a client that goes away is not the provider failing', async (t) => {
  let upstreamSawClose = false
  const slow = await httpServer(t, (req, res) => {
    req.on('close', () => (upstreamSawClose = res.writableEnded === false))
    setTimeout(() => res.end('late'), 2_000).unref()
  })
  const other = await httpServer(t, (_req, res) => res.end('ok'))
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: slow.address }, { address: other.address }] } } })
  const up = proxy.vigil.upstreams.get('api') as Upstream
  const events: HealthEvent[] = []
  up.on('health', (e: HealthEvent) => events.push(e))
  await new Promise<void>((resolve) => {
    const req = request(`${proxy.url}/`, () => undefined)
    req.on('error', () => resolve())
    req.end()
    setTimeout(() => req.destroy(), 200)
  })
  while (!upstreamSawClose) await new Promise((r) => setTimeout(r, 20))
  t.ok(upstreamSawClose, 'the upstream request was aborted')
  t.same(
    events.filter((e) => e.kind === 'ejected'),
    [],
    'no ejection',
  )
  t.equal(up.peers[0]?.failures, 0)
  t.equal(up.peers[0]?.inflight, 0)
})

t.test('a large response streams through intact', async (t) => {
  const big = Buffer.alloc(8 * 1024 * 1024, 120)
  const up = await httpServer(t, (_req, res) => {
    res.writeHead(200, { 'content-length': big.length })
    res.end(big)
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  const r = await get(`${proxy.url}/`)
  t.equal(r.body.length, big.length)
})
