// A request waiting for a pooled connection has a deadline (timeouts.queue): with every connection of the
// provider's pool busy, the next request is shown waiting on the status page, then answered 503 pool_timeout,
// counted, and never held against the provider.
import t from 'tap'
import type { ServerResponse } from 'node:http'
import { Agent, request } from 'undici'
import { get, httpServer, startProxy } from './helpers/index.js'
import { waitFor } from './helpers/wait.js'

/** undici's pool size per provider (src/upstream/upstream.ts). */
const POOL = 256

interface Row {
  inflight: number
  waiting: number
  oldestWaitMs: number
  poolTimeouts: number
  stuck: number
  failures: number
  passive: string
}

t.test('a request waiting for a pooled connection fails visibly at timeouts.queue', async (t) => {
  const held: ServerResponse[] = []
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/hold') held.push(res)
    else res.end('ok')
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }], timeouts: { queue: '2s', response: '60s' } } } })
  const agent = new Agent({ connections: POOL + 10 })
  t.teardown(() => agent.destroy())
  const rows = async (): Promise<Row> => (JSON.parse((await get(`${proxy.admin}/status?format=json`)).body) as { servers: { server: Row[] } }).servers.server[0] as Row
  const holding = Array.from({ length: POOL }, () => request(`${proxy.url}/hold`, { dispatcher: agent }).then(async (r) => (await r.body.text(), r.statusCode)))
  await waitFor(() => held.length === POOL, 30_000)

  const late = request(`${proxy.url}/late`, { dispatcher: agent })
  let row: Row | undefined
  for (let i = 0; i < 100 && (row === undefined || row.waiting === 0); i++) {
    row = await rows()
    if (row.waiting === 0) await new Promise((r) => setTimeout(r, 50))
  }
  t.equal(row?.waiting, 1, 'the status page shows the request waiting for a connection')
  t.type(row?.oldestWaitMs, 'number', `and its oldest wait (${row?.oldestWaitMs} ms)`)
  const r = await late
  const body = await r.body.text()
  t.equal(r.statusCode, 503, '503 once timeouts.queue is over')
  t.equal(r.headers['x-vigil-error'], 'pool_timeout', body.trim())
  t.match(body, /became free within timeouts.queue/)
  const metrics = (await get(`${proxy.admin}/metrics`)).body
  t.match(metrics, /vigil_pool_timeouts_total\{upstream="api",server="[^"]+"\} 1/, 'counted in /metrics')

  for (const res of held) res.end('released')
  t.same(new Set(await Promise.all(holding)), new Set([200]), 'the held requests are answered once released')
  await waitFor(() => proxy.vigil.upstreams.get('api')!.peers[0]!.inflight === 0)
  row = await rows()
  t.match(row, { inflight: 0, poolTimeouts: 1, stuck: 0, failures: 0, passive: 'ok' }, 'counted, and not against the provider')
  t.equal((await get(`${proxy.url}/after`)).status, 200, 'the next request is served')
})
