// Upgrades on a TLS listener: a WebSocket handshake is tunnelled to a real provider (wss in front, ws behind); an
// Upgrade vigil does not carry (h2c) is handed back to the https server and served as the plain request it also
// is, with what was pipelined after it; a WebSocket handshake with a body is refused. Real sockets throughout.
import t from 'tap'
import { mkdtempSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import WebSocket, { WebSocketServer } from 'ws'
import { startProxy } from './helpers/index.js'
import { recordingProvider } from './helpers/raw.js'
import { makeCerts } from './helpers/tls.js'

const certs = makeCerts(mkdtempSync(join(tmpdir(), 'vigil-upgrade-tls-')))

/** Everything the proxy answers to `bytes` sent over one TLS connection, until it closes the connection. */
function tlsExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: certs.ca }, () => socket.write(bytes))
    let text = ''
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')))
    socket.on('close', () => resolve(text))
    socket.on('error', reject)
    socket.setTimeout(20_000, () => socket.destroy(new Error(`no close after 20 s; got ${JSON.stringify(text)}`)))
  })
}

t.test('WebSocket through a TLS listener to a real provider', async (t) => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise((r) => wss.once('listening', r))
  t.teardown(() => new Promise((r) => wss.close(r)))
  wss.on('connection', (ws, req) => {
    ws.send(JSON.stringify({ url: req.url, proto: req.headers['x-forwarded-proto'] }))
    ws.on('message', (m) => ws.send(`echo:${m.toString()}`))
  })
  const address = `127.0.0.1:${(wss.address() as AddressInfo).port}`
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'api', tls: { cert: certs.certFile, key: certs.keyFile } }],
    upstreams: { api: { servers: [{ address }] } },
  })
  const ws = new WebSocket(`wss://localhost:${proxy.port}/chat?room=1`, { ca: certs.ca })
  t.teardown(() => ws.terminate())
  const messages: string[] = []
  ws.on('message', (m) => messages.push(m.toString()))
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  ws.send('ping')
  await new Promise<void>((resolve) => {
    const check = (): void => (messages.length >= 2 ? resolve() : void ws.once('message', check))
    check()
  })
  t.same(JSON.parse(messages[0] as string), { url: '/chat?room=1', proto: 'https' }, 'the provider saw the path, and that the client spoke TLS')
  t.equal(messages[1], 'echo:ping', 'frames flow both ways through the tunnel')
})

t.test('an h2c Upgrade on a TLS listener is served as a plain request, with the one pipelined after it', async (t) => {
  const { address, seen } = await recordingProvider(t)
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'api', tls: { cert: certs.certFile, key: certs.keyFile } }],
    upstreams: { api: { servers: [{ address }] } },
  })
  const text = await tlsExchange(
    proxy.port,
    'GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n' +
      'POST /after HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello',
  )
  t.equal(text.match(/HTTP\/1\.1 200 OK\r\n/g)?.length, 2, 'two answers over the same TLS connection')
  t.match(seen, [
    { method: 'GET', url: '/h2c', body: '' },
    { method: 'POST', url: '/after', body: 'hello' },
  ])
  t.ok(
    seen.every((s) => s.upgrade === undefined && s.settings === undefined),
    'without Upgrade or HTTP2-Settings',
  )

  const refused = await tlsExchange(
    proxy.port,
    'POST /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello',
  )
  t.match(refused, /^HTTP\/1\.1 400 [^\r]*\r\n/, 'a WebSocket handshake with a body is refused')
  t.match(refused, /x-vigil-error: bad_websocket_upgrade/i)
  t.equal(seen.length, 2, 'and nothing of it reached the provider')
})
