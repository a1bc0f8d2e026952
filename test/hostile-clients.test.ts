// Hostile clients over raw sockets: every case gets a clear 4xx or a closed connection, and vigil serves the next request.
import t, { type Test } from 'tap'
import type { ServerResponse } from 'node:http'
import { waitFor } from './helpers/wait.js'
import { client, echo, get, httpServer, startProxy } from './helpers/index.js'
import { exchange, request } from './helpers/raw.js'
import { connect } from 'node:net'

const closedAfter = (status: number) => ({ status, closed: true })

t.test('hostile client requests', async (t) => {
  let bigResponses = 0
  let bigClosed = 0
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/big') {
      // An endless response, for a client that never reads it: it only stops when vigil gives up on the client.
      bigResponses++
      res.on('close', () => bigClosed++)
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      const chunk = Buffer.alloc(64 * 1024, 0x61)
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump)
      }
      pump()
      return
    }
    echo(req, res as ServerResponse)
  })
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'api', limits: { headersTimeout: 400, requestTimeout: 1_000, idleTimeout: 1_000, maxHeaderSize: 4096, maxHeaders: 20 } }],
    upstreams: { api: { servers: [{ address: up.address }] } },
  })
  const agent = client(t)
  const stillServes = async (t: Test): Promise<void> => {
    const r = await get(`${proxy.url}/next`, { dispatcher: agent })
    t.equal(r.status, 200, 'vigil still serves the next request')
  }
  const peer = proxy.vigil.upstreams.get('api')!.peers[0]!

  const rejected: [string, string | string[], number][] = [
    ['Content-Length and Transfer-Encoding together', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['duplicate Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', 400],
    ['duplicate equal Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello', 400],
    ['obfuscated Transfer-Encoding (xchunked)', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n', 400],
    ['obfuscated Transfer-Encoding (space before colon)', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n', 400],
    ['obfuscated Transfer-Encoding (chunked, identity)', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n', 400],
    ['two Transfer-Encoding headers', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n', 400],
    ['bare LF line endings', 'GET / HTTP/1.1\nHost: x\n\n', 400],
    ['bare LF inside the headers', 'GET / HTTP/1.1\r\nHost: x\nX-Smuggled: 1\r\n\r\n', 400],
    ['bare CR inside the headers', 'GET / HTTP/1.1\r\nHost: x\rX-Smuggled: 1\r\n\r\n', 400],
    ['bare LF in a chunk size line', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n', 400],
    ['obsolete line folding', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n', 400],
    ['a space in a header name', 'GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n', 400],
    ['a NUL in a header value', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n', 400],
    ['a DEL in a header value', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\u007fb\r\n\r\n', 400],
    ['no Host header', 'GET / HTTP/1.1\r\n\r\n', 400],
    ['two Host headers', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
    ['garbage instead of a request line', '\u0016\u0003\u0001\u0000\u00a5\u0001\u0000\u0000\u00a1\u0003\u0003 not http at all\r\n\r\n', 400],
    ['an oversized request line', `GET /${'a'.repeat(8_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431],
    ['oversized headers', `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(8_000)}\r\n\r\n`, 431],
    ['CONNECT (vigil is not a forward proxy)', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 405],
    ['an HTTP/2.0 version in an HTTP/1 request line', 'GET / HTTP/2.0\r\nHost: x\r\n\r\n', 505],
    ['an HTTP/2 connection preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 400],
    ['an unknown method', 'FOO / HTTP/1.1\r\nHost: x\r\n\r\n', 400],
    ['too many headers', request('/', Array.from({ length: 30 }, (_, i) => `X-H${i}: ${i}\r\n`).join('')), 431],
  ]
  for (const [name, bytes, status] of rejected) {
    await t.test(name, async (t) => {
      const r = await exchange(proxy.port, { send: bytes })
      t.match(r, closedAfter(status), `${status} and the connection closed`)
      t.ok(r.header('x-vigil-error'), `x-vigil-error: ${r.header('x-vigil-error')}`)
      await stillServes(t)
    })
  }

  await t.test('slowloris: headers trickled byte by byte hit the headers timeout (408)', async (t) => {
    const bytes = request('/', 'X-Slow: 1\r\n'.repeat(10)).split('')
    const r = await exchange(proxy.port, { send: bytes, gap: 50 })
    t.match(r, closedAfter(408))
    t.equal(r.header('x-vigil-error'), 'request_timeout')
    await stillServes(t)
  })

  await t.test('a request body that never finishes arriving is cut by the request timeout', async (t) => {
    const head = 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n'
    const r = await exchange(proxy.port, { send: [head, ...Array.from({ length: 200 }, () => 'x')], gap: 50 })
    t.equal(r.closed, true, 'connection closed')
    t.equal(r.status, 408, 'a 408 and nothing else')
    t.equal(r.header('x-vigil-error'), 'request_timeout')
    t.equal(r.text.match(/HTTP\/1\.1 /g)?.length, 1, 'one response only')
    t.equal(peer.inflight, 0, 'the upstream attempt was released')
    await stillServes(t)
  })

  await t.test('a client that never reads the response is disconnected, and the provider stream released', async (t) => {
    const socket = connect(proxy.port, '127.0.0.1')
    socket.on('error', () => {})
    socket.write(request('/big'))
    socket.pause()
    await t.resolves(waitFor(() => bigClosed === 1), 'the provider response was aborted after the idle timeout')
    t.equal(bigResponses, 1)
    const closed = new Promise((resolve) => socket.once('close', resolve))
    socket.resume()
    await t.resolves(closed, 'vigil closed the client connection')
    t.equal(peer.inflight, 0)
    await stillServes(t)
  })

  await t.test('pipelined requests are answered in order on one connection', async (t) => {
    const r = await exchange(proxy.port, {
      send: request('/one') + 'POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc' + request('/three', 'Connection: close\r\n'),
    })
    t.equal(r.closed, true)
    const urls = [...r.text.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1])
    t.same(urls, ['/one', '/two', '/three'])
    t.equal(r.text.match(/HTTP\/1\.1 200/g)?.length, 3)
    t.match(r.text, /"body":"abc"/)
    await stillServes(t)
  })

  await t.test('a smuggled request hidden in a body is not split out', async (t) => {
    // Chunked body whose content looks like a second request: it must reach the provider as body bytes only.
    const inner = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n'
    const body = `${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`
    const r = await exchange(proxy.port, { send: `POST /outer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body}` })
    t.equal(r.status, 200)
    t.notMatch(r.text, /"url":"\/smuggled"/)
    t.equal(r.text.match(/HTTP\/1\.1 /g)?.length, 1, 'one response')
    await stillServes(t)
  })
})
