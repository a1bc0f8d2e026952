// Each probe against real servers on loopback: HTTP expectations, HTTPS with SNI and verification, TCP send/expect.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer as createTcpServer, type Socket } from 'node:net'
import { createServer as createTlsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { closedPort, httpServer } from './helpers/index.js'
import { resolveCheck } from '../src/health/check-spec.js'
import { createProbe, type ProbeResult } from '../src/health/probes/index.js'
import type { Active } from '../src/config/schema.js'

type Tap = { teardown(fn: () => unknown): void }

async function probe(t: Tap, active: Active, port: number, host = '127.0.0.1', timeout = 2_000): Promise<ProbeResult> {
  const p = createProbe(resolveCheck(active, undefined), host, port)
  t.teardown(() => p.close())
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), timeout)
  const r = await p.check(controller.signal)
  clearTimeout(timer)
  return r
}
t.test('http: expected status classes and codes, body regex, Host and headers', async (t) => {
  let seen: Record<string, unknown> = {}
  const up = await httpServer(t, (req, res) => {
    seen = { method: req.method, url: req.url, host: req.headers.host, token: req.headers['x-token'] }
    const status = req.url === '/gone' ? 404 : 200
    res.writeHead(status, { 'content-type': 'text/plain' })
    res.end(req.url === '/ready' ? '{"ready":true}' : '{"ready":false}')
  })
  t.same(await probe(t, { type: 'http' }, up.port), { ok: true, reason: 'ok' })
  t.same(seen, { method: 'GET', url: '/', host: up.address, token: undefined })
  t.same(await probe(t, { type: 'http', http: { method: 'HEAD', path: '/x', host: 'svc.local', headers: { 'x-token': 'k' } } }, up.port), { ok: true, reason: 'ok' })
  t.same(seen, { method: 'HEAD', url: '/x', host: 'svc.local', token: 'k' })
  t.match(await probe(t, { type: 'http', http: { path: '/gone' } }, up.port), { ok: false, reason: 'status_404' })
  t.match(await probe(t, { type: 'http', http: { path: '/gone', expectStatus: ['404'] } }, up.port), { ok: true })
  t.match(await probe(t, { type: 'http', http: { expectStatus: ['204'] } }, up.port), { ok: false, reason: 'status_200' })
  t.match(await probe(t, { type: 'http', http: { path: '/ready', expectBody: '"ready":\\s*true' } }, up.port), { ok: true })
  t.match(await probe(t, { type: 'http', http: { path: '/other', expectBody: '"ready":\\s*true' } }, up.port), { ok: false, reason: 'body_mismatch', detail: '{"ready":false}' })
  t.match(await probe(t, { type: 'http' }, await closedPort()), { ok: false, reason: 'connect_refused' })
})

t.test('http: a server that never answers times out when the checker aborts', async (t) => {
  const up = await httpServer(t, () => {
    // never answers
  })
  t.same(await probe(t, { type: 'http' }, up.port, '127.0.0.1', 200), { ok: false, reason: 'timeout' })
})

t.test('https: SNI is sent, self-signed certificates fail unless skipVerify', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const key = join(dir, 'key.pem')
  const cert = join(dir, 'cert.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=vigil.test', '-addext', 'subjectAltName=DNS:vigil.test'], { stdio: 'ignore' })
  const names: (string | false)[] = []
  const server = createTlsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    names.push((req.socket as unknown as { servername: string | false }).servername)
    res.end('ok')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  const port = (server.address() as AddressInfo).port
  t.same(await probe(t, { type: 'https', tls: { serverName: 'vigil.test', skipVerify: true } }, port), { ok: true, reason: 'ok' })
  t.same(await probe(t, { type: 'https', tls: { skipVerify: true } }, port), { ok: true, reason: 'ok' })
  t.same(names, ['vigil.test', false], 'SNI names only, never an IP address')
  const strict = await probe(t, { type: 'https', tls: { serverName: 'vigil.test' } }, port)
  t.equal(strict.ok, false)
  t.match(strict.detail, /self[- ]signed/)
})

async function tcpServer(t: Tap, onSocket: (s: Socket) => void): Promise<number> {
  const server = createTcpServer(onSocket)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return (server.address() as AddressInfo).port
}

t.test('tcp: connect, and a Redis-style PING/+PONG send/expect exchange', async (t) => {
  const sockets: Socket[] = []
  const redis = await tcpServer(t, (s) => {
    sockets.push(s)
    s.on('data', (d) => s.write(String(d) === 'PING\r\n' ? '+PONG\r\n' : '-ERR unknown command\r\n'))
  })
  t.teardown(() => sockets.forEach((s) => s.destroy()))
  t.same(await probe(t, { type: 'tcp' }, redis), { ok: true, reason: 'ok' })
  t.match(await probe(t, { type: 'tcp' }, await closedPort()), { ok: false, reason: 'connect_refused' })
  t.same(await probe(t, { tcp: { send: 'PING\r\n', expect: '+PONG' } }, redis), { ok: true, reason: 'ok' })
  t.same(await probe(t, { tcp: { send: 'PING\r\n' } }, redis), { ok: true, reason: 'ok' }, 'send only: passes once written')
  t.same(await probe(t, { tcp: { send: 'PONG\r\n', expect: '+PONG' } }, redis, '127.0.0.1', 300), { ok: false, reason: 'timeout' }, 'a wrong reply on an open connection waits for the timeout')
  const banner = await tcpServer(t, (s) => s.end('220 not what you expect\r\n'))
  t.match(await probe(t, { tcp: { expect: '+PONG' } }, banner), { ok: false, reason: 'unexpected_reply', detail: /^220/ })
  const silentClose = await tcpServer(t, (s) => s.destroy())
  t.match(await probe(t, { tcp: { expect: '+PONG' } }, silentClose), { ok: false })
})
