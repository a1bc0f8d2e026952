// Upgrades vigil does not tunnel never get silence: h2c, TLS/1.2 (anything but WebSocket) are served as the plain
// request they also are, the Upgrade ignored (as nginx); a WebSocket handshake with a body is refused with a 400.
import t from 'tap'
import { startProxy } from './helpers/index.js'
import { exchange, recordingProvider } from './helpers/raw.js'

t.test('upgrades other than WebSocket', async (t) => {
  const { address, seen } = await recordingProvider(t)
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address }] } } })
  const close = 'Connection: close\r\n'
  const plain: [string, string, { method: string; url: string; body: string }[]][] = [
    [
      'Upgrade: h2c (curl --http2 on cleartext)',
      `GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n${close}\r\n`,
      [
        { method: 'GET', url: '/h2c', body: '' },
        { method: 'GET', url: '/after', body: '' },
      ],
    ],
    ['Upgrade: TLS/1.2', `GET /tls HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: TLS/1.2\r\n\r\n`, [{ method: 'GET', url: '/tls', body: '' }]],
    ['a POST with Upgrade: h2c and a body', `POST /h2c-post HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\nContent-Length: 5\r\n\r\nhello`, [{ method: 'POST', url: '/h2c-post', body: 'hello' }]],
  ]
  for (const [name, bytes, expected] of plain) {
    await t.test(`${name}: answered as a plain request`, async (t) => {
      seen.length = 0
      const r = await exchange(proxy.port, { send: bytes })
      t.equal(r.status, 200, 'a real answer, not silence')
      t.equal(r.text.match(/HTTP\/1\.1 200 OK\r\n/g)?.length, expected.length, 'one answer per request')
      t.match(seen, expected, 'the provider got the requests (and the body)')
      t.ok(
        seen.every((s) => s.upgrade === undefined && s.settings === undefined),
        'without Upgrade or HTTP2-Settings',
      )
    })
  }

  for (const [name, bytes] of [
    ['a POST with Upgrade: websocket and a body', 'POST /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello'],
    ['a GET WebSocket handshake with a chunked body', 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'],
  ] as const) {
    await t.test(`${name}: refused`, async (t) => {
      seen.length = 0
      const r = await exchange(proxy.port, { send: bytes })
      t.match(r, { status: 400, closed: true })
      t.equal(r.header('x-vigil-error'), 'bad_websocket_upgrade')
      t.same(seen, [], 'nothing reached the provider')
    })
  }
})
