// TLS both ways: HTTPS providers (verification, CA bundle, SNI, client certificates) and an HTTPS listener.
import t, { type Test } from 'tap'
import { createServer as createHttpsServer, request as httpsRequest, type ServerOptions } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { once } from 'node:events'
import WebSocket, { WebSocketServer } from 'ws'
import { client, echo, get, startProxy } from './helpers/index.js'
import { exchange } from './helpers/raw.js'
import { makeCerts, type Certs } from './helpers/tls.js'

const certs: Certs = makeCerts(t.testdir({}))

/** An HTTPS provider that reports the SNI and client certificate it saw. */
async function httpsProvider(t: Test, extra: ServerOptions = {}): Promise<{ address: string; server: import('node:https').Server }> {
  const server = createHttpsServer({ cert: certs.cert, key: certs.key, ...extra }, (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket as TLSSocket
    res.setHeader('x-sni', String(socket.servername))
    res.setHeader('x-client-cert', socket.getPeerCertificate()?.subject?.CN ?? 'none')
    echo(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

t.test('an HTTPS provider verified against a CA bundle, with the configured SNI whatever Host the client sends', async (t) => {
  const up = await httpsProvider(t)
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }], tls: { ca: certs.caFile, servername: 'provider.test' } } } })
  const agent = client(t)
  for (const host of ['a.example', 'b.example']) {
    const r = await get(`${proxy.url}/secure`, { headers: { host }, dispatcher: agent })
    t.equal(r.status, 200)
    t.equal(r.headers['x-sni'], 'provider.test', `SNI is the configured name, not the client's Host (${host})`)
    t.equal((JSON.parse(r.body) as { headers: Record<string, string> }).headers['host'], host, 'the Host header is still the client one')
  }
})

t.test('an IP-addressed HTTPS provider gets no SNI and is checked against its IP', async (t) => {
  const up = await httpsProvider(t)
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }], tls: { ca: certs.caFile } } } })
  const r = await get(`${proxy.url}/`, { headers: { host: 'spoofed.example' } })
  t.equal(r.status, 200)
  t.equal(r.headers['x-sni'], 'false', 'no SNI sent (RFC 6066 forbids IP literals), and none taken from Host')
})

t.test('verification is on by default: an unknown CA or a wrong name is a 502 tls_failed', async (t) => {
  const up = await httpsProvider(t)
  const proxy = await startProxy(t, {
    listeners: [
      { address: '127.0.0.1:0', upstream: 'system' },
      { address: '127.0.0.1:0', upstream: 'wrongname' },
      { address: '127.0.0.1:0', upstream: 'unverified' },
    ],
    upstreams: {
      system: { servers: [{ address: up.address }], tls: true },
      wrongname: { servers: [{ address: up.address }], tls: { ca: certs.caFile, servername: 'other.test' } },
      unverified: { servers: [{ address: up.address }], tls: { verify: false } },
    },
  })
  const at = (i: number): string => `http://127.0.0.1:${proxy.vigil.listenerAddresses[i]!.port}/`
  const system = await get(at(0))
  t.equal(system.status, 502)
  t.equal(system.headers['x-vigil-error'], 'tls_failed')
  const wrong = await get(at(1))
  t.equal(wrong.status, 502)
  t.equal(wrong.headers['x-vigil-error'], 'tls_failed')
  t.equal((await get(at(2))).status, 200, 'verify: false accepts it')
})

t.test('a provider that requires a client certificate', async (t) => {
  const up = await httpsProvider(t, { requestCert: true, rejectUnauthorized: true, ca: certs.ca })
  const proxy = await startProxy(t, {
    listeners: [
      { address: '127.0.0.1:0', upstream: 'withcert' },
      { address: '127.0.0.1:0', upstream: 'without' },
    ],
    upstreams: {
      withcert: { servers: [{ address: up.address }], tls: { ca: certs.caFile, cert: certs.clientCertFile, key: certs.clientKeyFile } },
      without: { servers: [{ address: up.address }], tls: { ca: certs.caFile } },
    },
  })
  const ok = await get(`http://127.0.0.1:${proxy.vigil.listenerAddresses[0]!.port}/`)
  t.equal(ok.status, 200)
  t.equal(ok.headers['x-client-cert'], 'vigil client')
  const refused = await get(`http://127.0.0.1:${proxy.vigil.listenerAddresses[1]!.port}/`)
  t.equal(refused.status, 502, 'without the certificate the provider refuses the handshake')
})

t.test('WebSocket upgrades to an HTTPS provider use the same TLS settings', async (t) => {
  const up = await httpsProvider(t)
  const wss = new WebSocketServer({ server: up.server })
  wss.on('connection', (ws, req) => ws.send(`sni=${(req.socket as TLSSocket).servername}`))
  t.teardown(() => wss.close())
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }], tls: { ca: certs.caFile, servername: 'provider.test' } } } })
  const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/`, { headers: { host: 'evil.example' } })
  ws.on('error', () => {})
  t.equal(String(((await once(ws, 'message')) as [Buffer])[0]), 'sni=provider.test')
  ws.close()
  await once(ws, 'close')
})

t.test('an HTTPS listener', async (t) => {
  const upstream = await httpsProvider(t)
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'api', tls: { cert: certs.certFile, key: certs.keyFile } }],
    upstreams: { api: { servers: [{ address: upstream.address }], tls: { ca: certs.caFile } } },
  })
  const body = await new Promise<string>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: proxy.port, path: '/tls', ca: certs.ca, servername: 'localhost', headers: { 'x-forwarded-proto': 'http' } }, (res) => {
      let data = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (data += d))
      res.on('end', () => resolve(data))
    })
    req.on('error', reject)
    req.end()
  })
  const seen = JSON.parse(body) as { url: string; headers: Record<string, string> }
  t.equal(seen.url, '/tls')
  t.equal(seen.headers['x-forwarded-proto'], 'https', 'the scheme the client used')
  const plain = await exchange(proxy.port, { send: 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' })
  t.equal(plain.closed, true, 'plain HTTP on the TLS port is closed')
  t.notOk(plain.text.includes('"url"'), 'and never proxied')
})
