// Hostile HTTP/2 clients, written frame by frame on a raw socket: rapid reset (CVE-2023-44487), SETTINGS and PING
// floods, more streams than allowed, a window that never opens. Each is answered (GOAWAY ENHANCE_YOUR_CALM, refused
// streams, a reset stream) with bounded work, while another client is served at the same time.
import t from 'tap'
import { connect, constants, createServer, type Http2Session, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { startProxy } from './helpers/index.js'
import { DATA, flood, frame, get, GOAWAY, goawayCode, PING, rapidResets, rawClient, RST_STREAM, SETTINGS } from './helpers/h2-frames.js'

// The provider: counts streams; /hold streams wait until released, /big streams answer 1 MB.
const held: ServerHttp2Stream[] = []
/** The RST_STREAM code each /big stream closed with (0: it ended normally). */
const bigClosed: number[] = []
let providerStreams = 0
const provider = createServer()
provider.on('stream', (stream: ServerHttp2Stream, headers) => {
  providerStreams++
  stream.on('error', () => {})
  if (headers[':path'] === '/hold') return void held.push(stream)
  if (headers[':path'] === '/big') stream.once('close', () => bigClosed.push(stream.rstCode ?? 0))
  stream.respond({ ':status': 200 })
  stream.end(headers[':path'] === '/big' ? Buffer.alloc(1 << 20) : 'ok')
})
await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve))
const providerSessions = new Set<Http2Session>()
provider.on('session', (s: Http2Session) => providerSessions.add(s))
t.teardown(() => {
  for (const s of providerSessions) s.destroy()
  return new Promise((resolve) => provider.close(resolve))
})
const proxy = await startProxy(t, {
  listeners: [{ address: '127.0.0.1:0', upstream: 'h2', http2: true, limits: { idleTimeout: '1s', http2: { maxConcurrentStreams: 5, maxResets: 50, maxSettings: 20, maxPings: 20 } } }],
  upstreams: { h2: { protocol: 'h2c', servers: [{ address: `127.0.0.1:${(provider.address() as AddressInfo).port}` }] } },
})

/** A well-behaved client's GET through the same listener. */
async function served(): Promise<number> {
  const session = connect(`http://127.0.0.1:${proxy.port}`)
  try {
    return await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': '/' })
      req.on('response', (h) => resolve(Number(h[':status'])))
      req.on('error', reject)
      req.resume()
    })
  } finally {
    session.close()
  }
}

t.test('rapid reset: streams opened and cancelled in a loop get GOAWAY after maxResets, with bounded work', async (t) => {
  const before = providerStreams
  const c = rawClient(t, proxy.port)
  c.socket.write(rapidResets(2000, constants.NGHTTP2_CANCEL))
  const goaway = await c.seen(GOAWAY)
  t.equal(goawayCode(goaway), constants.NGHTTP2_ENHANCE_YOUR_CALM, 'GOAWAY ENHANCE_YOUR_CALM')
  await c.closed
  t.ok(providerStreams - before <= 100, `bounded: the provider saw ${providerStreams - before} of 2000 streams (maxResets 50)`)
  t.equal(await served(), 200, 'another client is served')
})

t.test('a SETTINGS flood and a PING flood each get GOAWAY; others are served', async (t) => {
  for (const type of [SETTINGS, PING] as const) {
    const c = rawClient(t, proxy.port)
    c.socket.write(flood(type, 500))
    const goaway = await c.seen(GOAWAY)
    t.equal(goawayCode(goaway), constants.NGHTTP2_ENHANCE_YOUR_CALM, `${type === PING ? 'PING' : 'SETTINGS'} flood: GOAWAY ENHANCE_YOUR_CALM`)
    await c.closed
    t.equal(await served(), 200, 'another client is served')
  }
})

t.test('maxConcurrentStreams: a client keeping to it waits for room; one exceeding it gets GOAWAY', async (t) => {
  // A well-behaved client (Node's) opens the sixth stream only when one of its five ends.
  const session = connect(`http://127.0.0.1:${proxy.port}`)
  t.teardown(() => session.close())
  // Streams opened before the server's SETTINGS arrive may be refused (the limit is not known yet).
  await once(session, 'remoteSettings')
  const replies = Array.from({ length: 10 }, () =>
    new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': '/hold' })
      req.on('response', (h) => resolve(Number(h[':status'])))
      req.on('error', reject)
      req.resume()
    }),
  )
  while (held.length < 5) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(await served(), 200, 'another client is served meanwhile')
  t.equal(held.length, 5, 'five streams reach the provider, the others wait in the client')
  const release = (): void => {
    for (const s of held) if (!s.headersSent) s.respond({ ':status': 200 }, { endStream: true })
  }
  release()
  while (held.length < 10) await new Promise((resolve) => setTimeout(resolve, 20))
  release()
  t.same(await Promise.all(replies), Array(10).fill(200), 'all ten answered as room came')
  held.splice(0)
  // A raw client that opens ten at once after acknowledging the limit breaks the protocol: GOAWAY.
  const c = rawClient(t, proxy.port)
  await c.seen(SETTINGS)
  c.socket.write(Buffer.concat(Array.from({ length: 10 }, (_, i) => get(2 * i + 1, '/hold'))))
  const goaway = await c.seen(GOAWAY)
  t.not(goawayCode(goaway), constants.NGHTTP2_NO_ERROR, 'GOAWAY with an error code')
  t.ok(held.length <= 5, `at most five reached the provider (${held.length})`)
  t.equal(await served(), 200, 'another client is served')
  for (const s of held.splice(0)) s.close()
})

t.test('a client whose window never opens is cut off after idleTimeout; no body byte goes out, others are served', async (t) => {
  // SETTINGS_INITIAL_WINDOW_SIZE 0: vigil may send no DATA until a WINDOW_UPDATE that never comes.
  const c = rawClient(t, proxy.port, Buffer.from([0x00, 0x04, 0, 0, 0, 0]))
  c.socket.write(get(1, '/big'))
  const cut = await Promise.race([c.seen(RST_STREAM), c.seen(GOAWAY)])
  t.ok(cut.type === GOAWAY || cut.stream === 1, 'the stream is reset or the idle connection gets GOAWAY')
  t.notOk(c.frames.some((f) => f.type === DATA && f.payload.length > 0), 'no body byte was sent')
  t.equal(await served(), 200, 'another client is served')
})

t.test('a window that never opens on a connection kept busy (PINGs): the stream is reset after sendTimeout, and its upstream cancelled', async (t) => {
  // Node's own stream timer never fires here: every PING ACK the session sends counts as progress for every stream.
  const busy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'h2', http2: true, limits: { idleTimeout: '60s', http2: { maxPings: 1000, sendTimeout: '1s' } } }],
    upstreams: { h2: { protocol: 'h2c', servers: [{ address: `127.0.0.1:${(provider.address() as AddressInfo).port}` }] } },
  })
  const closedBefore = bigClosed.length
  const started = Date.now()
  const c = rawClient(t, busy.port, Buffer.from([0x00, 0x04, 0, 0, 0, 0]))
  c.socket.write(get(1, '/big'))
  const pings = setInterval(() => c.socket.write(frame(PING, 0, 0, Buffer.alloc(8))), 100)
  t.teardown(() => clearInterval(pings))
  const reset = await c.seen(RST_STREAM)
  const took = Date.now() - started
  clearInterval(pings)
  t.equal(reset.stream, 1, 'stream 1 is reset')
  t.equal(reset.payload.readUInt32BE(0), constants.NGHTTP2_CANCEL, 'with CANCEL')
  t.ok(took < 30_000, `long before the 60 s idleTimeout (${took} ms)`)
  t.notOk(c.frames.some((f) => f.type === GOAWAY), 'the connection itself is kept: only the stream was stuck')
  t.notOk(c.frames.some((f) => f.type === DATA && f.payload.length > 0), 'no body byte was sent')
  while (bigClosed.length === closedBefore) await new Promise((r) => setTimeout(r, 20))
  t.equal(bigClosed.at(-1), constants.NGHTTP2_CANCEL, 'the provider saw its stream cancelled')
  const session = connect(`http://127.0.0.1:${busy.port}`)
  t.teardown(() => session.close())
  const size = await new Promise<number>((resolve, reject) => {
    let n = 0
    const req = session.request({ ':path': '/big' })
    req.on('data', (d: Buffer) => (n += d.length))
    req.on('end', () => resolve(n))
    req.on('error', reject)
  })
  t.equal(size, 1 << 20, 'a client that reads gets the whole 1 MB through the same watch')
})
