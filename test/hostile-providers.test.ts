// Misbehaving providers over raw sockets: vigil answers 502/504 or cuts the client, never crashes, and serves the next request.
import t, { type Test } from 'tap'
import type { Socket } from 'node:net'
import { client, get, httpServer, startProxy } from './helpers/index.js'
import { exchange, rawProvider, request } from './helpers/raw.js'

/** One proxy per case: the misbehaving provider, plus a healthy one on a second listener to prove vigil still serves. */
async function setup(t: Test, behave: (socket: Socket, head: string) => void, extra: Record<string, unknown> = {}) {
  const bad = await rawProvider(t, behave)
  const good = await httpServer(t, (_req, res) => res.end('fine'))
  const proxy = await startProxy(t, {
    listeners: [
      { address: '127.0.0.1:0', upstream: 'bad' },
      { address: '127.0.0.1:0', upstream: 'good' },
    ],
    upstreams: {
      bad: { servers: [{ address: bad.address }], timeouts: { response: 500, idle: 500 }, ...extra },
      good: { servers: [{ address: good.address }] },
    },
  })
  const agent = client(t)
  const peer = proxy.vigil.upstreams.get('bad')!.peers[0]!
  return {
    proxy,
    bad,
    peer,
    async stillServes(t: Test): Promise<void> {
      t.equal((await get(`http://127.0.0.1:${proxy.vigil.listenerAddresses[1]!.port}/`, { dispatcher: agent })).body, 'fine', 'the other upstream is still served')
      t.equal(peer.inflight, 0, 'no attempt left in flight')
    },
  }
}

const cases: [string, (socket: Socket) => void, number, string, Record<string, unknown>?][] = [
  ['garbage instead of HTTP', (s) => s.end('SSH-2.0-OpenSSH_9.6\r\n\r\n'), 502, 'invalid_response'],
  ['a status line and then nothing', (s) => s.write('HTTP/1.1 200 OK\r\n'), 504, 'response_timeout'],
  ['connection closed in the middle of the headers', (s) => s.end('HTTP/1.1 200 OK\r\nContent-Type: text/pl'), 502, 'upstream_reset'],
  ['connection closed before any byte', (s) => s.destroy(), 502, 'upstream_reset'],
  ['an invalid header line', (s) => s.end('HTTP/1.1 200 OK\r\nBad Header\r\nContent-Length: 0\r\n\r\n'), 502, 'invalid_response'],
  ['a smuggling response (CL and TE)', (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'), 502, 'invalid_response'],
  ['an endless storm of 103 Early Hints', (s) => storm(s, Infinity), 502, 'invalid_response'],
  ['an unsolicited 100 Continue', (s) => s.write('HTTP/1.1 100 Continue\r\n\r\n'), 502, 'invalid_response'],
  ['a huge header block', (s) => s.write(`HTTP/1.1 200 OK\r\nX-Big: ${'x'.repeat(100_000)}\r\n\r\n`), 502, 'invalid_response'],
]

for (const [name, behave, status, code] of cases) {
  t.test(name, async (t) => {
    const { proxy, stillServes } = await setup(t, behave)
    const r = await exchange(proxy.port, { send: request('/', 'Connection: close\r\n') })
    t.equal(r.status, status)
    t.equal(r.header('x-vigil-error'), code, r.text.slice(0, 300))
    await stillServes(t)
  })
}

t.test('a few 1xx responses before the real response: the client gets only the final response', async (t) => {
  const { proxy, stillServes } = await setup(t, (s) => {
    storm(s, 10)
    s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok')
  })
  const r = await exchange(proxy.port, { send: request('/', 'Connection: close\r\n') })
  t.equal(r.status, 200)
  t.match(r.text, /\r\n\r\nok$/)
  t.notMatch(r.text, /HTTP\/1\.1 1/)
  await stillServes(t)
})

t.test('a body shorter than its Content-Length: the client connection is cut, not left waiting', async (t) => {
  const { proxy, stillServes } = await setup(t, (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this'))
  const r = await exchange(proxy.port, { send: request('/') })
  t.equal(r.status, 200, 'the status line was already sent')
  t.equal(r.closed, true, 'then the connection is closed')
  t.equal(r.header('content-length'), '100')
  t.ok(r.text.length < r.text.indexOf('\r\n\r\n') + 4 + 100, 'short body')
  await stillServes(t)
})

t.test('a body longer than its Content-Length: the extra bytes never reach the client', async (t) => {
  const { proxy, stillServes } = await setup(t, (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n'))
  const r = await exchange(proxy.port, { send: request('/', 'Connection: close\r\n') })
  t.equal(r.status, 200)
  t.match(r.text, /\r\n\r\nok$/)
  t.notMatch(r.text, /X-Injected/)
  await stillServes(t)
})

t.test('an endless body is cut at maxResponseSize and counts as a failure', async (t) => {
  const { proxy, peer, stillServes } = await setup(
    t,
    (s) => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')
      const chunk = `4000\r\n${'z'.repeat(0x4000)}\r\n`
      const pump = (): void => {
        while (!s.destroyed && s.write(chunk));
        if (!s.destroyed) s.once('drain', pump)
      }
      pump()
    },
    { maxResponseSize: 100_000 },
  )
  const r = await exchange(proxy.port, { send: request('/') })
  t.equal(r.status, 200)
  t.equal(r.closed, true, 'connection cut')
  const body = r.text.length - r.text.indexOf('\r\n\r\n') - 4
  t.ok(body < 200_000, `bounded body (${body} bytes with chunk framing)`)
  t.equal(peer.failures, 1)
  await stillServes(t)
})

/** `n` interim responses (103 Early Hints), as fast as the socket takes them. */
function storm(s: Socket, n: number): void {
  const interim = 'HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n'
  if (n !== Infinity) {
    s.write(interim.repeat(n))
    return
  }
  const pump = (): void => {
    while (!s.destroyed && s.write(interim.repeat(100)));
    if (!s.destroyed) s.once('drain', pump)
  }
  pump()
}
