// HTTP/2 over TLS: a TLS listener with http2 answers h2 by ALPN and HTTP/1.1 on the same port; an upstream with
// protocol h2 reaches an HTTP/2 TLS provider (ALPN h2, the group's CA); gRPC over TLS end to end.
import t from 'tap'
import { connect, createSecureServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import * as grpc from '@grpc/grpc-js'
import { Agent } from 'undici'
import { get, startProxy } from './helpers/index.js'
import { tempDir } from './helpers/config-file.js'
import { makeCerts } from './helpers/tls.js'
import { echoService } from '../bench/lib/grpc-provider.js'

const certs = makeCerts(tempDir(t))

/** An HTTP/2-only TLS provider (no HTTP/1.1 fallback): answers the protocol and path it saw. */
const provider = createSecureServer({ cert: certs.cert, key: certs.key })
provider.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
  stream.respond({ ':status': 200, 'content-type': 'text/plain' })
  stream.end(`h2 ${String(headers[':path'])}`)
})
await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise((resolve) => provider.close(resolve)))
const providerAddress = `127.0.0.1:${(provider.address() as AddressInfo).port}`

const proxy = await startProxy(t, {
  listeners: [{ address: '127.0.0.1:0', upstream: 'h2', http2: true, tls: { cert: certs.certFile, key: certs.keyFile } }],
  upstreams: { h2: { protocol: 'h2', tls: { ca: certs.caFile, servername: 'provider.test' }, servers: [{ address: providerAddress }] } },
})

t.test('an h2 client on the TLS listener (ALPN h2) reaches the h2 provider', async (t) => {
  const session = connect(`https://127.0.0.1:${proxy.port}`, { ca: certs.ca, servername: 'localhost' })
  t.teardown(() => session.close())
  const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = session.request({ ':path': '/over-h2' })
    let status = 0
    let body = ''
    req.on('response', (h) => (status = Number(h[':status'])))
    req.setEncoding('utf8')
    req.on('data', (c: string) => (body += c))
    req.on('end', () => resolve({ status, body }))
    req.on('error', reject)
  })
  t.equal(session.alpnProtocol, 'h2')
  t.same(reply, { status: 200, body: 'h2 /over-h2' })
})

t.test('an HTTP/1.1 client on the same TLS listener still works', async (t) => {
  const agent = new Agent({ connect: { ca: certs.ca, servername: 'localhost' } })
  t.teardown(() => agent.close())
  const r = await get(`https://127.0.0.1:${proxy.port}/over-h1`, { dispatcher: agent })
  t.equal(r.status, 200)
  t.equal(r.body, 'h2 /over-h1', 'HTTP/1.1 in front, HTTP/2 behind')
  const refused = await get(`https://127.0.0.1:${proxy.port}/x`, { dispatcher: agent, method: 'TRACE' })
  t.equal(refused.status, 405, "the HTTP/1.1 half keeps the listener's request checks")
})

t.test("HTTP/2 listeners turn Nagle's algorithm off on their connections, as Node's HTTP/1.1 servers do", async (t) => {
  // Node sets TCP_NODELAY on every connection a server with noDelay accepts; its HTTP/1.1 servers have it, its
  // HTTP/2 ones not. Without it an HTTP/1.1 client of a TLS listener with http2 waited for its delayed ACK (~40 ms)
  // on every response written in two pieces (measured: 45 ms per sequential GET before, about 2 ms after).
  const more = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'h2', http2: true }, { address: '127.0.0.1:0', upstream: 'h2' }],
    upstreams: { h2: { protocol: 'h2', tls: { ca: certs.caFile, servername: 'provider.test' }, servers: [{ address: providerAddress }] } },
  })
  const servers = (p: typeof proxy): { noDelay?: boolean }[] => (p.vigil as unknown as { listeners: { server: { noDelay?: boolean } }[] }).listeners.map((l) => l.server)
  t.same([...servers(proxy), ...servers(more)].map((s) => s.noDelay), [true, true, true], 'TLS with http2, h2c, and plain HTTP/1.1 (Node\'s own)')
})

t.test('gRPC over TLS: a grpc-js client with the CA, through the h2 listener', async (t) => {
  const { Client } = echoService()
  const grpcProvider = new grpc.Server()
  grpcProvider.addService(echoService().service, {
    say: (call: grpc.ServerUnaryCall<{ text: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { text: call.request.text, from: 'tls' }),
  })
  const port = await new Promise<number>((resolve, reject) =>
    grpcProvider.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ cert_chain: certs.cert, private_key: certs.key }]), (e, p) => (e === null ? resolve(p) : reject(e))),
  )
  t.teardown(() => grpcProvider.forceShutdown())
  const p = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'g', http2: true, tls: { cert: certs.certFile, key: certs.keyFile } }],
    upstreams: { g: { protocol: 'h2', tls: { ca: certs.caFile, servername: 'provider.test' }, servers: [{ address: `127.0.0.1:${port}` }] } },
  })
  const client = new Client(`localhost:${p.port}`, grpc.credentials.createSsl(certs.ca))
  t.teardown(() => client.close())
  const reply = await new Promise<{ text: string; from: string }>((resolve, reject) =>
    (client as unknown as { say(m: object, cb: (e: Error | null, r: { text: string; from: string }) => void): void }).say({ text: 'secure' }, (e, r) => (e === null ? resolve(r) : reject(e))),
  )
  t.same({ text: reply.text, from: reply.from }, { text: 'secure', from: 'tls' })
})
