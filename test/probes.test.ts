// Each probe against real servers on loopback: HTTP expectations, HTTPS with SNI and verification, TCP send/expect.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer as createTcpServer, type Socket } from 'node:net'
import { createServer as createTlsServer } from 'node:https'
import { createServer as createH2cServer } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { closedPort, httpServer } from './helpers/index.js'
import { until } from './helpers/wait.js'
import { resolveCheck } from '../src/health/check-spec.js'
import type { UpstreamProtocol } from '../src/upstream/peer.js'
import { createProbe, type Probe, type ProbeResult } from '../src/health/probes/index.js'
import type { Active } from '../src/config/schema.js'

type Tap = { teardown(fn: () => unknown): void }

async function probe(t: Tap, active: Active, port: number, host = '127.0.0.1', timeout = 2_000): Promise<ProbeResult> {
  return checkWith(prober(t, active, port, host), timeout)
}

/** One probe, for several checks in a row (as the checker runs them). */
function prober(t: Tap, active: Active, port: number, host = '127.0.0.1', protocol: UpstreamProtocol = 'http1'): Probe {
  const p = createProbe(resolveCheck(active, undefined, protocol), host, port)
  t.teardown(() => p.close())
  return p
}

/** One check, aborted after `timeout` as the checker does. */
async function checkWith(p: Probe, timeout = 2_000): Promise<ProbeResult> {
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

t.test('http: one keep-alive connection serves check after check, whatever the check reads of the body', async (t) => {
  const sockets = new Set<Socket>()
  const up = await httpServer(t, (req, res) => {
    sockets.add(req.socket)
    const big = req.url?.startsWith('/big') === true
    res.writeHead(req.url === '/fail' ? 503 : 200, { 'content-type': 'text/plain' })
    // 100 KiB: over the 64 KiB that are matched, under the most that is drained for reuse.
    res.end(big ? 'a'.repeat(100 * 1024) : 'ok')
  })
  // (Not HEAD: undici closes a connection after a HEAD, for servers that send a body anyway.)
  const cases: [Active, ProbeResult][] = [
    [{ type: 'http' }, { ok: true, reason: 'ok' }],
    [{ type: 'http', http: { path: '/fail' } }, { ok: false, reason: 'status_503' }],
    [{ type: 'http', http: { path: '/fail', expectBody: 'ok' } }, { ok: false, reason: 'status_503' }],
    [{ type: 'http', http: { path: '/big' } }, { ok: true, reason: 'ok' }],
    [{ type: 'http', http: { path: '/big', expectBody: '^a+$' } }, { ok: true, reason: 'ok' }],
    [{ type: 'http', http: { path: '/big', expectBody: 'b' } }, { ok: false, reason: 'body_mismatch', detail: 'a'.repeat(80) }],
  ]
  for (const [active, expected] of cases) {
    sockets.clear()
    const p = prober(t, active, up.port)
    const results = [await checkWith(p), await checkWith(p), await checkWith(p)]
    t.same(results, [expected, expected, expected], JSON.stringify(active.http ?? {}))
    t.equal(sockets.size, 1, `${JSON.stringify(active.http ?? {})}: three checks on one connection`)
  }
})

t.test('http: a body split inside a UTF-8 character is matched (and shown) whole', async (t) => {
  const up = await httpServer(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' })
    const body = Buffer.from(req.url === '/long' ? '€'.repeat(100) : 'état: prêt ✓')
    if (req.url === '/later') {
      // The rest of "ê" a moment later, so it is read apart (request()'s body stream, whose setEncoding has no
      // decoder, turned each half into U+FFFD).
      res.write(body.subarray(0, 10))
      setTimeout(() => res.end(body.subarray(10)), 20)
      return
    }
    // One byte per chunk: every multi-byte character arrives in pieces.
    for (const byte of body) res.write(Buffer.from([byte]))
    res.end()
  })
  t.same(await probe(t, { type: 'http', http: { expectBody: '^état: prêt ✓$' } }, up.port), { ok: true, reason: 'ok' })
  t.same(await probe(t, { type: 'http', http: { expectBody: 'ready' } }, up.port), { ok: false, reason: 'body_mismatch', detail: 'état: prêt ✓' })
  t.same(await probe(t, { type: 'http', http: { path: '/later', expectBody: '^état: prêt ✓$' } }, up.port), { ok: true, reason: 'ok' }, 'read apart')
  t.same(await probe(t, { type: 'http', http: { path: '/long', expectBody: '^€{100}$' } }, up.port), { ok: true, reason: 'ok' })
  t.same(await probe(t, { type: 'http', http: { path: '/long', expectBody: 'x' } }, up.port), { ok: false, reason: 'body_mismatch', detail: '€'.repeat(80) }, 'the first 80 characters')
})

t.test('http: an endless body ends the check past a bound (the answer is in by then) and closes its connection', async (t) => {
  const sockets = new Set<Socket>()
  const up = await httpServer(t, (req, res) => {
    sockets.add(req.socket)
    res.writeHead(req.url === '/fail' ? 503 : 200, { 'content-type': 'text/plain' })
    const chunk = Buffer.alloc(16 * 1024, 'a')
    const pump = (): void => {
      while (!res.destroyed && res.write(chunk));
      if (!res.destroyed) res.once('drain', pump)
    }
    pump()
  })
  const cases: [Active, ProbeResult][] = [
    [{ type: 'http' }, { ok: true, reason: 'ok' }],
    [{ type: 'http', http: { path: '/fail' } }, { ok: false, reason: 'status_503' }],
    [{ type: 'http', http: { expectBody: '^a+$' } }, { ok: true, reason: 'ok' }],
    [{ type: 'http', http: { expectBody: 'b' } }, { ok: false, reason: 'body_mismatch', detail: 'a'.repeat(80) }],
  ]
  for (const [active, expected] of cases) {
    sockets.clear()
    const p = prober(t, active, up.port)
    // A timeout far beyond the test's needs: an endless body that held the check would end as 'timeout'.
    t.same([await checkWith(p, 30_000), await checkWith(p, 30_000)], [expected, expected], JSON.stringify(active.http ?? {}))
    t.equal(sockets.size, 2, `${JSON.stringify(active.http ?? {})}: the endless response's connection is not reused`)
  }
})

t.test('http: a body that stalls: the timeout ends the check; a status already in stands, a body to match times out', async (t) => {
  const sockets = new Set<Socket>()
  const up = await httpServer(t, (req, res) => {
    sockets.add(req.socket)
    res.writeHead(req.url === '/fail' ? 503 : 200, { 'content-type': 'text/plain' })
    res.write('ready, and then nothing')
  })
  const stalled = async (active: Active): Promise<[ProbeResult, ProbeResult, number]> => {
    sockets.clear()
    const p = prober(t, active, up.port)
    return [await checkWith(p, 300), await checkWith(p, 300), sockets.size]
  }
  // As under request() + dump(): the status decided; the unread rest only costs the connection.
  t.same(await stalled({ type: 'http' }), [{ ok: true, reason: 'ok' }, { ok: true, reason: 'ok' }, 2])
  t.same(await stalled({ type: 'http', http: { path: '/fail' } }), [{ ok: false, reason: 'status_503' }, { ok: false, reason: 'status_503' }, 2])
  t.same(await stalled({ type: 'http', http: { expectBody: 'ready' } }), [{ ok: false, reason: 'timeout' }, { ok: false, reason: 'timeout' }, 2])
})

t.test('http: a check that ends before undici gives its request a connection settles at once, and is never sent', async (t) => {
  let requests = 0
  let answer = false
  const up = await httpServer(t, (_req, res) => {
    requests++
    if (answer) res.end('ok')
  })
  const p = prober(t, { type: 'http' }, up.port)
  const first = new AbortController()
  const held = p.check(first.signal)
  await until(() => requests === 1, 'the first check at the server')
  // One connection, one request at a time: the second waits in the client's queue behind the first.
  const second = new AbortController()
  const queued = p.check(second.signal)
  second.abort()
  // If the queued check waited for the first (as under request()), the first would win at its own timeout.
  const timer = setTimeout(() => first.abort(), 10_000)
  t.equal(await Promise.race([held.then(() => 'first'), queued.then(() => 'second')]), 'second', 'the queued check settled while the first still waits')
  t.same(await queued, { ok: false, reason: 'timeout' })
  clearTimeout(timer)
  first.abort()
  t.same(await held, { ok: false, reason: 'timeout' })
  answer = true
  t.same(await checkWith(p), { ok: true, reason: 'ok' })
  const aborted = new AbortController()
  aborted.abort()
  t.same(await p.check(aborted.signal), { ok: false, reason: 'timeout' }, 'a signal already aborted')
  t.same(await checkWith(p), { ok: true, reason: 'ok' })
  t.equal(requests, 3, 'the server saw the first check and the two that passed, never an aborted one')
})

t.test('http over h2c: status, a body to match, one session for check after check', async (t) => {
  let sessions = 0
  const server = createH2cServer()
  server.on('session', () => sessions++)
  server.on('stream', (stream, headers) => {
    const path = headers[':path']
    stream.respond({ ':status': path === '/fail' ? 503 : 200, 'content-type': 'text/plain; charset=utf-8' })
    // Split inside a character, in two DATA frames.
    const body = Buffer.from('prêt ✓')
    stream.write(body.subarray(0, 3))
    stream.end(body.subarray(3))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  const port = (server.address() as AddressInfo).port
  const cases: [Active, ProbeResult][] = [
    [{ type: 'http' }, { ok: true, reason: 'ok' }],
    [{ type: 'http', http: { path: '/fail' } }, { ok: false, reason: 'status_503' }],
    [{ type: 'http', http: { expectBody: '^prêt ✓$' } }, { ok: true, reason: 'ok' }],
    [{ type: 'http', http: { expectBody: 'ready' } }, { ok: false, reason: 'body_mismatch', detail: 'prêt ✓' }],
  ]
  for (const [active, expected] of cases) {
    const before = sessions
    const p = prober(t, active, port, '127.0.0.1', 'h2c')
    t.same([await checkWith(p), await checkWith(p), await checkWith(p)], [expected, expected, expected], JSON.stringify(active.http ?? {}))
    t.equal(sessions - before, 1, `${JSON.stringify(active.http ?? {})}: one HTTP/2 session`)
    await p.close()
  }
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
