import t from 'tap'
import { connect, type Socket } from 'node:net'
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { client, closedPort, echo, get, httpServer, spawnProvider, startProxy } from './helpers/index.js'

const named = (name: string) => (req: IncomingMessage, res: ServerResponse) => {
  req.resume()
  res.writeHead(200, { 'x-provider': name, 'content-type': 'text/plain' })
  res.end(`${name} ${req.url}`)
}

/** Send raw bytes and collect everything the server sends until it closes or `until` matches. */
async function raw(port: number, bytes: string, until?: RegExp): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  socket.write(bytes)
  let data = ''
  socket.setEncoding('utf8')
  for await (const chunk of socket as AsyncIterable<string>) {
    data += chunk
    if (until?.test(data)) break
  }
  socket.destroy()
  return data
}

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
  const posted = JSON.parse(p.body) as { method: string; body: string }
  t.equal(posted.method, 'POST')
  t.equal(posted.body, 'payload')
})

t.test('routes by host and path prefix, first match wins; no match is 404', async (t) => {
  const a = await httpServer(t, named('api'))
  const b = await httpServer(t, named('billing'))
  const proxy = await startProxy(t, {
    listeners: [
      {
        address: '127.0.0.1:0',
        routes: [
          { host: 'billing.local', pathPrefix: '/v1', upstream: 'billing' },
          { host: 'api.local', upstream: 'api' },
        ],
      },
    ],
    upstreams: { api: { servers: [{ address: a.address }] }, billing: { servers: [{ address: b.address }] } },
  })
  t.equal((await get(`${proxy.url}/v1/x`, { headers: { host: 'billing.local' } })).body, 'billing /v1/x')
  t.equal((await get(`${proxy.url}/v2/x`, { headers: { host: 'api.local:8080' } })).body, 'api /v2/x')
  const miss = await get(`${proxy.url}/v2/x`, { headers: { host: 'billing.local' } })
  t.equal(miss.status, 404)
  t.equal(miss.headers['x-vigil-error'], 'no_route')
})

t.test('an absolute-form target only chooses the route: traffic never goes anywhere else', async (t) => {
  const provider = await httpServer(t, echo)
  let elsewhereHits = 0
  const elsewhere = await httpServer(t, (req, res) => {
    elsewhereHits++
    named('elsewhere')(req, res)
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: provider.address }] } } })
  const reply = await raw(proxy.port, `GET http://${elsewhere.address}/secret?q=1 HTTP/1.1\r\nHost: ${elsewhere.address}\r\nConnection: close\r\n\r\n`)
  t.match(reply, /^HTTP\/1.1 200/)
  const body = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)) as { url: string }
  t.equal(body.url, '/secret?q=1', 'the provider got the origin-form path')
  t.equal(elsewhereHits, 0, 'the host in the target received nothing')
  const bad = await raw(proxy.port, 'GET foo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(bad, /^HTTP\/1.1 400/, 'a target that is neither a path nor absolute is refused')
})

t.test('response timeout answers 504 response_timeout', async (t) => {
  const hang = await httpServer(t, () => {
    /* never answers */
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: hang.address }], timeouts: { response: '200ms' } } } })
  const r = await get(`${proxy.url}/`)
  t.equal(r.status, 504)
  t.equal(r.headers['x-vigil-error'], 'response_timeout')
  t.match(r.body, /timed out/)
})

t.test('idle timeout between body chunks cuts the client connection after the status was sent', async (t) => {
  const stall = await httpServer(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('first chunk')
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: stall.address }], timeouts: { idle: '200ms' } } } })
  const res = await request(`${proxy.url}/`)
  t.equal(res.statusCode, 200)
  await t.rejects(res.body.text(), 'the body ends in an error, not a clean end')
})

t.test('connect timeout answers 504 connect_timeout (frozen provider with a full accept queue)', async (t) => {
  const provider = await spawnProvider(t, 'frozen', ['--backlog', '1'])
  provider.signal('SIGSTOP')
  // With the process stopped nobody accepts: fill the accept queue so new SYNs are dropped.
  const fillers: Socket[] = []
  t.teardown(() => fillers.forEach((s) => s.destroy()))
  for (let i = 0; i < 8; i++) {
    const s = connect(provider.port, '127.0.0.1')
    s.on('error', () => {})
    fillers.push(s)
  }
  await new Promise((r) => setTimeout(r, 200))
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: provider.address }], timeouts: { connect: '300ms' } } } })
  const r = await get(`${proxy.url}/`)
  t.equal(r.status, 504)
  t.equal(r.headers['x-vigil-error'], 'connect_timeout')
})

t.test('502 when the provider refuses connections, or resets before answering', async (t) => {
  const port = await closedPort()
  const reset = await httpServer(t, (req) => req.socket.destroy())
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', routes: [{ pathPrefix: '/refused', upstream: 'refused' }, { pathPrefix: '/', upstream: 'reset' }] }],
    upstreams: { refused: { servers: [{ address: `127.0.0.1:${port}` }] }, reset: { servers: [{ address: reset.address }] } },
  })
  const refused = await get(`${proxy.url}/refused`)
  t.equal(refused.status, 502)
  t.equal(refused.headers['x-vigil-error'], 'connect_refused')
  const r = await get(`${proxy.url}/`)
  t.equal(r.status, 502)
  t.equal(r.headers['x-vigil-error'], 'upstream_reset')
  t.notMatch(r.body, /at .*\.js/, 'no stack trace')
})

t.test('503 no_live_upstreams when no server is eligible; backups only when no primary is', async (t) => {
  const primary = await httpServer(t, named('primary'))
  const backup = await httpServer(t, named('backup'))
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', routes: [{ pathPrefix: '/none', upstream: 'none' }, { pathPrefix: '/', upstream: 'api' }] }],
    upstreams: {
      api: { servers: [{ address: primary.address }, { address: backup.address, backup: true }] },
      none: { servers: [{ address: primary.address, down: true }] },
    },
  })
  const none = await get(`${proxy.url}/none`)
  t.equal(none.status, 503)
  t.equal(none.headers['x-vigil-error'], 'no_live_upstreams')
  for (let i = 0; i < 4; i++) t.equal((await get(`${proxy.url}/`)).headers['x-provider'], 'primary')
  const disable = await get(`${proxy.admin}/upstreams/api/servers/${primary.address}/disable`, { method: 'POST' })
  t.equal(disable.status, 200)
  for (let i = 0; i < 4; i++) t.equal((await get(`${proxy.url}/`)).headers['x-provider'], 'backup')
  await get(`${proxy.admin}/upstreams/api/servers/${backup.address}/disable`, { method: 'POST' })
  t.equal((await get(`${proxy.url}/`)).status, 503)
})

t.test('weights: smooth weighted round robin end to end', async (t) => {
  const a = await httpServer(t, named('a'))
  const b = await httpServer(t, named('b'))
  const c = await httpServer(t, named('c'))
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: a.address, weight: 5 }, { address: b.address }, { address: c.address }] } } })
  const agent = client(t)
  const seq: string[] = []
  for (let i = 0; i < 7; i++) seq.push(String((await get(`${proxy.url}/`, { dispatcher: agent })).headers['x-provider']))
  t.equal(seq.join(' '), 'a a b a c a a')
})

t.test('a client that goes away aborts the upstream request', async (t) => {
  let upstreamClosed: () => void = () => {}
  const closed = new Promise<void>((r) => (upstreamClosed = r))
  let started: () => void = () => {}
  const arrived = new Promise<void>((r) => (started = r))
  const hold = await httpServer(t, (req, res) => {
    if (req.url !== '/slow') return void res.end('fast')
    res.on('close', upstreamClosed)
    started()
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: hold.address }] } } })
  const socket = connect(proxy.port, '127.0.0.1')
  socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n')
  await arrived
  socket.destroy()
  await closed
  t.pass('the provider saw its request closed')
  await t.resolveMatch(get(`${proxy.url}/`, {}).then((r) => r.status), 200, 'vigil still serves, and the inflight count went back to zero')
  t.equal(proxy.vigil.upstreams.get('api')?.peers[0]?.inflight, 0)
})

t.test('an upstream that dies mid-body cuts the client connection', async (t) => {
  const dies = await httpServer(t, (req, res) => {
    res.writeHead(200, { 'content-length': '100000' })
    res.write('partial')
    setTimeout(() => req.socket.destroy(), 20)
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: dies.address }] } } })
  const res = await request(`${proxy.url}/`)
  t.equal(res.statusCode, 200)
  await t.rejects(res.body.text())
})

t.test('HEAD, 204, 304, chunked bodies and trailers', async (t) => {
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/204') {
      res.writeHead(204)
      res.end()
    } else if (req.url === '/304') {
      res.writeHead(304, { etag: '"x"' })
      res.end()
    } else if (req.url === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
      res.write('abc')
      res.addTrailers({ 'x-checksum': '42' })
      res.end('def')
    } else {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' })
      res.end(req.method === 'HEAD' ? undefined : 'hello')
    }
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  const head = await raw(proxy.port, 'HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(head, /^HTTP\/1.1 200/)
  t.match(head, /content-length: 5/i)
  t.notMatch(head, /hello/)
  t.equal((await get(`${proxy.url}/204`)).status, 204)
  const notModified = await get(`${proxy.url}/304`, { headers: { 'if-none-match': '"x"' } })
  t.equal(notModified.status, 304)
  t.equal(notModified.headers['etag'], '"x"')
  const chunked = await raw(proxy.port, 'GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n')
  t.match(chunked, /transfer-encoding: chunked/i)
  t.match(chunked, /abc/)
  t.match(chunked, /def/)
  t.match(chunked, /x-checksum: 42/i, 'trailers are forwarded')
})

t.test('Expect: 100-continue is answered by vigil and the body still arrives', async (t) => {
  const up = await httpServer(t, echo)
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  const body = await new Promise<string>((resolve, reject) => {
    const req = httpRequest({ port: proxy.port, host: '127.0.0.1', method: 'PUT', path: '/up', headers: { expect: '100-continue', 'content-length': '4' } })
    req.on('continue', () => req.end('data'))
    req.on('response', (res) => {
      let s = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (s += c))
      res.on('end', () => resolve(s))
    })
    req.on('error', reject)
  })
  const seen = JSON.parse(body) as { body: string; headers: Record<string, string> }
  t.equal(seen.body, 'data')
  t.equal(seen.headers['expect'], undefined, 'Expect is not forwarded')
})

t.test('response hop-by-hop headers are stripped end to end', async (t) => {
  const up = await httpServer(t, (_req, res) => {
    res.writeHead(200, { connection: 'x-private', 'x-private': 'secret', 'keep-alive': 'timeout=1', 'x-public': 'ok' })
    res.end('ok')
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  const r = await get(`${proxy.url}/`)
  t.equal(r.headers['x-public'], 'ok')
  t.equal(r.headers['x-private'], undefined)
})

t.test('1 GiB each way streams with flat memory', async (t) => {
  const GiB = 1024 ** 3
  const chunk = Buffer.alloc(1024 * 1024, 'v')
  const up = await httpServer(t, (req, res) => {
    if (req.method === 'PUT') {
      let n = 0
      req.on('data', (c: Buffer) => (n += c.length))
      req.on('end', () => res.end(String(n)))
      return
    }
    res.writeHead(200, { 'content-length': String(GiB) })
    let sent = 0
    const pump = (): void => {
      while (sent < GiB) {
        sent += chunk.length
        if (!res.write(chunk)) return void res.once('drain', pump)
      }
      res.end()
    }
    pump()
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  const before = process.memoryUsage().rss
  let peak = before
  const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50)
  t.teardown(() => clearInterval(sample))

  const down = await request(`${proxy.url}/download`)
  let received = 0
  for await (const c of down.body) received += (c as Buffer).length
  t.equal(received, GiB, 'download complete')

  let produced = 0
  const source = new Readable({
    read() {
      if (produced >= GiB) return void this.push(null)
      produced += chunk.length
      this.push(chunk)
    },
  })
  const upload = await request(`${proxy.url}/upload`, { method: 'PUT', body: source })
  t.equal(await upload.body.text(), String(GiB), 'upload complete')
  clearInterval(sample)
  t.ok(peak - before < 256 * 1024 * 1024, `RSS grew by ${Math.round((peak - before) / 1048576)} MiB for 2 GiB moved (bound 256 MiB)`)
})

t.test('keeps connections to the provider alive across requests', async (t) => {
  const ports = new Set<number>()
  const up = await httpServer(t, (req, res) => {
    ports.add(req.socket.remotePort as number)
    res.end('ok')
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  const agent = client(t)
  for (let i = 0; i < 20; i++) await get(`${proxy.url}/`, { dispatcher: agent })
  t.equal(ports.size, 1, 'sequential requests reuse one upstream connection')
})
