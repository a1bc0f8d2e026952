import t from 'tap'
import { client, closedPort, echo, get, httpServer, startProxy } from './helpers/index.js'

t.test('forwards GET and POST, streams the body, and sets forwarding headers', async (t) => {
  const up = await httpServer(t, echo)
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  const agent = client(t)
  const r = await get(`${proxy.url}/hello?x=1`, { dispatcher: agent, headers: { 'x-forwarded-for': '6.6.6.6', host: 'svc.local' } })
  t.equal(r.status, 200)
  const seen = JSON.parse(r.body) as { method: string; url: string; headers: Record<string, string> }
  t.equal(seen.url, '/hello?x=1')
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'client-sent X-Forwarded-For is replaced')
  t.equal(seen.headers['x-forwarded-proto'], 'http')
  t.equal(seen.headers['x-forwarded-host'], 'svc.local')
  t.equal(seen.headers['host'], 'svc.local', 'Host kept as the client sent it')
  const p = await get(`${proxy.url}/submit`, { method: 'POST', body: 'payload', dispatcher: agent })
  t.equal((JSON.parse(p.body) as { body: string }).body, 'payload')
})

t.test('answers 502 with x-vigil-error when the provider refuses connections', async (t) => {
  const port = await closedPort()
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: `127.0.0.1:${port}` }] } } })
  const r = await get(`${proxy.url}/`)
  t.equal(r.status, 502)
  t.equal(r.headers['x-vigil-error'], 'connect_refused')
  t.match(r.body, /refused/)
})
