// Plain HTTP/2 end to end with Node's http2 on both sides: the h2c listener, h2c providers, bodies both ways,
// trailers, HTTP/1.1 clients in front of HTTP/2 providers.
import t from 'tap'
import { connect, createServer, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { get, startProxy } from './helpers/index.js'
import { h2Request, type H2Reply } from './helpers/http2.js'

/** An in-process h2c provider: echoes method, path, headers and body as JSON, with a trailer. */
async function h2Provider(name: string): Promise<{ address: string; streams: () => number; held: ServerHttp2Stream[] }> {
  const server = createServer()
  let streams = 0
  const held: ServerHttp2Stream[] = []
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    streams++
    // /hold: answered only when the test releases it.
    if (headers[':path'] === '/hold') return void held.push(stream)
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-from': name }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': String(Buffer.concat(chunks).length) }))
      stream.end(JSON.stringify({ method: headers[':method'], path: headers[':path'], te: headers.te, authority: headers[':authority'], body: Buffer.concat(chunks).toString() }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const sessions = new Set<Http2Session>()
  server.on('session', (s: Http2Session) => sessions.add(s))
  t.teardown(() => {
    for (const s of sessions) s.destroy()
    return new Promise((resolve) => server.close(resolve))
  })
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, streams: () => streams, held }
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

t.test('least_conn counts streams in flight: with one connection to each, the provider with fewer open streams gets the next', async (t) => {
  const ps = await Promise.all(['l1', 'l2'].map(h2Provider))
  const p = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'lc', http2: true }],
    // No stall watch: held streams would look like a stall and take both providers out of the choice.
    upstreams: { lc: { protocol: 'h2c', balance: 'least_conn', passive: { stall: { enabled: false } }, servers: ps.map((x) => ({ address: x.address })) } },
  })
  const session = connect(`http://127.0.0.1:${p.port}`)
  t.teardown(() => session.close())
  const holds: Promise<H2Reply>[] = []
  for (let i = 1; i <= 3; i++) {
    holds.push(h2Request(session, { ':method': 'GET', ':path': '/hold' }))
    while (ps[0]!.held.length + ps[1]!.held.length < i) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const busier = ps[0]!.held.length > ps[1]!.held.length ? ps[0]! : ps[1]!
  const idler = busier === ps[0] ? ps[1]! : ps[0]!
  t.same([busier.held.length, idler.held.length], [2, 1], 'three held streams: two on one provider, one on the other')
  const before = [busier.streams(), idler.streams()]
  for (let i = 0; i < 10; i++) t.equal((await h2Request(session, { ':method': 'GET', ':path': '/quick' })).status, 200)
  t.same([busier.streams() - before[0]!, idler.streams() - before[1]!], [0, 10], 'every quick request went to the one with fewer streams in flight')
  for (const s of [...busier.held, ...idler.held]) s.respond({ ':status': 200 }, { endStream: true })
  await Promise.all(holds)
  const status = JSON.parse((await get(`${p.admin}/status?format=json`)).body) as { servers: { server: { protocol: string; streams: number }[] } }
  t.ok(status.servers.server.every((s) => s.protocol === 'h2c'), 'the status page names the protocol')
})
