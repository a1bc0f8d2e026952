// `workers: 2` with HTTP/2 and gRPC, and with a fleet: the real CLI forks a primary and two workers; real providers
// on loopback (node:http2 in-process, @grpc/grpc-js child processes), real clients. A client connection stays on the
// worker the cluster handed it to, so two clients on two workers are found by the per-worker request counts of the
// status page; an upstream HTTP/2 connection belongs to one worker, so a provider tells the workers apart by the
// remote port of the connection a stream came on. One cluster serves the HTTP/2 and gRPC subtests, in order; a
// second one, with a real etcd and two in-process vigils of its fleet, the fleet subtests. One gRPC provider is
// SIGSTOPped in the first: the stall watch with workers, on gRPC.
import t from 'tap'
import { join } from 'node:path'
import { connect, constants, createSecureServer, createServer as createH2Server, type ClientHttp2Session, type Http2SecureServer, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import * as grpc from '@grpc/grpc-js'
import { Agent } from 'undici'
import type { Config } from '../src/config/schema.js'
import { Etcd3 } from 'etcd3'
import { client, get, httpServer, startProxy, type ProxyHandle } from './helpers/index.js'
import { startEtcd } from './helpers/registries.js'
import { checkersOf } from '../src/fleet/share-checks.js'
import { tempDir, until } from './helpers/config-file.js'
import { onTwoWorkers, startCluster, type Cluster } from './helpers/workers.js'
import { makeCerts } from './helpers/tls.js'
import { h2Request, type H2Reply } from './helpers/http2.js'
import { echoClient, spawnGrpcProvider, type EchoClient, type GrpcProvider } from './helpers/grpc.js'
import { echoService, type Msg } from '../bench/lib/grpc-provider.js'

interface WorkerRow {
  worker: number
  pid: number
  version: number
  serving: boolean
  requests: number
  silentMs: number
}
interface ServerRow {
  upstream: string
  name: string
  status: string
  passive: string
  ejectionReason: string | null
  checks: number
  inconclusive: number
  effectiveWeight: number
  eligible: boolean
  grpc: { ok: number; error: number }
  fleetDecision?: string
  fleetObservers?: number
  goaways: number
  failures: number
}
interface Status {
  servers: { server: ServerRow[] }
  workers: { workers: WorkerRow[]; version: number }
  fleet?: { count: number; consumers: string[] }
}

const dir = tempDir(t)
const certs = makeCerts(dir)

const lines = (c: Cluster<Status>, event: string, server: string): Record<string, unknown>[] => c.cli.lines.filter((l) => l['event'] === event && l['server'] === server)

// --- providers --------------------------------------------------------------------------------------------------

/** What an HTTP/2 provider saw: per stream, the remote port of its connection (one per worker's pool). */
interface H2Seen {
  address: string
  ports: number[]
}

function listen(server: Http2Server | Http2SecureServer, seen: H2Seen): Promise<H2Seen> {
  const sessions = new Set<Http2Session>()
  server.on('session', (s: Http2Session) => sessions.add(s))
  t.teardown(() => {
    for (const s of sessions) s.destroy()
    return new Promise((resolve) => server.close(() => resolve(undefined)))
  })
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      seen.address = `127.0.0.1:${(server.address() as AddressInfo).port}`
      resolve(seen)
    }),
  )
}

/** An h2c provider answering `status` with its name, the request's path and body, and a trailer. */
function h2Provider(name: string, status: number): Promise<H2Seen> {
  const seen: H2Seen = { address: '', ports: [] }
  const server = createH2Server()
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    seen.ports.push(stream.session?.socket.remotePort ?? 0)
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => {
      stream.respond({ ':status': status, 'x-from': name }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': String(Buffer.concat(chunks).length) }))
      stream.end(JSON.stringify({ from: name, path: headers[':path'], body: Buffer.concat(chunks).toString() }))
    })
  })
  return listen(server, seen)
}

/** An HTTP/2-only TLS provider (ALPN h2, no HTTP/1.1). */
function tlsProvider(): Promise<H2Seen> {
  const seen: H2Seen = { address: '', ports: [] }
  const server = createSecureServer({ cert: certs.cert, key: certs.key })
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    seen.ports.push(stream.session?.socket.remotePort ?? 0)
    stream.respond({ ':status': 200 })
    stream.end(`tls ${String(headers[':path'])}`)
  })
  return listen(server, seen)
}

/** A gRPC call the hanging provider saw: its connection's port, its grpc-timeout, and the RST_STREAM code it closed with. */
interface HeldCall {
  port: number
  timeout: string | undefined
  closed: Promise<number>
}

/**
 * An h2c gRPC provider that answers the standard health check SERVING (counting the checks) and holds every other
 * call without ever answering: only vigil's deadline can end one.
 */
async function hangingProvider(): Promise<{ address: string; checks: () => number; calls: HeldCall[] }> {
  const calls: HeldCall[] = []
  let checks = 0
  const seen: H2Seen = { address: '', ports: [] }
  const server = createH2Server()
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => undefined)
    if (headers[':path'] === '/grpc.health.v1.Health/Check') {
      checks++
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
      stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]))
      return
    }
    const closed = new Promise<number>((resolve) => stream.once('close', () => resolve(stream.rstCode ?? 0)))
    calls.push({ port: stream.session?.socket.remotePort ?? 0, timeout: headers['grpc-timeout'] as string | undefined, closed })
    stream.resume()
  })
  await listen(server, seen)
  return { address: seen.address, checks: () => checks, calls }
}

const [p1, p2, h2ok, h2bad, tlsp, hang] = await Promise.all([h2Provider('p1', 200), h2Provider('p2', 200), h2Provider('ok', 200), h2Provider('bad', 503), tlsProvider(), hangingProvider()])
const [ga, gb, gc, gd, ge] = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => spawnGrpcProvider(t, n)))
// GOAWAY on every connection 200 ms old (grpc.max_connection_age_ms).
const aging = await Promise.all(['g1', 'g2'].map((n) => spawnGrpcProvider(t, n, 200)))
// One of them is SIGSTOPped: the stall watch, not a timeout, must find it.
const [fa, fb] = await Promise.all(['fa', 'fb'].map((n) => spawnGrpcProvider(t, n)))

const main = await startCluster<Status>(t, join(dir, 'protocols.json'), {
  workers: 2,
  listeners: [
    { address: '127.0.0.1:0', http2: true, routes: [{ pathPrefix: '/bad', upstream: 'h2bad' }, { pathPrefix: '/', upstream: 'h2' }] },
    { address: '127.0.0.1:0', http2: true, tls: { cert: certs.certFile, key: certs.keyFile }, upstream: 'tls' },
    { address: '127.0.0.1:0', http2: true, upstream: 'g' },
    { address: '127.0.0.1:0', http2: true, upstream: 'gc' },
    { address: '127.0.0.1:0', http2: true, upstream: 'deadline' },
    { address: '127.0.0.1:0', http2: true, upstream: 'aging' },
    { address: '127.0.0.1:0', http2: true, upstream: 'frozen' },
  ],
  admin: { address: '127.0.0.1:0' },
  reload: { watch: false },
  shutdown: { grace: '5s' },
  upstreams: {
    h2: { protocol: 'h2c', servers: [{ address: p1.address }, { address: p2.address }] },
    // nginx mode, two failures eject: one from each worker. The bad one first: each worker's round robin starts there.
    h2bad: {
      protocol: 'h2c',
      balance: 'round_robin',
      servers: [{ address: h2bad.address }, { address: h2ok.address }],
      retry: { tries: 1 },
      passive: { maxFails: 2, failTimeout: '1h', failOn: ['error', 'timeout', 'http_503'], recoveryProbe: false },
    },
    tls: { protocol: 'h2', tls: { ca: certs.caFile, servername: 'provider.test' }, servers: [{ address: tlsp.address }] },
    // No checks here: a passing check could lift an ejection for UNAVAILABLE.
    g: {
      protocol: 'h2c',
      balance: 'round_robin',
      servers: [ga, gb, gc].map((p) => ({ address: p?.address as string })),
      retry: { tries: 1 },
      passive: { maxFails: 2, failTimeout: '1h', failOn: ['error', 'timeout', 'grpc_UNAVAILABLE'], recoveryProbe: false },
    },
    gc: { protocol: 'h2c', balance: 'round_robin', servers: [gd, ge].map((p) => ({ address: p?.address as string })), active: { type: 'grpc', interval: '100ms', timeout: '5s', rise: 1, fall: 1 } },
    aging: { protocol: 'h2c', servers: aging.map((p) => ({ address: p.address })), passive: { maxFails: 1, failTimeout: '1h', recoveryProbe: false } },
    // Default passive health: stall detection with re-dispatch; a response timeout far beyond the test.
    frozen: { protocol: 'h2c', balance: 'round_robin', servers: [fa, fb].map((p) => ({ address: p?.address as string })), timeouts: { response: '60s' } },
    deadline: { protocol: 'h2c', servers: [{ address: hang.address }], retry: { tries: 1 }, passive: { stall: { enabled: false } }, active: { type: 'grpc', interval: '100ms', timeout: '5s', rise: 1, fall: 1 } },
  },
})
const [h2cAt, tlsAt, grpcAt, checkedAt, deadlineAt, agingAt, frozenAt] = main.listeners as [string, string, string, string, string, string, string]

/** A GET of `path`, or a POST of `body`. */
const h2Do = (session: ClientHttp2Session, path: string, body?: string): Promise<H2Reply> => h2Request(session, { ':method': body === undefined ? 'GET' : 'POST', ':path': path }, body)

const sessions: ClientHttp2Session[] = []
const session = (authority: string, tls = false): ClientHttp2Session => {
  const s = tls ? connect(`https://${authority}`, { ca: certs.ca, servername: 'localhost' }) : connect(`http://${authority}`)
  s.on('error', () => undefined)
  sessions.push(s)
  return s
}
t.teardown(() => {
  for (const s of sessions) s.destroy()
})

t.test('an h2c listener on two workers: streams of both reach the h2c providers whole, each worker on its own connection', async (t) => {
  const [a, b] = await onTwoWorkers(main, () => session(h2cAt), (s) => h2Do(s, '/first'))
  const body = 'x'.repeat(100_000)
  for (const s of [a, b]) {
    const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => h2Do(s, `/r${i}`, body)))
    t.ok(replies.every((r) => r.status === 200), 'every stream answered')
    t.ok(replies.every((r) => (JSON.parse(r.body) as { body: string }).body.length === body.length), 'a 100 kB request body arrives whole')
    t.ok(replies.every((r) => r.trailers?.['x-checksum'] === String(body.length)), 'trailers reach the client')
    t.same(new Set(replies.map((r) => r.headers['x-from'])), new Set(['p1', 'p2']), 'spread over both providers')
  }
  for (const p of [p1, p2]) t.equal(new Set(p.ports).size, 2, `${p.address}: two upstream connections, one per worker (${p.ports.length} streams)`)
})

t.test('a TLS listener on two workers: h2 by ALPN and HTTP/1.1 on the same port, to an h2-only TLS provider', async (t) => {
  const [a, b] = await onTwoWorkers(main, () => session(tlsAt, true), (s) => h2Do(s, '/first'))
  for (const s of [a, b]) {
    t.equal(s.alpnProtocol, 'h2')
    t.same(await h2Do(s, '/over-h2').then((r) => [r.status, r.body]), [200, 'tls /over-h2'])
  }
  const agent = new Agent({ connect: { ca: certs.ca, servername: 'localhost' } })
  t.teardown(() => agent.close())
  const r = await get(`https://${tlsAt}/over-h1`, { dispatcher: agent })
  t.same([r.status, r.body], [200, 'tls /over-h1'], 'HTTP/1.1 in front, HTTP/2 behind')
  t.equal(new Set(tlsp.ports).size, 2, 'the provider saw one connection per worker')
})

t.test('an h2c upstream: failures on two workers add up to one ejection, decided by the primary for both', async (t) => {
  const [a, b] = await onTwoWorkers(main, () => session(h2cAt), (s) => h2Do(s, '/first'))
  t.equal((await h2Do(a, '/bad')).status, 503)
  t.equal((await h2Do(b, '/bad')).status, 503)
  await until(() => lines(main, 'ejected', h2bad.address).length > 0, 'the bad h2 provider to be ejected')
  const line = lines(main, 'ejected', h2bad.address)[0] as { pid: number; evidence: { failures: number } }
  t.equal(line.pid, main.primary, 'the primary decided it')
  t.equal(line.evidence.failures, 2, 'on two failures')
  t.equal(new Set(h2bad.ports).size, 2, 'one from each worker (two upstream connections)')
  await until(main.converged, 'every worker to apply the state')
  const before = h2bad.ports.length
  for (let i = 0; i < 4; i++) for (const s of [a, b]) t.equal((await h2Do(s, '/bad')).headers['x-from'], 'ok', 'no worker sends to the ejected one')
  t.equal(h2bad.ports.length, before)
  t.equal(lines(main, 'ejected', h2bad.address).length, 1, 'one ejection, logged once')
})

const localPool = { 'grpc.use_local_subchannel_pool': 1 }
const clientAt = (address: string): EchoClient => echoClient(t, address, localPool)

t.test('gRPC on two workers: unary calls balanced over three providers by each worker; one status page counts them', async (t) => {
  // The first calls to this group: every OK call of this test is on the status page in the end.
  let calls = 0
  const [a, b] = await onTwoWorkers(main, () => clientAt(grpcAt), (c) => c.say({ text: 'first' }).then(() => calls++))
  for (const c of [a, b]) {
    const from = new Map<string, number>()
    for (let i = 0; i < 9; i++) {
      const r = await c.say({ text: `hello ${i}`, count: i })
      t.equal(r.text, `hello ${i}`)
      from.set(r.from, (from.get(r.from) ?? 0) + 1)
    }
    t.same([...from.values()], [3, 3, 3], `each worker: round robin over the three (${[...from].join(' ')})`)
  }
  const got = await a.stream({ text: 'tick', count: 20 })
  t.same(got.map((m) => m.count), Array.from({ length: 20 }, (_, i) => i), 'a server stream, in order')
  // 18 unary calls and one stream, all OK.
  calls += 19
  await until(async () => (await main.status()).servers.server.filter((s) => s.upstream === 'g').reduce((n, s) => n + s.grpc.ok, 0) >= calls, 'the gRPC classes to be reported')
  const rows = (await main.status()).servers.server.filter((s) => s.upstream === 'g')
  t.same(
    rows.reduce((n, s) => ({ ok: n.ok + s.grpc.ok, error: n.error + s.grpc.error }), { ok: 0, error: 0 }),
    { ok: calls, error: 0 },
    `the status page counts every call of both workers (${JSON.stringify(rows.map((r) => r.grpc))})`,
  )
  t.match((await get(`${main.admin}/metrics`)).body, /vigil_grpc_responses_total\{upstream="g",server="[^"]+",code="OK"\} \d+/)
})

t.test('gRPC UNAVAILABLE on two workers: one ejection at the primary, seen by both', async (t) => {
  const [a, b] = await onTwoWorkers(main, () => clientAt(grpcAt), (c) => c.say({ text: 'first' }))
  await gc?.control('fail=14')
  const unavailable = async (c: EchoClient): Promise<void> => {
    for (;;) {
      const err = (await c.say({ text: 'x' }).then(() => undefined, (e: unknown) => e)) as grpc.ServiceError | undefined
      if (err !== undefined) return void t.equal(err.code, grpc.status.UNAVAILABLE, 'UNAVAILABLE reaches the client')
    }
  }
  // One UNAVAILABLE through each worker: maxFails 2 across both.
  await unavailable(a)
  t.same(lines(main, 'ejected', gc?.address as string), [], 'one failure does not eject')
  await unavailable(b)
  await until(() => lines(main, 'ejected', gc?.address as string).length > 0, 'the failing provider to be ejected')
  const line = lines(main, 'ejected', gc?.address as string)[0] as { pid: number; evidence: { failures: number; failure: string } }
  t.equal(line.pid, main.primary, 'the primary decided it')
  t.equal(line.evidence.failures, 2, 'on one failure from each worker')
  await until(main.converged, 'every worker to apply the state')
  const served = (await gc?.control(''))?.served
  for (let i = 0; i < 6; i++) for (const c of [a, b]) t.not((await c.say({ text: 'y' })).from, 'c', 'answered, not by the ejected one')
  t.equal((await gc?.control(''))?.served, served, 'no call reached it')
  t.equal((await main.status()).servers.server.find((s) => s.name === gc?.address)?.passive, 'ejected')
  await gc?.control('fail=0')
})

t.test('gRPC health checks run at the primary: a NOT_SERVING provider is down for both workers', async (t) => {
  const [a, b] = await onTwoWorkers(main, () => clientAt(checkedAt), (c) => c.say({ text: 'first' }))
  const ups = lines(main, 'up', ge?.address as string).length
  await ge?.control('health=NOT_SERVING')
  await until(() => lines(main, 'down', ge?.address as string).length > 0, 'the NOT_SERVING provider to be down')
  t.ok(lines(main, 'down', ge?.address as string).every((l) => l['pid'] === main.primary), 'the primary checks')
  await until(main.converged, 'every worker to apply the state')
  for (let i = 0; i < 4; i++) for (const c of [a, b]) t.equal((await c.say({ text: 'z' })).from, 'd', 'both workers send to the serving one only')
  await ge?.control('health=SERVING')
  await until(() => lines(main, 'up', ge?.address as string).length > ups, 'the provider to be up again')
  await until(main.converged, 'every worker to apply the state')
  const from = new Set<string>()
  for (let i = 0; i < 4; i++) for (const c of [a, b]) from.add((await c.say({ text: 'z' })).from)
  t.same([...from].sort(), ['d', 'e'], 'back in rotation on both')
})

const { Client } = echoService()
type Raw = { say(m: Partial<Msg>, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: Msg) => void): grpc.ClientUnaryCall }
/** A client that sends grpc-timeout itself and keeps no deadline of its own: whatever ends its call early is vigil. */
const deadlineOnlyInHeader = (): Raw => {
  const c = new Client(deadlineAt, grpc.credentials.createInsecure(), localPool)
  t.teardown(() => c.close())
  return c as unknown as Raw
}

t.test('grpc-timeout on two workers: each answers DEADLINE_EXCEEDED itself and cancels its upstream stream', async (t) => {
  const errors: (grpc.ServiceError | null)[] = []
  const call = (c: Raw): Promise<void> =>
    new Promise((resolve) => {
      const md = new grpc.Metadata()
      md.set('grpc-timeout', '300m')
      c.say({ text: 'x' }, md, {}, (err) => resolve(void errors.push(err)))
    })
  const call2s = (c: Raw): Promise<grpc.ServiceError | null> =>
    new Promise((resolve) => {
      const md = new grpc.Metadata()
      md.set('grpc-timeout', '2S')
      c.say({ text: 'x' }, md, {}, resolve)
    })
  const clients = await onTwoWorkers(main, deadlineOnlyInHeader, call)
  // Held on both workers at once: the status page counts the streams of both.
  const held = clients.map(call2s)
  const streams = async (): Promise<number> => ((await main.status()).servers.server.find((s) => s.name === hang.address) as unknown as { streams: number }).streams
  await until(async () => (await streams()) === 2, 'two streams open on the status page')
  errors.push(...(await Promise.all(held)))
  await until(async () => (await streams()) === 0, 'no stream open once they ended')
  t.ok(errors.length >= 4)
  t.ok(errors.every((e) => e?.code === grpc.status.DEADLINE_EXCEEDED), 'DEADLINE_EXCEEDED')
  t.ok(errors.every((e) => e?.metadata.get('x-vigil-error')[0] === 'deadline_exceeded'), 'answered by vigil')
  t.equal(hang.calls.length, errors.length, 'each call reached the provider once')
  t.same(await Promise.all(hang.calls.map((c) => c.closed)), hang.calls.map(() => constants.NGHTTP2_CANCEL), 'and was cancelled there (RST_STREAM CANCEL)')
  t.equal(new Set(hang.calls.map((c) => c.port)).size, 2, 'from both workers')
  t.ok(hang.calls.every((c) => /^\d+m$/.test(c.timeout ?? '') && Number.parseInt(c.timeout ?? '', 10) <= 2_000), 'each told the time left')
})

t.test('a frozen gRPC provider on two workers: the calls waiting on it are raced on the other one while it is stopped', async (t) => {
  const [a, b] = await onTwoWorkers(main, () => clientAt(frozenAt), (c) => c.say({ text: 'first' }))
  // Calls through both workers first: the proxy's p99 (the stall yardstick) is known, and far below the floor.
  for (let i = 0; i < 10; i++) for (const c of [a, b]) await c.say({ text: `warm ${i}` })
  const frozen = fa as GrpcProvider
  frozen.signal('SIGSTOP')
  t.teardown(() => frozen.signal('SIGCONT'))
  // Round robin in each worker: about half of these are sent to the frozen one first.
  const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => ((i % 2 === 0 ? a : b) as EchoClient).say({ text: `while frozen ${i}` })))
  t.same(
    replies.map((r) => r.from),
    replies.map(() => 'fb'),
    'every call is answered by the other provider while the first is still stopped',
  )
  const suspected = lines(main, 'suspect', frozen.address)
  t.ok(suspected.length >= 1, 'the frozen provider was suspected of a stall')
  t.equal(suspected[0]?.['pid'], main.primary, 'the primary took the suspicion for the proxy (the cap is its)')
  t.ok(suspected.every((l) => l['pid'] === main.primary), 'only the primary logs it')
  frozen.signal('SIGCONT')
})

t.test('gRPC checks run once per server, at the primary, not once per worker', async (t) => {
  const row = async (): Promise<ServerRow> => (await main.status()).servers.server.find((s) => s.name === hang.address) as ServerRow
  await until(async () => (await row()).checks >= 10, 'ten checks of the provider')
  const before = hang.checks()
  const r = await row()
  const after = hang.checks()
  const concluded = r.checks + r.inconclusive
  // Every check the provider answered is one the primary counts (one may be on its way): with a checker per worker, three times as many.
  t.ok(after >= r.checks, `the provider saw every check the primary counts (${after} >= ${r.checks})`)
  t.ok(before <= concluded + 1, `and no more (${before} <= ${concluded} + one in flight)`)
  t.equal(r.status, 'up')
})

t.test('providers sending GOAWAY on two workers: drained in each, not ejected, 0 failed calls; one status page counts them', async (t) => {
  const clients = await onTwoWorkers(main, () => clientAt(agingAt), (c) => c.say({ text: 'first' }))
  const failed: string[] = []
  let ok = 0
  const rows = async (): Promise<ServerRow[]> => (await main.status()).servers.server.filter((s) => s.upstream === 'aging')
  await until(async () => {
    await Promise.all(clients.map((c) => c.say({ text: 'x' }).then(() => ok++, (e: grpc.ServiceError) => failed.push(`${e.code} ${e.details}`))))
    return (await rows()).every((r) => r.goaways >= 2)
  }, 'two GOAWAYs from each provider')
  t.same(failed, [], `no call failed (${ok} answered)`)
  t.same((await rows()).map((r) => [r.passive, r.failures]), [['ok', 0], ['ok', 0]], 'no provider ejected, no failure counted')
  t.same(aging.flatMap((p) => lines(main, 'ejected', p.address)), [], 'no ejection logged')
})

t.test('SIGTERM stops the cluster: every process exits 0', async (t) => {
  for (const s of sessions) s.close()
  process.kill(main.primary, 'SIGTERM')
  t.equal(await main.cli.exited, 0)
})

// --- a fleet ----------------------------------------------------------------------------------------------------

const etcd = await startEtcd(t)
const kv = new Etcd3({ hosts: etcd.endpoint })
t.teardown(() => kv.close())
const fleetPath = '/vigil/workers-fleet'
const fleet = (id: string): NonNullable<Config['fleet']> => ({
  registry: { etcd: { endpoints: [etcd.endpoint], resyncInterval: '1s', connectTimeout: '2s' } },
  path: fleetPath,
  id,
  ttl: '2s',
  quorum: 2,
  window: '30s',
  writeJitter: '20ms',
  writeRate: 50,
  // Each checked server is probed by two of the three consumers; the third takes their word.
  shareChecks: { k: 2 },
})

/** Every request a provider answered with 200, and every request it got, by name; one that is `marked` answers 503 to requests with `x-fail`. */
const answered = new Map<string, number>()
const hits = new Map<string, number>()
const provider = async (name: string, marked: boolean): Promise<string> =>
  (
    await httpServer(t, (req, res) => {
      hits.set(name, (hits.get(name) ?? 0) + 1)
      if (marked && req.headers['x-fail'] !== undefined) return void res.writeHead(503).end(name)
      answered.set(name, (answered.get(name) ?? 0) + 1)
      res.writeHead(200).end(name)
    })
  ).address
const [good, bad, good2, flaky, sus, good3] = (await Promise.all(
  [['good', false], ['bad', true], ['good2', false], ['flaky', true], ['sus', true], ['good3', false]].map(([name, marked]) => provider(name as string, marked as boolean)),
)) as [string, string, string, string, string, string]
const passiveOnly = (servers: string[]): Config['upstreams'][string] => ({
  balance: 'round_robin',
  servers: servers.map((address) => ({ address })),
  passive: { maxFails: 1, failTimeout: '1h', failOn: ['error', 'timeout', 'http_503'], recoveryProbe: false },
  retry: { tries: 1 },
})
/** A checked provider: /healthz answers 503 while `failing`; other requests get its name. */
interface Checked {
  name: string
  address: string
  failing: boolean
}
const checkedProvider = async (): Promise<Checked> => {
  const c: Checked = { name: '', address: '', failing: false }
  c.address = (
    await httpServer(t, (req, res) => {
      if (req.url === '/healthz') return void res.writeHead(c.failing ? 503 : 200).end()
      hits.set(c.name, (hits.get(c.name) ?? 0) + 1)
      res.writeHead(200).end(c.name)
    })
  ).address
  return c
}
// Which consumers check a server follows from its address (rendezvous hashing over the ids a, b, w): providers
// until one is checked by the cluster ("own") and one by a and b alone ("shared").
const checkedBy = (c: Checked): string[] => checkersOf(c.address, ['a', 'b', 'w'], 2)
let own: Checked | undefined
let shared: Checked | undefined
while (own === undefined || shared === undefined) {
  const c = await checkedProvider()
  if (own === undefined && checkedBy(c).includes('w')) own = Object.assign(c, { name: 'own' })
  else if (shared === undefined && !checkedBy(c).includes('w')) shared = Object.assign(c, { name: 'shared' })
}
const [ownAt, sharedAt] = [own.address, shared.address]
const fleetUpstreams = {
  one: passiveOnly([good, bad]),
  two: passiveOnly([flaky, good2]),
  three: passiveOnly([sus, good3]),
  four: { ...passiveOnly([ownAt, sharedAt]), passive: { maxFails: 0 }, active: { type: 'http' as const, interval: '200ms', fall: 1, rise: 1, http: { path: '/healthz' } } },
}
const fleetListeners = [{ address: '127.0.0.1:0', routes: ['one', 'two', 'three', 'four'].map((u) => ({ pathPrefix: `/${u}`, upstream: u })) }]
// At the cluster, sus takes many failures to eject: its own failures make it suspect sus when the others eject it.
const three = passiveOnly([sus, good3])
const clusterUpstreams = { ...fleetUpstreams, three: { ...three, passive: { ...three.passive, maxFails: 100 } } }

// Two vigils of the fleet in this process, and the cluster as the third.
const [va, vb] = (await Promise.all(['a', 'b'].map((id) => startProxy(t, { listeners: fleetListeners, upstreams: fleetUpstreams, fleet: fleet(id) })))) as [ProxyHandle, ProxyHandle]
const w = await startCluster<Status>(t, join(dir, 'fleet.json'), { workers: 2, listeners: fleetListeners, admin: { address: '127.0.0.1:0' }, reload: { watch: false }, upstreams: clusterUpstreams, fleet: { ...fleet('w'), localWindow: '10m' } })
const wUrl = `http://${w.listeners[0] as string}`
const passiveOf = (p: ProxyHandle, upstream: string, address: string): string | undefined => p.vigil.upstreams.get(upstream)?.find(address)?.passive?.state
/** Requests through `p` with x-fail until it ejects `address` on its own evidence. */
const failUntilEjected = async (p: ProxyHandle, path: string, upstream: string, address: string): Promise<void> => {
  const agent = client(t)
  await until(async () => {
    await get(`${p.url}${path}`, { dispatcher: agent, headers: { 'x-fail': '1' } })
    return passiveOf(p, upstream, address) === 'ejected'
  }, `${address} to be ejected`)
}
const row = async (address: string): Promise<ServerRow> => (await w.status()).servers.server.find((s) => s.name === address) as ServerRow
let agents: [Agent, Agent] | undefined

t.test("the fleet's registration is the primary's: the cluster is one consumer", async (t) => {
  await until(async () => [va, vb].every((p) => p.vigil.fleet?.consumers.view.count === 3) && (await w.status()).fleet?.count === 3, 'every vigil to see three consumers')
  t.same((await kv.getAll().prefix(`${fleetPath}/consumers/`).keys()).map((k) => k.split('/').pop()).sort(), ['a', 'b', 'w'], 'registered once, by the primary')
  t.same((await w.status()).fleet?.consumers, ['a', 'b', 'w'])
  // Requests through both workers, to the group the next test leaves alone.
  agents = await onTwoWorkers(w, () => new Agent({ connections: 1, keepAliveTimeout: 60_000 }), (a) => get(`${wUrl}/two`, { dispatcher: a }))
})
t.teardown(() => Promise.all(agents?.map((a) => a.close()) ?? []))

t.test('a quorum of other vigils ejects a server at the cluster, which has no traffic of its own to it: both workers leave it', async (t) => {
  await failUntilEjected(va, '/one', 'one', bad)
  await failUntilEjected(vb, '/one', 'one', bad)
  await until(async () => (await row(bad)).passive === 'ejected', 'the cluster to eject it on the fleet word')
  t.equal((await row(bad)).ejectionReason, 'fleet_quorum')
  t.ok(lines(w, 'ejected', bad).every((l) => l['pid'] === w.primary), 'the primary decided it')
  await until(w.converged, 'every worker to apply the state')
  const before = answered.get('bad') ?? 0
  for (let i = 0; i < 4; i++) for (const a of agents ?? []) t.equal((await get(`${wUrl}/one`, { dispatcher: a })).body, 'good', 'no worker sends to it')
  t.equal(answered.get('bad') ?? 0, before)
})

t.test("local success wins with workers: the workers' own successful requests make the cluster ignore the quorum", async (t) => {
  // Both workers keep sending (round robin: half of it to flaky), and every request succeeds.
  let stop = false
  const statuses: number[] = []
  const load = Promise.all(
    (agents ?? []).map(async (a) => {
      while (!stop) statuses.push((await get(`${wUrl}/two`, { dispatcher: a })).status)
    }),
  )
  await failUntilEjected(va, '/two', 'two', flaky)
  await failUntilEjected(vb, '/two', 'two', flaky)
  // The workers report their successes every 500 ms: a quorum that forms between two reports may make the server
  // suspect until the next one says it answers.
  await until(async () => (await row(flaky)).fleetDecision === 'ignored', 'the cluster to ignore the quorum')
  const served = answered.get('flaky') ?? 0
  await until(() => (answered.get('flaky') ?? 0) > served + 4, 'flaky to serve the cluster again')
  stop = true
  await load
  t.equal((await row(flaky)).passive, 'ok', 'still in rotation')
  t.same(lines(w, 'ejected', flaky), [], 'never ejected')
  t.ok(statuses.every((s) => s === 200), `every request through the cluster succeeded (${statuses.length})`)
  const decisions = w.cli.lines.filter((l) => l['source'] === 'fleet' && l['server'] === flaky).map((l) => l['event'])
  t.equal(decisions.at(-1), 'ignored', `the fleet decisions: ${decisions.join(', ')}`)
})

t.test("suspect with workers: the cluster's own requests failed, so the fleet lowers the server's weight, in both workers", async (t) => {
  // One failing request through each worker (each one's round robin starts at sus).
  for (const a of agents ?? []) t.equal((await get(`${wUrl}/three`, { dispatcher: a, headers: { 'x-fail': '1' } })).body, 'sus')
  await failUntilEjected(va, '/three', 'three', sus)
  await failUntilEjected(vb, '/three', 'three', sus)
  await until(async () => (await row(sus)).fleetDecision === 'suspect', 'the cluster to suspect it')
  t.equal((await row(sus)).effectiveWeight, 0.1, 'its weight lowered to suspectWeight (10%)')
  t.equal((await row(sus)).passive, 'ok', 'not ejected: its own detector decides')
  await until(w.converged, 'every worker to apply the state')
  // Its requests keep failing there (the suspicion stays); the balancers of both workers send it a tenth of their share.
  const before = hits.get('sus') ?? 0
  for (let i = 0; i < 22; i++) for (const a of agents ?? []) await get(`${wUrl}/three`, { dispatcher: a, headers: { 'x-fail': '1' } })
  const sent = (hits.get('sus') ?? 0) - before
  t.ok(sent <= 8, `both workers send it about one request in eleven (${sent} of 44; at full weight, 22)`)
  t.equal((await row(sus)).fleetDecision, 'suspect', 'still suspect')
})

t.test('shared checks with workers: the primary probes only the servers it is a checker of, takes the others from the fleet, for both workers', async (t) => {
  const fleetRow = async (address: string): Promise<{ checkers: string[]; probedHere: boolean }> => {
    const f = (JSON.parse((await get(`${w.admin}/status?format=json`)).body) as { fleet: { upstreams: Record<string, { server: string; checkers: string[]; probedHere: boolean }[]> } }).fleet
    return f.upstreams['four']?.find((r) => r.server === address) as { checkers: string[]; probedHere: boolean }
  }
  t.same((await fleetRow(ownAt)).probedHere, true, 'the cluster is a checker of one')
  t.same([(await fleetRow(sharedAt)).probedHere, (await fleetRow(sharedAt)).checkers.sort()], [false, ['a', 'b']], 'a and b check the other')
  const checks = async (address: string): Promise<number> => (await row(address)).checks
  await until(async () => (await checks(ownAt)) >= 3, 'the cluster to check its own server')
  const [own0, shared0] = [await checks(ownAt), await checks(sharedAt)]
  await until(async () => (await checks(ownAt)) >= own0 + 3, 'three more checks of its own server')
  t.equal(await checks(sharedAt), shared0, 'and none of the other')
  ;(shared as Checked).failing = true
  // On both checkers' word, or by a check of its own if one came due while only one of them had said so (verifying).
  await until(async () => (await row(sharedAt)).status === 'down', 'the cluster to take it down')
  t.ok(lines(w, 'down', sharedAt).every((l) => l['pid'] === w.primary), 'the primary decided it')
  await until(w.converged, 'every worker to apply the state')
  const before = hits.get('shared') ?? 0
  for (let i = 0; i < 4; i++) for (const a of agents ?? []) t.equal((await get(`${wUrl}/four`, { dispatcher: a })).body, 'own', 'no worker sends to it')
  t.equal(hits.get('shared') ?? 0, before)
  ;(shared as Checked).failing = false
  // Up once no checker reports it down (a check of its own while only one did may take it up, then their word
  // down again, as in one process); the quorum of their failing reports, which ejected it here, goes with them.
  await until(async () => {
    const r = await row(sharedAt)
    return r.fleetObservers === 0 && r.status === 'up' && r.eligible
  }, 'the cluster to take it back on their word')
  await until(w.converged, 'every worker to apply the state')
  const bodies = new Set<string>()
  for (let i = 0; i < 4; i++) for (const a of agents ?? []) bodies.add((await get(`${wUrl}/four`, { dispatcher: a })).body)
  t.same([...bodies].sort(), ['own', 'shared'], 'in rotation again on both workers')
})
