// Hostile HTTP/2 clients against `workers: 2`: the real CLI forks a primary and two workers, each of which accepts
// its own share of the connections (the primary hands them out in turn), so each worker must guard its sessions as
// one process does (test/http2-hostile.test.ts). Rapid reset (CVE-2023-44487) and SETTINGS/PING floods, frame by
// frame on raw sockets, on an h2c listener and a TLS one (h2 by ALPN beside HTTP/1.1), over connections opened
// until each worker of each listener got some. Meanwhile well-behaved clients on both workers (HTTP/2 on both
// listeners, HTTP/1.1 on the TLS one) keep asking. Each hostile session must end with GOAWAY ENHANCE_YOUR_CALM and
// its socket closed, be logged once by the worker that held it, cost the providers bounded work; every
// well-behaved request is answered 200; both workers are the processes that started, the primary never exits.
import t, { type Test } from 'tap'
import { join } from 'node:path'
import { connect, constants, createServer, type ClientHttp2Session, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent } from 'undici'
import { get, steadily } from './helpers/index.js'
import { tempDir, until } from './helpers/config-file.js'
import { makeCerts } from './helpers/tls.js'
import { h2Request } from './helpers/http2.js'
import { flood, GOAWAY, goawayCode, PING, rapidResets, rawClient, SETTINGS, type RawClient } from './helpers/h2-frames.js'
import { onTwoWorkers, startCluster } from './helpers/workers.js'

interface Status {
  servers: { server: { name: string; passive: string; failures: number }[] }
  workers: { workers: { pid: number; requests: number; serving: boolean; version: number; silentMs: number; restarts: number }[]; version: number }
}

const dir = tempDir(t)
const certs = makeCerts(dir)

// Two h2c providers. Hostile clients open `/`; well-behaved ones ask for `/ok`: the provider counts each.
const streams = { hostile: 0, ok: 0 }
const provider = async (): Promise<string> => {
  const server = createServer()
  const sessions = new Set<Http2Session>()
  server.on('session', (s: Http2Session) => sessions.add(s))
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => undefined)
    if (headers[':path'] === '/ok') streams.ok++
    else streams.hostile++
    stream.respond({ ':status': 200 })
    stream.end('ok')
  })
  t.teardown(() => {
    for (const s of sessions) s.destroy()
    return new Promise((resolve) => server.close(() => resolve(undefined)))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `127.0.0.1:${(server.address() as AddressInfo).port}`
}
const providers = await Promise.all([provider(), provider()])

const MAX_RESETS = 50
const limits = { http2: { maxResets: MAX_RESETS, maxSettings: 20, maxPings: 20 } }
const cluster = await startCluster<Status>(t, join(dir, 'vigil.json'), {
  workers: 2,
  listeners: [
    { address: '127.0.0.1:0', http2: true, upstream: 'api', limits },
    { address: '127.0.0.1:0', http2: true, tls: { cert: certs.certFile, key: certs.keyFile }, upstream: 'api', limits },
  ],
  admin: { address: '127.0.0.1:0' },
  reload: { watch: false },
  shutdown: { grace: '5s' },
  upstreams: { api: { protocol: 'h2c', servers: providers.map((address) => ({ address })) } },
})
const [h2cAt, tlsAt] = cluster.listeners as [string, string]
type Listener = 'h2c' | 'tls'
const portOf = (l: Listener): number => Number((l === 'h2c' ? h2cAt : tlsAt).split(':').pop())
const OVER_LIMIT = 'HTTP/2 client over a limit: GOAWAY'

// --- well-behaved clients, one of each kind on each worker -------------------------------------------------------

const sessions: ClientHttp2Session[] = []
const session = (l: Listener): ClientHttp2Session => {
  const s = l === 'tls' ? connect(`https://${tlsAt}`, { ca: certs.ca, servername: 'localhost' }) : connect(`http://${h2cAt}`)
  s.on('error', () => undefined)
  sessions.push(s)
  return s
}
const agents: Agent[] = []
const agent = (): Agent => {
  const a = new Agent({ connections: 1, keepAliveTimeout: 600_000, connect: { ca: certs.ca, servername: 'localhost' } })
  agents.push(a)
  return a
}
t.teardown(async () => {
  for (const s of sessions) s.destroy()
  await Promise.all(agents.map((a) => a.close()))
})
const overH2 = (s: ClientHttp2Session): Promise<number> => h2Request(s, { ':path': '/ok' }).then((r) => r.status)
const overH1 = (a: Agent): Promise<number> => get(`https://${tlsAt}/ok`, { dispatcher: a }).then((r) => r.status)

/** A well-behaved client: its name and one GET /ok (its status; 0 when the request failed). */
interface Client {
  name: string
  send(): Promise<number>
}
const clients: Client[] = []
for (const l of ['h2c', 'tls'] as const) {
  const pair = await onTwoWorkers(cluster, () => session(l), overH2)
  pair.forEach((s, i) => clients.push({ name: `HTTP/2 on ${l}, ${i === 0 ? 'one' : 'the other'} worker`, send: () => overH2(s).catch(() => 0) }))
}
const h1 = await onTwoWorkers(cluster, agent, overH1)
h1.forEach((a, i) => clients.push({ name: `HTTP/1.1 on tls, ${i === 0 ? 'one' : 'the other'} worker`, send: () => overH1(a).catch(() => 0) }))

/** One GET from every well-behaved client at once: their statuses. */
const round = (): Promise<number[]> => Promise.all(clients.map((c) => c.send()))

/** Every well-behaved client asking in a loop (paced, to spare the shared machine) until stopped: its statuses. */
function steady(): { statuses: number[][]; stop(): Promise<void> } {
  const loops = clients.map((c) => steadily(() => c.send().then(async (status) => (await sleep(5), status))))
  return { statuses: loops.map((l) => l.statuses), stop: async () => void (await Promise.all(loops.map((l) => l.stop()))) }
}

// --- hostile sessions --------------------------------------------------------------------------------------------

interface Hostile {
  listener: Listener
  client: RawClient
  /** The client side's port: the worker's log line names it. */
  port: number
}

/** A raw session on `l`, established: the worker that took the connection sent its SETTINGS. */
async function hostile(t: Test, l: Listener): Promise<Hostile> {
  const client = rawClient(t, portOf(l), undefined, l === 'tls' ? { ca: certs.ca } : undefined)
  await client.seen(SETTINGS)
  return { listener: l, client, port: client.socket.localPort as number }
}

const overLimit = (port: number): Record<string, unknown>[] => cluster.cli.lines.filter((l) => l['msg'] === OVER_LIMIT && l['clientPort'] === port)

/**
 * Hostile sessions, four at a time (two per listener, all established before any sends), each sent `attack` in
 * turn with a round of well-behaved requests right behind it; more until the abuse has reached both workers on
 * both listeners. The steady clients ask throughout; then what each of them saw, the log and the workers are checked.
 */
async function abuse(t: Test, limit: keyof typeof limits.http2, attack: Buffer): Promise<void> {
  const load = steady()
  t.teardown(() => load.stop())
  const from = cluster.cli.lines.length
  const done: { h: Hostile; code: number; pid: unknown }[] = []
  const rounds: number[] = []
  const reached = (l: Listener): number => new Set(done.filter((d) => d.h.listener === l).map((d) => d.pid)).size
  while (reached('h2c') < 2 || reached('tls') < 2) {
    if (done.length >= 40) throw new Error(`40 hostile sessions and still not on both workers of both listeners: ${JSON.stringify(done.map((d) => [d.h.listener, d.pid]))}`)
    const batch = await Promise.all((['h2c', 'tls', 'h2c', 'tls'] as const).map((l) => hostile(t, l)))
    for (const h of batch) {
      h.client.socket.write(attack)
      // Sent while this session's frames are being handled and the rest of the batch waits, open, on both workers.
      rounds.push(...(await round()))
      const goaway = await h.client.seen(GOAWAY)
      await h.client.closed
      await until(() => overLimit(h.port).length > 0, `the worker to log session ${h.port}`)
      done.push({ h, code: goawayCode(goaway), pid: overLimit(h.port)[0]?.['pid'] })
    }
  }
  // After the abuse: every steady client is answered again.
  const during = load.statuses.map((s) => s.length)
  await until(() => load.statuses.every((s, i) => s.length > (during[i] ?? 0) + 2), 'every steady client to be answered after the abuse')
  await load.stop()
  const after = [...(await round()), ...(await round())]

  const n = done.length
  t.same(done.map((d) => d.code), Array(n).fill(constants.NGHTTP2_ENHANCE_YOUR_CALM), `each of the ${n} hostile sessions got GOAWAY ENHANCE_YOUR_CALM, then its socket closed`)
  t.same(new Set(done.map((d) => d.pid)), new Set(cluster.workers), 'the workers that logged them are the two workers')
  t.same(
    done.map((d) => overLimit(d.h.port).map((l) => [l['limit'], l['count'], l['level']])),
    done.map(() => [[limit, limits.http2[limit] + 1, 'warn']]),
    `each session logged once, by its worker, as over ${limit} at the configured ${limits.http2[limit]} (not the default)`,
  )
  t.equal(cluster.cli.lines.slice(from).filter((l) => l['msg'] === OVER_LIMIT).length, n, 'and no other session was')
  t.same(rounds, Array(rounds.length).fill(200), `${rounds.length} requests sent right behind the attacks: all 200`)
  t.same(after, Array(after.length).fill(200), `${after.length} requests after: all 200`)
  load.statuses.forEach((s, i) =>
    t.same(s, Array(s.length).fill(200), `${clients[i]?.name}: ${during[i]} answered 200 during the abuse, ${s.length - (during[i] ?? 0)} after`),
  )
  // Every worker's batch since the abuse is in: the streams the hostile clients cancelled were counted by now.
  await cluster.reported()
  t.same(
    (await cluster.status()).servers.server.map((r) => [r.name, r.passive, r.failures]).sort(),
    providers.map((p) => [p, 'ok', 0]).sort(),
    'no provider ejected or charged with a failure for what the hostile clients did',
  )
  const workers = (await cluster.status()).workers.workers
  t.same(
    workers.map((w) => [w.pid, w.restarts, w.serving]).sort(),
    cluster.workers.map((pid) => [pid, 0, true]).sort(),
    'the same two worker processes serve, never restarted',
  )
  t.same(cluster.cli.lines.slice(from).filter((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('worker ')), [], 'no worker exited or stopped answering')
  t.equal(cluster.cli.child.exitCode, null, 'the primary runs')
}

t.test('rapid reset on both workers: each session gets GOAWAY after maxResets, with bounded work; everyone else is served', async (t) => {
  const before = streams.hostile
  const sessionsBefore = cluster.cli.lines.filter((l) => l['msg'] === OVER_LIMIT).length
  await abuse(t, 'maxResets', rapidResets(2000, constants.NGHTTP2_CANCEL))
  const n = cluster.cli.lines.filter((l) => l['msg'] === OVER_LIMIT).length - sessionsBefore
  const reached = streams.hostile - before
  t.ok(reached <= 2 * MAX_RESETS * n, `bounded: the providers saw ${reached} of ${2000 * n} streams from ${n} sessions (maxResets ${MAX_RESETS})`)
})

t.test('a SETTINGS flood on both workers: each session gets GOAWAY after maxSettings; everyone else is served', async (t) => {
  await abuse(t, 'maxSettings', flood(SETTINGS, 500))
})

t.test('a PING flood on both workers: each session gets GOAWAY after maxPings; everyone else is served', async (t) => {
  await abuse(t, 'maxPings', flood(PING, 500))
})

t.test('SIGTERM stops the cluster after the abuse: every process exits 0', async (t) => {
  for (const s of sessions) s.close()
  process.kill(cluster.primary, 'SIGTERM')
  t.equal(await cluster.cli.exited, 0)
})
