// Active checks for HTTP/2 and gRPC providers, end to end: real @grpc/grpc-js servers with the standard health
// service (grpc-health-check) in child processes, node:http2 servers that speak nothing but HTTP/2, the real
// proxy. Servers are shared within the file; every wait is for a state, never for a time.
import t from 'tap'
import { createSecureServer, createServer as createH2Server, type Http2Server, type Http2SecureServer, type ServerHttp2Session } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { startProxy, type ProxyHandle } from './helpers/index.js'
import { recordEvents, statusOf, waitFor } from './helpers/health.js'
import { echoClient, spawnGrpcProvider, type GrpcProvider } from './helpers/grpc.js'
import * as grpcJs from '@grpc/grpc-js'
import { tempDir } from './helpers/config-file.js'
import { makeCerts } from './helpers/tls.js'
import type { Config } from '../src/index.js'
import type { CheckTarget } from '../src/health/active.js'
import { healthRequest, servingStatus } from '../src/health/probes/grpc.js'

type UpstreamConfig = Config['upstreams'][string]
const fast = { interval: 100, timeout: 2_000, rise: 2, fall: 2 }

/** An HTTP/2-only server (h2c, or TLS offering only "h2"): /healthz answers 200; it counts sessions and requests. */
interface H2Only {
  address: string
  requests: number
  sessions: Set<ServerHttp2Session>
  opened: number
  /** While true, no request is answered (a provider that accepts and hangs). */
  hang: boolean
}

function h2Only(server: Http2Server | Http2SecureServer): Promise<H2Only> {
  const state: H2Only = { address: '', requests: 0, sessions: new Set(), opened: 0, hang: false }
  server.on('session', (session: ServerHttp2Session) => {
    state.opened++
    state.sessions.add(session)
    session.once('close', () => state.sessions.delete(session))
  })
  server.on('stream', (stream, headers) => {
    state.requests++
    if (state.hang) return
    if (headers[':path'] === '/healthz') {
      stream.respond({ ':status': 200 })
      stream.end('ok')
    } else if (headers[':path'] === '/grpc.health.v1.Health/Check') {
      // A SERVING reply written by hand, so this server can also hang at will.
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
      stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]))
    } else {
      stream.respond({ ':status': 404 })
      stream.end()
    }
  })
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      state.address = `127.0.0.1:${(server.address() as AddressInfo).port}`
      resolve(state)
    }),
  )
}

const certs = makeCerts(tempDir(t))
let grpc!: GrpcProvider
let bare!: GrpcProvider
let grpcTls!: GrpcProvider
let h2c!: H2Only
let h2tls!: H2Only
t.before(async () => {
  ;[grpc, bare, grpcTls] = await Promise.all([
    spawnGrpcProvider(t, 'g'),
    spawnGrpcProvider(t, 'bare', ['--no-health']),
    spawnGrpcProvider(t, 'gtls', ['--tls-cert', certs.certFile, '--tls-key', certs.keyFile]),
  ])
  const plain = createH2Server()
  const secure = createSecureServer({ cert: certs.cert, key: certs.key, allowHTTP1: false })
  t.teardown(() => {
    for (const s of [...h2c.sessions, ...h2tls.sessions]) s.destroy()
    plain.close()
    secure.close()
  })
  ;[h2c, h2tls] = await Promise.all([h2Only(plain), h2Only(secure)])
})

async function proxyFor(t: Tap, upstreams: Record<string, UpstreamConfig>): Promise<ProxyHandle & { target(upstream: string): CheckTarget }> {
  const proxy = await startProxy(t, { upstreams })
  const target = (name: string): CheckTarget => proxy.vigil.checker.stateOf(proxy.vigil.upstreams.get(name)!.peers[0]!)!
  return { ...proxy, target }
}
type Tap = { teardown(fn: () => unknown): void }

/** Group "api" checked and passing, then `fault` until its server is down, then `repair` until it is up: the transitions. */
async function outage(proxy: Awaited<ReturnType<typeof proxyFor>>, fault: () => unknown, repair: () => unknown): Promise<string[][]> {
  const events = recordEvents(proxy.vigil, 'active')
  const target = proxy.target('api')
  await waitFor('checked and passing', () => target.checks >= 2 && target.last?.result === 'success' && !target.state.down)
  fault()
  await waitFor('down', () => target.state.down)
  repair()
  await waitFor('up', () => !target.state.down)
  return events.map((e) => [e.event, e.reason])
}

t.test('a provider whose health service says NOT_SERVING goes down after `fall` checks, and SERVING brings it back', async (t) => {
  const proxy = await proxyFor(t, { api: { servers: [{ address: grpc.address }], active: { type: 'grpc', ...fast } } })
  const events = recordEvents(proxy.vigil, 'active')
  const target = proxy.target('api')
  await waitFor('checked and passing', () => target.checks >= 2 && target.last?.result === 'success')
  t.equal((await statusOf(proxy.admin))[0]?.type, 'grpc', 'the status page names the check type')
  await grpc.control('health=NOT_SERVING')
  await waitFor('down', () => target.state.down)
  await grpc.control('health=SERVING')
  await waitFor('up again', () => !target.state.down)
  t.same(
    events.map((e) => [e.event, e.reason]),
    [
      ['down', 'NOT_SERVING'],
      ['up', 'ok'],
    ],
  )
  t.equal(events[0]?.evidence?.['fall'], 2, 'down at the `fall`-th failed check')
  t.equal(events[0]?.evidence?.['detail'], 'the server is NOT_SERVING')
  t.equal(events[1]?.evidence?.['rise'], 2, 'up at the `rise`-th passing check')
})

t.test('a provider without the health service fails its checks as UNIMPLEMENTED, and says so', async (t) => {
  const proxy = await proxyFor(t, { api: { servers: [{ address: bare.address }], active: { type: 'grpc', ...fast } } })
  const events = recordEvents(proxy.vigil, 'active')
  await waitFor('down', () => proxy.target('api').state.down)
  t.equal(events[0]?.reason, 'grpc_UNIMPLEMENTED')
  t.match(events[0]?.evidence?.['detail'], /does not implement grpc\.health\.v1\.Health \(UNIMPLEMENTED\)/)
  const [row] = await statusOf(proxy.admin)
  t.equal(row?.lastCheck?.reason, 'grpc_UNIMPLEMENTED', 'the status page shows why')
})

t.test('the service name is passed: its status decides, not the whole server\'s', async (t) => {
  await grpc.control('health=NOT_SERVING&service=vigil.Billing')
  const check = (service: string): UpstreamConfig => ({ servers: [{ address: grpc.address }], active: { type: 'grpc', ...fast, grpc: { service } } })
  const proxy = await proxyFor(t, { billing: check('vigil.Billing'), whole: check(''), unknown: check('vigil.Nope') })
  const events = recordEvents(proxy.vigil, 'active')
  await waitFor('billing and unknown down', () => proxy.target('billing').state.down && proxy.target('unknown').state.down)
  await grpc.control('health=SERVING&service=vigil.Billing')
  await waitFor('billing up', () => !proxy.target('billing').state.down)
  t.equal(proxy.target('whole').state.down, false, 'the server as a whole stayed SERVING')
  t.equal(proxy.target('whole').failures, 0)
  const of = (u: string): string[] => events.filter((e) => e.upstream === u).map((e) => `${e.event} ${e.reason} ${String(e.evidence?.['detail'])}`)
  t.same(of('billing'), ['down NOT_SERVING service "vigil.Billing" is NOT_SERVING', 'up ok undefined'])
  t.same(of('unknown'), ['down grpc_NOT_FOUND Health status unknown for service vigil.Nope'], 'an unknown service is the server\'s NOT_FOUND')
})

t.test('calls answered UNAVAILABLE while the health service says SERVING: passing checks do not lift the ejection', async (t) => {
  // The grpc-errors drill's fault: before, each passing check restored the server (unejectOnPass), two more
  // calls failed and ejected it again, about once a second for the whole fault.
  const failing = await spawnGrpcProvider(t, 'unavailable')
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'api', http2: true }],
    upstreams: {
      api: {
        protocol: 'h2c',
        servers: [{ address: grpc.address }, { address: failing.address }],
        passive: { maxFails: 1, failTimeout: '1h', recoveryProbe: false, stall: { enabled: false } },
        active: { type: 'grpc', ...fast, unejectOnPass: true },
      },
    },
  })
  const passive = recordEvents(proxy.vigil, 'passive')
  const target = proxy.vigil.checker.stateOf(proxy.vigil.upstreams.get('api')!.peers[1]!)!
  await waitFor('checked and passing', () => target.checks >= 2 && target.last?.result === 'success')
  await failing.control('fail=14')
  const client = echoClient(t, `127.0.0.1:${proxy.port}`)
  const codes: number[] = []
  for (let i = 0; i < 4; i++) await client.say({ text: `${i}` }).then(() => codes.push(0), (e: grpcJs.ServiceError) => codes.push(e.code))
  t.ok(codes.includes(grpcJs.status.UNAVAILABLE), `a call got UNAVAILABLE: ${codes.join(',')}`)
  await waitFor('ejected', () => passive.some((e) => e.event === 'ejected'))
  const checked = target.checks
  await waitFor('five more checks, all passing', () => target.checks >= checked + 5 && target.failures === 0)
  for (let i = 0; i < 6; i++) t.equal((await client.say({ text: `after ${i}` })).from, 'g', 'every call goes to the other server')
  t.same(passive.map((e) => [e.event, e.reason]), [['ejected', 'max_fails']], 'ejected once, never restored by a check')
})

t.test('protocol h2c: an HTTP check speaks HTTP/2 to a provider that refuses HTTP/1.1', async (t) => {
  const check = { type: 'http' as const, ...fast, http: { path: '/healthz' } }
  const before = h2c.requests
  const proxy = await proxyFor(t, {
    h2: { protocol: 'h2c', servers: [{ address: h2c.address }], active: check },
    h1: { servers: [{ address: h2c.address }], active: check },
  })
  await waitFor('the HTTP/1.1 check down', () => proxy.target('h1').state.down)
  await waitFor('the h2c check passed rise times', () => proxy.target('h2').checks >= fast.rise)
  t.equal(proxy.target('h2').failures, 0, 'every HTTP/2 check passed')
  t.equal(proxy.target('h2').state.down, false)
  t.equal(proxy.target('h1').last?.reason, 'invalid_response', 'the HTTP/1.1 check got no HTTP/1.1 answer')
  t.ok(h2c.requests - before >= fast.rise, 'the provider saw the checks as HTTP/2 requests')
})

t.test('protocol h2: gRPC and HTTP checks over TLS with ALPN h2', async (t) => {
  const tls = { skipVerify: true }
  const proxy = await proxyFor(t, {
    grpc: { protocol: 'h2', servers: [{ address: grpcTls.address }], active: { type: 'grpc', ...fast, tls } },
    http: { protocol: 'h2', servers: [{ address: h2tls.address }], active: { type: 'http', ...fast, tls, http: { path: '/healthz' } } },
    cleartext: { servers: [{ address: grpcTls.address }], active: { type: 'grpc', ...fast } },
  })
  await waitFor('both TLS checks passed rise times, the cleartext one down', () =>
    ['grpc', 'http'].every((u) => proxy.target(u).checks >= fast.rise) && proxy.target('cleartext').state.down,
  )
  for (const u of ['grpc', 'http']) t.same([proxy.target(u).failures, proxy.target(u).state.down], [0, false], `${u}: every check passed`)
  t.ok(h2tls.requests >= fast.rise, 'the HTTP/2-only TLS server answered the HTTP check')
})

t.test("protocol h2: checks use the group's tls (its CA, its client certificate), as its traffic does", async (t) => {
  // An HTTP/2-only TLS provider that requires a client certificate signed by the test CA.
  const mtls = createSecureServer({ cert: certs.cert, key: certs.key, allowHTTP1: false, requestCert: true, rejectUnauthorized: true, ca: certs.ca })
  const provider = await h2Only(mtls)
  t.teardown(() => {
    for (const s of provider.sessions) s.destroy()
    mtls.close()
  })
  const withCert = { ca: certs.caFile, cert: certs.clientCertFile, key: certs.clientKeyFile }
  const http = { type: 'http' as const, ...fast, http: { path: '/healthz' } }
  const proxy = await proxyFor(t, {
    http: { protocol: 'h2', tls: withCert, servers: [{ address: provider.address }], active: http },
    grpc: { protocol: 'h2', tls: withCert, servers: [{ address: provider.address }], active: { type: 'grpc', ...fast } },
    // The grpc-js TLS provider asks for no certificate: the group's CA alone verifies it, no skipVerify.
    ca: { protocol: 'h2', tls: { ca: certs.caFile }, servers: [{ address: grpcTls.address }], active: { type: 'grpc', ...fast } },
    nocert: { protocol: 'h2', tls: { ca: certs.caFile }, servers: [{ address: provider.address }], active: http },
    // Before: the only way to check a private-CA provider, and it still has no certificate to show.
    skip: { protocol: 'h2', servers: [{ address: provider.address }], active: { ...http, tls: { skipVerify: true } } },
  })
  await waitFor('the three with what they need passed rise times, the two without are down', () =>
    ['http', 'grpc', 'ca'].every((u) => proxy.target(u).checks >= fast.rise) && proxy.target('nocert').state.down && proxy.target('skip').state.down,
  )
  for (const u of ['http', 'grpc', 'ca']) t.same([proxy.target(u).failures, proxy.target(u).state.down], [0, false], `${u}: every check passed`)
  t.ok(provider.requests >= 2 * fast.rise, 'the provider answered the checks that showed a certificate')
  const client = await fetch(`${proxy.url}/healthz`).then((r) => r.status)
  t.equal(client, 200, 'and the traffic, with the same certificate')
})

t.test('a frozen gRPC provider (SIGSTOP) times out and goes down; SIGCONT brings it back', async (t) => {
  const frozen = await spawnGrpcProvider(t, 'frozen')
  const proxy = await proxyFor(t, { api: { servers: [{ address: frozen.address }], active: { type: 'grpc', ...fast, timeout: 500 } } })
  const transitions = await outage(proxy, () => frozen.signal('SIGSTOP'), () => frozen.signal('SIGCONT'))
  t.same(transitions, [['down', 'timeout'], ['up', 'ok']])
})

t.test('an HTTP/2 HTTP check of a provider that stops answering times out, and passes again when it answers', async (t) => {
  h2c.hang = false
  const proxy = await proxyFor(t, { api: { protocol: 'h2c', servers: [{ address: h2c.address }], active: { type: 'http', ...fast, timeout: 200, http: { path: '/healthz' } } } })
  const opened = h2c.opened
  const transitions = await outage(proxy, () => (h2c.hang = true), () => (h2c.hang = false))
  t.same(transitions, [['down', 'timeout'], ['up', 'ok']])
  t.ok(h2c.opened - opened >= 1, 'a session that timed out is not reused')
  await proxy.vigil.stop(1_000)
  await waitFor('no session of the check left', () => h2c.sessions.size === 0)
})

t.test('sessions: one reused while checks pass, a fresh one after a timeout, none left after stop', async (t) => {
  h2c.hang = false
  const opened = h2c.opened
  const proxy = await proxyFor(t, { api: { protocol: 'h2c', servers: [{ address: h2c.address }], active: { type: 'grpc', ...fast, interval: 20, timeout: 200 } } })
  const target = proxy.target('api')
  await waitFor('five passing checks', () => target.checks >= 5)
  t.equal(target.failures, 0)
  t.equal(h2c.opened - opened, 1, 'every passing check used the one session')
  h2c.hang = true
  const failedBefore = target.failures
  await waitFor('three timed-out checks', () => target.failures - failedBefore >= 3)
  h2c.hang = false
  await waitFor('passing again', () => target.last?.result === 'success')
  const timeouts = target.failures - failedBefore
  t.ok(h2c.opened - opened <= 2 + timeouts, `a session per timed-out check at most (${h2c.opened - opened} sessions, ${timeouts} timeouts)`)
  t.ok(h2c.opened - opened >= 2, 'a timed-out session is not reused')
  await proxy.vigil.stop(1_000)
  await waitFor('every session of the check closed', () => h2c.sessions.size === 0)
  t.pass('no session outlives the checker')
})

t.test('the hand-written messages: HealthCheckRequest framing, HealthCheckResponse reading', async (t) => {
  t.same([...healthRequest('')], [0, 0, 0, 0, 0], 'no service: an empty message')
  t.same([...healthRequest('ab')], [0, 0, 0, 0, 4, 0x0a, 2, 0x61, 0x62], 'field 1, length 2, "ab"')
  const long = healthRequest('x'.repeat(200))
  t.same([...long.subarray(0, 8)], [0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01], 'a name over 127 bytes has a two-byte length')
  const frame = (...bytes: number[]): Buffer => Buffer.from([0, 0, 0, 0, bytes.length, ...bytes])
  t.equal(servingStatus(frame(0x08, 1)), 1, 'SERVING')
  t.equal(servingStatus(frame()), 0, 'an empty message is the default, UNKNOWN')
  t.equal(servingStatus(frame(0x12, 1, 0x61, 0x08, 2)), 2, 'an unknown length-delimited field is skipped')
  t.equal(servingStatus(Buffer.from([1, 0, 0, 0, 2, 0x08, 1])), 'a compressed reply (none was accepted)')
  t.equal(servingStatus(Buffer.from([0, 0, 0, 0, 9, 0x08])), 'a truncated reply message')
  t.equal(servingStatus(frame(0x08)), 'a malformed varint')
  t.equal(servingStatus(Buffer.alloc(2)), 'no reply message')
})
