// Plain HTTP/2 end to end with Node's http2 on both sides: the h2c listener, h2c providers, bodies both ways,
// trailers, HTTP/1.1 clients in front of HTTP/2 providers.
import t from 'tap'
import { connect, createServer, type ClientHttp2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { get, startProxy } from './helpers/index.js'

/** An in-process h2c provider: echoes method, path, headers and body as JSON, with a trailer. */
async function h2Provider(name: string): Promise<{ address: string; streams: () => number }> {
  const server = createServer()
  let streams = 0
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    streams++
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-from': name }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': String(Buffer.concat(chunks).length) }))
      stream.end(JSON.stringify({ method: headers[':method'], path: headers[':path'], te: headers.te, authority: headers[':authority'], body: Buffer.concat(chunks).toString() }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, streams: () => streams }
}

interface H2Reply {
  status: number
  headers: IncomingHttpHeaders
  trailers: IncomingHttpHeaders | undefined
  body: string
}

function h2Request(session: ClientHttp2Session, headers: Record<string, string>, body?: string): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined })
    let trailers: IncomingHttpHeaders | undefined
    let head: IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    req.on('response', (h) => (head = h))
    req.on('trailers', (tr) => (trailers = tr))
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('error', reject)
    req.on('end', () => resolve({ status: Number(head[':status']), headers: head, trailers, body: Buffer.concat(chunks).toString() }))
    if (body !== undefined) req.end(body)
  })
}

const providers = await Promise.all(['p1', 'p2'].map(h2Provider))
const proxy = await startProxy(t, {
  listeners: [
    { address: '127.0.0.1:0', upstream: 'h2', http2: true },
    { address: '127.0.0.1:0', upstream: 'h2' },
  ],
  upstreams: { h2: { protocol: 'h2c', servers: providers.map((p) => ({ address: p.address })) } },
})
const h2cPort = (proxy.vigil.listenerAddresses[0] as AddressInfo).port
const h1Port = (proxy.vigil.listenerAddresses[1] as AddressInfo).port

t.test('h2c listener to h2c providers: GET and POST, headers, body and trailers pass through', async (t) => {
  const session = connect(`http://127.0.0.1:${h2cPort}`)
  t.teardown(() => session.close())
  const r = await h2Request(session, { ':method': 'GET', ':path': '/a?x=1', 'x-custom': 'yes' })
  t.equal(r.status, 200)
  const seen = JSON.parse(r.body) as { method: string; path: string; body: string; authority: string }
  t.equal(seen.method, 'GET')
  t.equal(seen.path, '/a?x=1')
  t.equal(seen.authority, `127.0.0.1:${h2cPort}`, 'the client authority reaches the provider')
  t.same(r.trailers?.['x-checksum'], '0', 'trailers reach the client')
  const body = 'x'.repeat(200_000)
  const p = await h2Request(session, { ':method': 'POST', ':path': '/upload', te: 'trailers' }, body)
  const echoed = JSON.parse(p.body) as { body: string; te: string }
  t.equal(echoed.body.length, body.length, 'a 200 kB request body arrives whole')
  t.equal(echoed.te, 'trailers', 'TE: trailers is forwarded to an HTTP/2 provider')
  t.equal(p.trailers?.['x-checksum'], String(body.length))
})

t.test('many concurrent streams on one client connection are spread over the providers', async (t) => {
  const before = providers.map((p) => p.streams())
  const session = connect(`http://127.0.0.1:${h2cPort}`)
  t.teardown(() => session.close())
  const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => h2Request(session, { ':method': 'GET', ':path': `/${i}` })))
  t.ok(replies.every((r) => r.status === 200))
  const served = providers.map((p, i) => p.streams() - (before[i] as number))
  t.same(served, [20, 20], 'round robin by stream, not by connection')
})

t.test('an HTTP/1.1 client in front of HTTP/2 providers', async (t) => {
  const r = await get(`http://127.0.0.1:${h1Port}/h1?q=2`, { method: 'POST', body: 'hello' })
  t.equal(r.status, 200)
  const seen = JSON.parse(r.body) as { path: string; body: string }
  t.equal(seen.path, '/h1?q=2')
  t.equal(seen.body, 'hello')
})
