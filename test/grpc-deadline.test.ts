// grpc-timeout as the call's hard deadline: real @grpc/grpc-js clients through vigil's h2c listener. The providers
// that must not answer in time are node:http2 servers speaking gRPC's framing (they see every header and the
// RST_STREAM code vigil sends, and keep no deadline of their own, so only vigil can end the call); the one that
// answers in time is a real grpc-js provider.
import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { constants, createServer, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { get, startProxy } from './helpers/index.js'
import { echoClient, spawnGrpcProvider } from './helpers/grpc.js'
import { echoService, type Msg } from '../bench/lib/grpc-provider.js'

const { service, Client } = echoService()
const frame = (m: Partial<Msg>): Buffer => {
  const body = (service['Stream'] as grpc.MethodDefinition<Msg, Msg>).responseSerialize(m as Msg)
  const prefix = Buffer.alloc(5)
  prefix.writeUInt32BE(body.length, 1)
  return Buffer.concat([prefix, body])
}

type Behaviour = 'hang' | 'partial' | 'unavailable' | 'ok'
interface Seen {
  provider: string
  timeout: string | undefined
  /** Resolves with the RST_STREAM code the stream closed with (0 when it ended normally). */
  closed: Promise<number>
}

/** An in-process gRPC provider on node:http2. `next()` decides what each new call gets. */
async function rawProvider(name: string, next: () => Behaviour, seen: Seen[]): Promise<string> {
  const server = createServer()
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const closed = new Promise<number>((resolve) => stream.once('close', () => resolve(stream.rstCode ?? 0)))
    seen.push({ provider: name, timeout: headers['grpc-timeout'] as string | undefined, closed })
    stream.on('error', () => {})
    stream.resume()
    const behaviour = next()
    if (behaviour === 'hang') return
    if (behaviour === 'partial') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' })
      stream.write(frame({ text: 'first', count: 0, from: name }))
      return
    }
    if (behaviour === 'unavailable') {
      setTimeout(() => stream.destroyed || stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': `${name} unavailable` }, { endStream: true }), 300)
      return
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
    stream.end(frame({ text: 'hello', count: 0, from: name }))
  })
  const sessions = new Set<Http2Session>()
  server.on('session', (s: Http2Session) => sessions.add(s))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sessions) s.destroy()
    return new Promise((resolve) => server.close(resolve))
  })
  return `127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** No stall watch: a provider that holds a call past the 200 ms floor would have it re-dispatched elsewhere. */
async function proxyTo(servers: string[], extra: Record<string, unknown> = {}) {
  const passive = { ...(extra['passive'] as object | undefined), stall: { enabled: false } }
  return startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'g', http2: true }],
    upstreams: { g: { protocol: 'h2c', servers: servers.map((address) => ({ address })), ...extra, passive } },
  })
}

type Raw = {
  say(m: Partial<Msg>, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: Msg) => void): grpc.ClientUnaryCall
  stream(m: Partial<Msg>, md: grpc.Metadata, o?: grpc.CallOptions): grpc.ClientReadableStream<Msg>
}

/**
 * A grpc-js client that sends `grpc-timeout` itself and keeps no deadline of its own: whatever ends its call
 * early is vigil. (With a deadline, grpc-js sends the same header but also ends the call at it by itself.)
 */
function deadlineOnlyInHeader(port: number): Raw {
  const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  t.teardown(() => c.close())
  return c as unknown as Raw
}

const timeoutMd = (value: string): grpc.Metadata => {
  const md = new grpc.Metadata()
  md.set('grpc-timeout', value)
  return md
}

function sayWith(c: Raw, md: grpc.Metadata): Promise<{ err: grpc.ServiceError | null; ms: number }> {
  const started = Date.now()
  return new Promise((resolve) => c.say({ text: 'x' }, md, {}, (err) => resolve({ err, ms: Date.now() - started })))
}

const ms = (value: string | undefined): number => {
  const m = /^(\d+)m$/.exec(value ?? '')
  return m === null ? NaN : Number(m[1])
}

interface Server {
  failures: number
  passive: string
  grpc: { ok: number; error: number }
  streams: number
}
async function servers(admin: string): Promise<Server[]> {
  return (JSON.parse((await get(`${admin}/status?format=json`)).body) as { servers: { server: Server[] } }).servers.server
}

t.test('a provider slower than the deadline: vigil answers DEADLINE_EXCEEDED and cancels the upstream stream', async (t) => {
  const seen: Seen[] = []
  const hung = await rawProvider('hung', () => 'hang', seen)
  const proxy = await proxyTo([hung], { retry: { tries: 1 } })
  const c = deadlineOnlyInHeader(proxy.port)
  const { err, ms: took } = await sayWith(c, timeoutMd('300m'))
  t.equal(err?.code, grpc.status.DEADLINE_EXCEEDED, 'DEADLINE_EXCEEDED')
  t.match(err?.details, /deadline exceeded.*grpc-timeout \(300 ms\)/, "vigil's grpc-message")
  t.same(err?.metadata.get('x-vigil-error'), ['deadline_exceeded'], 'answered by vigil')
  t.ok(took >= 250 && took < 5_000, `ended at the deadline, not by the provider (which never answers): ${took} ms`)
  t.equal(seen.length, 1)
  t.equal(await seen[0]?.closed, constants.NGHTTP2_CANCEL, 'the provider saw RST_STREAM(CANCEL)')
  t.equal(ms(seen[0]?.timeout) <= 300, true, `the provider was told the time left: ${seen[0]?.timeout}`)
  const [s] = await servers(proxy.admin)
  t.equal(s?.streams, 0, 'no stream left in flight')
  t.equal(s?.failures, 0, 'not counted against the provider: the deadline is the client\'s budget')
  t.equal(s?.grpc.error, 1, 'counted as a gRPC error class for the server')
})

t.test('a response already streaming gets DEADLINE_EXCEEDED as its trailers', async (t) => {
  const seen: Seen[] = []
  const partial = await rawProvider('partial', () => 'partial', seen)
  const proxy = await proxyTo([partial])
  const c = deadlineOnlyInHeader(proxy.port)
  const got: Msg[] = []
  const err = await new Promise<grpc.ServiceError>((resolve) => {
    const s = c.stream({ text: 'x', count: 5 }, timeoutMd('400m'))
    s.on('data', (m: Msg) => got.push(m))
    s.on('error', resolve)
    s.on('end', () => resolve(new Error('ended without an error') as grpc.ServiceError))
  })
  t.same(got.map((m) => m.text), ['first'], 'the message sent before the deadline arrived')
  t.equal(err.code, grpc.status.DEADLINE_EXCEEDED)
  t.same(err.metadata.get('x-vigil-error'), ['deadline_exceeded'], 'in the trailers, from vigil')
  t.equal(await seen[0]?.closed, constants.NGHTTP2_CANCEL, 'the provider saw RST_STREAM(CANCEL)')
})

t.test('a retry forwards the time left in grpc-timeout, and no try starts after the deadline', async (t) => {
  const seen: Seen[] = []
  let calls = 0
  const next = (): Behaviour => (calls++ === 0 ? 'unavailable' : 'ok')
  const a = await rawProvider('a', next, seen)
  const b = await rawProvider('b', next, seen)
  const proxy = await proxyTo([a, b], { retry: { on: ['error', 'timeout', 'grpc_UNAVAILABLE'], tries: 3 } })
  const c = deadlineOnlyInHeader(proxy.port)
  const { err } = await sayWith(c, timeoutMd('5S'))
  t.equal(err, null, 'the retry answered')
  t.equal(seen.length, 2)
  const [first, second] = seen.map((s) => ms(s.timeout))
  t.ok((first as number) <= 5_000 && (first as number) > 4_000, `first try: the client's deadline, in ms (${first})`)
  t.ok((second as number) <= (first as number) - 250, `the retry, 300 ms later, was given less (${second} < ${first})`)
  t.not(seen[0]?.provider, seen[1]?.provider, 'on the other provider')
})

t.test('a call well inside its deadline is untouched; expiries count only where failOn names grpc_DEADLINE_EXCEEDED', async (t) => {
  const p = await spawnGrpcProvider(t, 'fast')
  const seen: Seen[] = []
  const hung = await rawProvider('hung', () => 'hang', seen)
  const proxy = await proxyTo([p.address, hung], {
    balance: 'round_robin',
    retry: { tries: 1 },
    passive: { maxFails: 1, failTimeout: '30s', failOn: ['error', 'timeout', 'grpc_UNAVAILABLE', 'grpc_DEADLINE_EXCEEDED'], maxEjectPercent: 50 },
  })
  const client = echoClient(t, `127.0.0.1:${proxy.port}`)
  const raw = deadlineOnlyInHeader(proxy.port)
  const results: string[] = []
  for (let i = 0; i < 4 && results.filter((r) => r === 'deadline').length === 0; i++) {
    const { err } = await sayWith(raw, timeoutMd('300m'))
    results.push(err === null ? 'ok' : err.code === grpc.status.DEADLINE_EXCEEDED ? 'deadline' : `code ${err.code}`)
  }
  t.ok(results.includes('ok') && results.includes('deadline'), `one provider answers, the hung one misses its deadline: ${results.join(',')}`)
  const [fast, slow] = await servers(proxy.admin)
  t.equal(slow?.failures, 1, 'failOn lists grpc_DEADLINE_EXCEEDED: the expiry counts')
  t.equal(slow?.passive, 'ejected', 'and ejects (maxFails 1)')
  for (let i = 0; i < 5; i++) t.equal((await client.say({ text: `in time ${i}` }, 10_000)).from, 'fast', 'a 10 s deadline: answered in full')
  t.equal(fast?.failures, 0)
  t.equal(seen.length, 1, 'nothing more went to the ejected provider')
})

t.test('a call queued behind maxConns gets DEADLINE_EXCEEDED at its deadline, not at the queue timeout', async (t) => {
  const seen: Seen[] = []
  const hung = await rawProvider('busy', () => 'hang', seen)
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'g', http2: true }],
    upstreams: { g: { protocol: 'h2c', servers: [{ address: hung, maxConns: 1 }], queue: { size: 5, timeout: '60s' }, retry: { tries: 1 }, passive: { stall: { enabled: false } } } },
  })
  const c = deadlineOnlyInHeader(proxy.port)
  let holder: grpc.ClientUnaryCall | undefined
  const holding = new Promise((resolve) => (holder = c.say({ text: 'hold' }, timeoutMd('20S'), {}, resolve)))
  while (seen.length === 0) await new Promise((r) => setTimeout(r, 20))
  const { err, ms: took } = await sayWith(c, timeoutMd('300m'))
  t.equal(err?.code, grpc.status.DEADLINE_EXCEEDED)
  t.match(err?.details, /waited in the queue/)
  t.ok(took < 30_000, `well before the 60 s queue timeout: ${took} ms`)
  t.equal(seen.length, 1, 'the queued call never reached the provider')
  holder?.cancel()
  await holding
  t.equal(await seen[0]?.closed, constants.NGHTTP2_CANCEL, 'the holding call, cancelled by its client, was cancelled upstream too')
})
