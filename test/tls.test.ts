// TLS both ways: HTTPS providers (verification, CA bundle, SNI, client certificates) and an HTTPS listener.
import t, { type Test } from 'tap'
import { createServer as createHttpsServer, request as httpsRequest, type ServerOptions } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { X509Certificate } from 'node:crypto'
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { once } from 'node:events'
import WebSocket, { WebSocketServer } from 'ws'
import { client, echo, get, startProxy } from './helpers/index.js'
import { waitFor } from './helpers/health.js'
import { exchange } from './helpers/raw.js'
import { makeCerts, type Certs } from './helpers/tls.js'
import { capture, proxyConfig, startProxyFromFile, writeConfig } from './helpers/config-file.js'
import { parseConfig } from '../src/config/load.js'
import type { ConfigError } from '../src/config/errors.js'

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

t.test("an https check uses the group's tls: its CA and client certificate", async (t) => {
  const up = await httpsProvider(t, { requestCert: true, rejectUnauthorized: true, ca: certs.ca })
  const check = { type: 'https' as const, interval: 100, timeout: 2_000, rise: 1, fall: 1 }
  const proxy = await startProxy(t, {
    upstreams: {
      withcert: { servers: [{ address: up.address }], tls: { ca: certs.caFile, cert: certs.clientCertFile, key: certs.clientKeyFile }, active: check },
      without: { servers: [{ address: up.address }], tls: { ca: certs.caFile }, active: check },
    },
  })
  const target = (u: string) => proxy.vigil.checker.stateOf(proxy.vigil.upstreams.get(u)!.peers[0]!)!
  await waitFor('checked', () => target('withcert').checks >= 2 && target('without').state.down)
  t.same([target('withcert').failures, target('withcert').state.down], [0, false], 'checked with the certificate and verified by the group CA')
  t.equal(target('without').state.down, true, 'without one the provider refuses the check too')
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

/** The SHA-256 fingerprint of the certificate a TLS listener presents to a new connection. */
async function presented(port: number): Promise<string> {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false })
  await once(socket, 'secureConnect')
  const fingerprint = socket.getPeerCertificate().fingerprint256
  socket.destroy()
  return fingerprint
}

const fingerprintOf = (pem: Buffer): string => new X509Certificate(pem).fingerprint256

t.test('every reload re-reads the HTTPS listener certificate; a bad pair is rejected and the last good one serves on', async (t) => {
  const upstream = await httpsProvider(t)
  const dir = t.testdir({ next: {} })
  const next = makeCerts(join(dir, 'next'))
  const live = { cert: join(dir, 'live.pem'), key: join(dir, 'live.key') }
  const install = (c: { certFile: string; keyFile: string }): void => {
    copyFileSync(c.certFile, live.cert)
    copyFileSync(c.keyFile, live.key)
  }
  install(certs)
  const config = proxyConfig([], { log: { level: 'fatal' }, listeners: [{ address: '127.0.0.1:0', upstream: 'api', tls: live }], upstreams: { api: { servers: [{ address: upstream.address }], tls: { ca: certs.caFile } } } })
  const proxy = await startProxyFromFile(t, join(dir, 'vigil.json'), config)
  t.equal(await presented(proxy.port), fingerprintOf(certs.cert))
  t.not(fingerprintOf(next.cert), fingerprintOf(certs.cert), 'two different certificates')

  install(next)
  t.equal((await proxy.vigil.reload('signal')).ok, true, 'the same config file, reloaded')
  t.equal(await presented(proxy.port), fingerprintOf(next.cert), 'new connections get the new certificate')

  // Half a rotation: the old certificate with the new key.
  copyFileSync(certs.certFile, live.cert)
  const bad = await proxy.vigil.reload('signal')
  t.equal(bad.ok, false)
  t.match(bad.issues, [{ path: 'listeners[0].tls', found: /key values mismatch/, expected: /private key that belongs to it/ }])
  t.equal(await presented(proxy.port), fingerprintOf(next.cert), 'the last good certificate keeps serving')
})

t.test('a certificate that is not PEM, or a key that is not its own, is a config error at its tls path', async (t) => {
  const dir = t.testdir({ 'garbage.pem': 'not a certificate\n', other: {} })
  const other = makeCerts(join(dir, 'other'))
  const issuesOf = (tls: { cert: string; key: string }, where: 'listener' | 'upstream') => {
    const config = proxyConfig(['127.0.0.1:1'])
    if (where === 'listener') config.listeners = [{ address: '127.0.0.1:0', upstream: 'api', tls }]
    else config.upstreams = { api: { servers: [{ address: '127.0.0.1:1' }], tls } }
    try {
      parseConfig(JSON.stringify(config), 'test.json')
      return []
    } catch (err) {
      return (err as ConfigError).issues
    }
  }
  t.match(issuesOf({ cert: join(dir, 'garbage.pem'), key: certs.keyFile }, 'listener'), [{ path: 'listeners[0].tls', found: /garbage\.pem.*: .*no start line/ }])
  t.match(issuesOf({ cert: certs.certFile, key: other.keyFile }, 'listener'), [{ path: 'listeners[0].tls', found: /key values mismatch/ }])
  t.match(issuesOf({ cert: certs.clientCertFile, key: other.clientKeyFile }, 'upstream'), [{ path: 'upstreams.api.tls', found: /key values mismatch/ }], 'a client certificate too')
  const missing = issuesOf({ cert: join(dir, 'missing.pem'), key: certs.keyFile }, 'listener')
  t.equal(missing.length, 1, 'a missing file is reported once, under its own key')
  t.equal(missing[0]?.path, 'listeners[0].tls.cert')
  t.same(issuesOf({ cert: certs.certFile, key: certs.keyFile }, 'listener'), [], 'a real pair is fine')
})

t.test('turning TLS on for a kept listener address waits for a restart, and the reload says so', async (t) => {
  const upstream = await httpsProvider(t)
  const { logger, lines } = capture()
  const upstreams = { api: { servers: [{ address: upstream.address }], tls: { ca: certs.caFile } } }
  const proxy = await startProxyFromFile(t, join(t.testdir({}), 'vigil.json'), proxyConfig([], { upstreams }), logger)
  writeConfig(proxy.file, proxyConfig([], { listeners: [{ address: '127.0.0.1:0', upstream: 'api', tls: { cert: certs.certFile, key: certs.keyFile } }], upstreams }))
  t.equal((await proxy.vigil.reload('signal')).ok, true)
  t.match(lines.find((l) => l['msg'] === 'these settings change at the next restart'), { settings: ['listeners[0].tls'] })
  t.equal((await get(proxy.url)).status, 200, 'the kept address still serves plain HTTP')
})
