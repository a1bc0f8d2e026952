// The reload matrix, generated from the schema: every per-upstream and per-server setting is changed on a kept
// group whose servers hold live state (one ejected, one whose trial request is running, one ramping in slow
// start, one down by check, one draining, requests in flight, a request waiting in the group's queue), and the
// outcome is the rule the README states for it. A setting the schema gains without
// a row here fails the first test: every new setting must say which rule it follows.
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { TSchema } from '@sinclair/typebox'
import { Config as ConfigSchema, Fleet as FleetSchema, Server as ServerSchema, Upstream as UpstreamSchema, jsonSchema, type Config, type Fleet, type Upstream as UpstreamConfig } from '../src/config/schema.js'
import { restartOnly } from '../src/update/reloader.js'
import { client, get, root } from './helpers/index.js'
import { capture, proxyConfig, startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'
import { makeCerts } from './helpers/tls.js'
import type { Peer } from '../src/upstream/peer.js'
import type { Upstream } from '../src/upstream/upstream.js'

/** The rules of the README's reload section. */
type Rule =
  /** State kept, the new setting applies to new requests (new balancer, retry policy, Host header...). */
  | 'kept'
  /** Passive accounting starts afresh for the group: ejections end; every other state kept. */
  | 'passive-afresh'
  /** A running slow-start ramp continues under the new window. */
  | 'ramp-continues'
  /** Each server keeps its up/down check state; the new check counts rise/fall afresh. */
  | 'check-kept'
  /** The whole group gets new pools (old ones finish their requests); every other state kept. */
  | 'new-pools'
  /** Every server's latency estimate keeps its value and decays at the new rate. */
  | 'retuned'
  /** Named in the restart warning and applied to nothing. */
  | 'restart-only'
  /** The server itself changes in place (weight, backup, down, maxConns); its state is kept. */
  | 'server-in-place'
  /** A different address is a different server: the old one is removed (finishes in flight), the new one added. */
  | 'new-server'

/** Every leaf setting under a schema object: "passive.maxFails", "tls.ca", "active.http.path"... */
function leaves(schema: TSchema, prefix = ''): string[] {
  const props = (schema as { properties?: Record<string, TSchema> }).properties ?? {}
  const out: string[] = []
  for (const [key, value] of Object.entries(props)) {
    const path = `${prefix}${key}`
    const object = [value, ...((value as { anyOf?: TSchema[] }).anyOf ?? [])].find((s) => (s as { properties?: unknown }).properties !== undefined)
    if (object !== undefined) out.push(...leaves(object, `${path}.`))
    else out.push(path)
  }
  return out
}

interface World {
  certs: ReturnType<typeof makeCerts>
  address: (name: 'ejected' | 'trial' | 'ramping' | 'checkDown' | 'draining' | 'steady' | 'spare') => string
}

interface Row {
  rule: Rule
  /** The kept group "api" after the change (from the base group). */
  change: (u: UpstreamConfig, w: World) => UpstreamConfig
}

const upstreamRow = (rule: Rule, patch: Partial<UpstreamConfig> | ((w: World) => Partial<UpstreamConfig>)): Row => ({
  rule,
  change: (u, w) => ({ ...u, ...(typeof patch === 'function' ? patch(w) : patch) }),
})
const nested = <K extends 'passive' | 'active' | 'retry' | 'timeouts' | 'queue'>(key: K, rule: Rule, patch: Record<string, unknown>): Row => ({
  rule,
  change: (u) => ({ ...u, [key]: { ...(u[key] as object | undefined), ...patch } }),
})
const serverRow = (rule: Rule, patch: (w: World) => Record<string, unknown>, who: 'ejected' | 'ramping' | 'steady' = 'ejected'): Row => ({
  rule,
  change: (u, w) => ({ ...u, servers: u.servers.map((s) => (s.address === w.address(who) ? { ...s, ...patch(w) } : s)) }),
})

const ROWS: Record<string, Row> = {
  balance: upstreamRow('kept', { balance: 'least_conn' }),
  hashKey: upstreamRow('kept', { balance: 'hash', hashKey: 'path' }),
  hashBalanceFactor: upstreamRow('kept', { balance: 'hash', hashBalanceFactor: 150 }),
  ewmaDecay: upstreamRow('retuned', { balance: 'ewma', ewmaDecay: '3s' }),
  slowStart: upstreamRow('ramp-continues', { slowStart: '30m' }),
  'queue.size': upstreamRow('restart-only', { queue: { size: 4 } }),
  'queue.timeout': upstreamRow('restart-only', { queue: { size: 8, timeout: '5s' } }),
  host: upstreamRow('kept', { host: 'api.internal' }),
  'passive.maxFails': nested('passive', 'passive-afresh', { maxFails: 2 }),
  'passive.failTimeout': nested('passive', 'passive-afresh', { failTimeout: '2h' }),
  'passive.failOn': nested('passive', 'passive-afresh', { failOn: ['error', 'http_503'] }),
  'passive.maxEjectPercent': nested('passive', 'passive-afresh', { maxEjectPercent: 60 }),
  'passive.mode': nested('passive', 'passive-afresh', { mode: 'consecutive' }),
  'passive.ejectTime': nested('passive', 'passive-afresh', { ejectTime: '30m' }),
  'passive.maxEjectTime': nested('passive', 'passive-afresh', { maxEjectTime: '2h' }),
  'passive.failPercent': nested('passive', 'passive-afresh', { failPercent: 40 }),
  'passive.minRequests': nested('passive', 'passive-afresh', { minRequests: 20 }),
  'passive.failOpen': nested('passive', 'passive-afresh', { failOpen: false }),
  'passive.stall.enabled': nested('passive', 'passive-afresh', { stall: { enabled: false } }),
  'passive.stall.factor': nested('passive', 'passive-afresh', { stall: { factor: 20 } }),
  'passive.stall.floor': nested('passive', 'passive-afresh', { stall: { floor: '1s' } }),
  'passive.stall.redispatch': nested('passive', 'passive-afresh', { stall: { redispatch: true } }),
  'passive.recoveryProbe.enabled': nested('passive', 'passive-afresh', { recoveryProbe: { enabled: false, interval: '1s' } }),
  'passive.recoveryProbe.interval': nested('passive', 'passive-afresh', { recoveryProbe: { enabled: false, interval: '2s' } }),
  'passive.recoveryProbe.maxInterval': nested('passive', 'passive-afresh', { recoveryProbe: { enabled: false, maxInterval: '5s' } }),
  failOpen: upstreamRow('kept', { failOpen: false }),
  // A subset only decides which servers this vigil sends to: every server keeps its state in or out of it.
  'subset.size': upstreamRow('kept', { subset: { size: 2, id: 0, of: 2 } }),
  'subset.id': upstreamRow('kept', { subset: { size: 2, id: 1, of: 2 } }),
  'subset.of': upstreamRow('kept', { subset: { size: 2, id: 1, of: 3 } }),
  'passive.ejectAtLeastOne': nested('passive', 'passive-afresh', { ejectAtLeastOne: true }),
  'passive.outlier.interval': nested('passive', 'passive-afresh', { outlier: { interval: '5s' } }),
  'passive.outlier.requestVolume': nested('passive', 'passive-afresh', { outlier: { requestVolume: 50 } }),
  'passive.outlier.minimumHosts': nested('passive', 'passive-afresh', { outlier: { minimumHosts: 3 } }),
  'passive.outlier.stdevFactor': nested('passive', 'passive-afresh', { outlier: { stdevFactor: 2.5 } }),
  'passive.outlier.stdevFloor': nested('passive', 'passive-afresh', { outlier: { stdevFloor: 0 } }),
  'passive.outlier.successRate': nested('passive', 'passive-afresh', { outlier: { successRate: false } }),
  'passive.outlier.threshold': nested('passive', 'passive-afresh', { outlier: { threshold: 90 } }),
  'timeouts.queue': nested('timeouts', 'new-pools', { queue: '1s' }),
  'active.type': nested('active', 'check-kept', { type: 'tcp', http: undefined }),
  'active.interval': nested('active', 'check-kept', { interval: '150ms' }),
  'active.timeout': nested('active', 'check-kept', { timeout: '90ms' }),
  'active.rise': nested('active', 'check-kept', { rise: 3 }),
  'active.fall': nested('active', 'check-kept', { fall: 2 }),
  'active.defaultDown': nested('active', 'check-kept', { defaultDown: true }),
  'active.port': { rule: 'check-kept', change: (u, w) => ({ ...u, active: { ...u.active, port: Number(w.address('spare').split(':')[1]) } }) },
  'active.fastInterval': nested('active', 'check-kept', { fastInterval: '120ms' }),
  'active.downInterval': nested('active', 'check-kept', { downInterval: '120ms' }),
  'active.trafficInterval': nested('active', 'check-kept', { trafficInterval: '1s' }),
  'active.jitter': nested('active', 'check-kept', { jitter: 0.2 }),
  'active.maxInFlight': nested('active', 'check-kept', { maxInFlight: 8 }),
  'active.unejectOnPass': nested('active', 'check-kept', { unejectOnPass: true }),
  'active.http.method': nested('active', 'check-kept', { http: { path: '/healthz', method: 'HEAD' } }),
  'active.http.path': nested('active', 'check-kept', { http: { path: '/healthz?v=2' } }),
  'active.http.host': nested('active', 'check-kept', { http: { path: '/healthz', host: 'check.internal' } }),
  'active.http.headers': nested('active', 'check-kept', { http: { path: '/healthz', headers: { 'x-check': '1' } } }),
  'active.http.expectStatus': nested('active', 'check-kept', { http: { path: '/healthz', expectStatus: ['2xx'] } }),
  'active.http.expectBody': nested('active', 'check-kept', { http: { path: '/healthz', expectBody: 'ok' } }),
  'active.tls.serverName': nested('active', 'check-kept', { tls: { serverName: 'check.internal' } }),
  'active.tls.skipVerify': nested('active', 'check-kept', { tls: { skipVerify: true } }),
  'active.tcp.send': nested('active', 'check-kept', { type: 'tcp', http: undefined, tcp: { send: 'PING\r\n' } }),
  'active.grpc.service': nested('active', 'check-kept', { type: 'grpc', http: undefined, grpc: { service: 'vigil.Api' } }),
  'active.tcp.expect': nested('active', 'check-kept', { type: 'tcp', http: undefined, tcp: { send: 'GET / HTTP/1.0\r\n\r\n', expect: 'HTTP' } }),
  'retry.on': nested('retry', 'kept', { on: ['error', 'timeout', 'http_503'] }),
  'retry.tries': nested('retry', 'kept', { tries: 4 }),
  'retry.timeout': nested('retry', 'kept', { timeout: '20s' }),
  'retry.nonIdempotent': nested('retry', 'kept', { nonIdempotent: true }),
  'retry.perTryTimeout': nested('retry', 'kept', { perTryTimeout: '5s' }),
  'retry.hedge': nested('retry', 'kept', { perTryTimeout: '5s', hedge: true }),
  'retry.budget.percent': nested('retry', 'kept', { budget: { percent: 30 } }),
  'retry.budget.minPerSecond': nested('retry', 'kept', { budget: { minPerSecond: 5 } }),
  'timeouts.connect': nested('timeouts', 'new-pools', { connect: '3s' }),
  'timeouts.response': nested('timeouts', 'new-pools', { response: '40s' }),
  'timeouts.idle': nested('timeouts', 'new-pools', { idle: '50s' }),
  'tls.servername': upstreamRow('new-pools', { tls: { servername: 'provider.test' } }),
  'tls.ca': upstreamRow('new-pools', (w) => ({ tls: { ca: w.certs.caFile } })),
  'tls.cert': upstreamRow('new-pools', (w) => ({ tls: { cert: w.certs.clientCertFile, key: w.certs.clientKeyFile } })),
  'tls.key': upstreamRow('new-pools', (w) => ({ tls: { key: w.certs.clientKeyFile, cert: w.certs.clientCertFile, verify: false } })),
  'tls.verify': upstreamRow('new-pools', { tls: { verify: false } }),
  maxResponseSize: upstreamRow('new-pools', { maxResponseSize: 1_000_000 }),
  protocol: upstreamRow('new-pools', { protocol: 'h2c' }),
  'http2.connections': upstreamRow('new-pools', { http2: { connections: 2 } }),
  'http2.maxConcurrentStreams': upstreamRow('new-pools', { http2: { maxConcurrentStreams: 50 } }),
  'servers.address': { rule: 'new-server', change: (u, w) => ({ ...u, servers: u.servers.map((s) => (s.address === w.address('steady') ? { address: w.address('spare') } : s)) }) },
  'servers.weight': serverRow('server-in-place', () => ({ weight: 3 })),
  'servers.backup': serverRow('server-in-place', () => ({ backup: true })),
  'servers.down': serverRow('server-in-place', () => ({ down: true })),
  'servers.maxConns': serverRow('server-in-place', () => ({ maxConns: 7 })),
  'servers.resolve': serverRow('server-in-place', () => ({ resolve: true }), 'steady'),
}

/** Top-level settings with a reload rule of their own (the others are the README's: admin, log, resolver...). */
const TOP_ROWS: Record<string, { rule: Rule; value: unknown }> = {
  workers: { rule: 'restart-only', value: 2 },
}

t.test('a top-level restart-only setting is named in the restart warning and changes nothing', async (t) => {
  t.same(Object.keys(TOP_ROWS).filter((k) => (ConfigSchema as unknown as { properties: Record<string, unknown> }).properties[k] === undefined), [], 'every row is a setting')
  const dir = tempDir(t)
  const p = await provider(t, 200)
  const base = proxyConfig([p.address])
  const { logger, lines } = capture()
  const proxy = await startProxyFromFile(t, join(dir, 'vigil.json'), base, logger)
  for (const [setting, row] of Object.entries(TOP_ROWS)) {
    const group = proxy.vigil.upstreams.get('api')?.group
    writeConfig(proxy.file, { ...base, [setting]: row.value })
    t.equal((await proxy.vigil.reload('api')).ok, true, `${setting}: the reload applies`)
    const warning = lines.filter((l) => l['msg'] === 'these settings change at the next restart').pop() as { settings: string[] } | undefined
    t.same(warning?.settings, [setting], `${setting} (${row.rule}): the restart warning names it`)
    // Compared as a boolean: tap would render both groups in a diff.
    t.ok(proxy.vigil.upstreams.get('api')?.group === group, `${setting}: the group keeps its state`)
    t.equal(proxy.vigil.cluster, undefined, `${setting}: still one process`)
    t.equal((await get(proxy.url)).status, 200, `${setting}: still serving`)
    writeConfig(proxy.file, base)
    t.equal((await proxy.vigil.reload('api')).ok, true, `${setting}: back to the base file`)
  }
})

t.test('every setting of the schema has a row (a new setting must say which rule it follows)', async (t) => {
  // A registry source's settings (servers.zookeeper.*, servers.etcd.*) follow one rule, tested against real
  // registries in test/etcd.test.ts: a changed entry is a new entry (its own subscription and list), and the
  // addresses it yields that the group already had keep their state, as any kept address does.
  const registry = (k: string): boolean => k.startsWith('zookeeper.') || k.startsWith('etcd.')
  const settings = [...leaves(UpstreamSchema).filter((k) => !k.startsWith('servers')), ...leaves(ServerSchema).filter((k) => !registry(k)).map((k) => `servers.${k}`)]
  t.same(settings.filter((k) => ROWS[k] === undefined), [], 'settings without a row')
  t.same(Object.keys(ROWS).filter((k) => !settings.includes(k)), [], 'rows for settings the schema no longer has')
})

/**
 * The fleet's settings (top-level `fleet`, docs/fleet.md) hold a registry session for the life of the process:
 * each is restart-only, named in the restart warning. The registration itself is tested against real
 * registries in test/fleet-registration.test.ts.
 */
const FLEET_BASE: Fleet = { registry: { etcd: { endpoints: ['http://127.0.0.1:2379'] } }, path: '/vigil/matrix' }
const zk = (patch: Record<string, unknown>): Partial<Fleet> => ({ registry: { zookeeper: { servers: '127.0.0.1:2181', ...patch } } })
const etcdFleet = (patch: Record<string, unknown>): Partial<Fleet> => ({ registry: { etcd: { endpoints: ['http://127.0.0.1:2379'], ...patch } } })
const FLEET_ROWS: Record<string, Partial<Fleet>> = {
  'registry.zookeeper.servers': zk({}),
  'registry.zookeeper.sessionTimeout': zk({ sessionTimeout: '5s' }),
  'registry.zookeeper.auth.user': zk({ auth: { user: 'u', password: '' } }),
  'registry.zookeeper.auth.password': zk({ auth: { user: 'u', password: 'p' } }),
  'registry.zookeeper.connectTimeout': zk({ connectTimeout: '1s' }),
  'registry.zookeeper.resyncInterval': zk({ resyncInterval: '10s' }),
  'registry.zookeeper.staleAfter': zk({ staleAfter: '2m' }),
  'registry.etcd.endpoints': etcdFleet({ endpoints: ['http://127.0.0.2:2379'] }),
  'registry.etcd.username': etcdFleet({ username: 'u', password: 'p' }),
  'registry.etcd.password': etcdFleet({ username: 'u', password: 'q' }),
  'registry.etcd.tls.ca': etcdFleet({ tls: { ca: '/dev/null' } }),
  'registry.etcd.tls.cert': etcdFleet({ tls: { ca: '/dev/null', cert: '/dev/null', key: '/dev/null' } }),
  'registry.etcd.tls.key': etcdFleet({ tls: { ca: '/dev/null', key: '/dev/null', cert: '/dev/null' } }),
  'registry.etcd.connectTimeout': etcdFleet({ connectTimeout: '1s' }),
  'registry.etcd.resyncInterval': etcdFleet({ resyncInterval: '10s' }),
  'registry.etcd.staleAfter': etcdFleet({ staleAfter: '2m' }),
  path: { path: '/vigil/other' },
  id: { id: 'consumer-1' },
  ttl: { ttl: '20s' },
  quorum: { quorum: 3 },
  window: { window: '1m' },
  localWindow: { localWindow: '5s' },
  writeRate: { writeRate: 2 },
  writeJitter: { writeJitter: '2s' },
  suspectWeight: { suspectWeight: 25 },
  'shareChecks.k': { shareChecks: { k: 2 } },
}

t.test('every fleet setting has a row, and each is restart-only', async (t) => {
  const settings = leaves(FleetSchema)
  t.same(settings.filter((k) => FLEET_ROWS[k] === undefined), [], 'fleet settings without a row')
  t.same(Object.keys(FLEET_ROWS).filter((k) => !settings.includes(k)), [], 'rows for settings the schema no longer has')
  const config = (fleet: Fleet | undefined): Config => ({ ...proxyConfig(['127.0.0.1:1']), ...(fleet === undefined ? {} : { fleet }) })
  for (const [setting, patch] of Object.entries(FLEET_ROWS)) t.same(restartOnly(config(FLEET_BASE), config({ ...FLEET_BASE, ...patch })), ['fleet'], `fleet.${setting}: restart-only`)
  t.same(restartOnly(config(undefined), config(FLEET_BASE)), ['fleet'], 'turning the fleet on waits for a restart')
})

/** The rule names of docs/configuration.md's table ("Which rule each setting follows"), by the matrix's rule. */
const DOC_RULE: Record<Rule, string> = {
  kept: 'carried over',
  'server-in-place': 'carried over',
  'passive-afresh': 'new state',
  'new-server': 'new state',
  'ramp-continues': 'carried with a written rule',
  'check-kept': 'carried with a written rule',
  retuned: 'carried with a written rule',
  'new-pools': 'pools rebuilt',
  'restart-only': 'restart-only',
}

/** The settings outside groups and the fleet: the rule the table gives each, and a change the reload judges. */
const listener = (patch: Record<string, unknown>): Config => ({ ...proxyConfig(['127.0.0.1:1']), listeners: [{ address: '127.0.0.1:0', upstream: 'api', ...patch }] })
const top = (patch: Partial<Config>): Config => ({ ...proxyConfig(['127.0.0.1:1']), ...patch })
const SETTING_ROWS: Record<string, { rule: string; after: Config; before?: Config }> = {
  'listeners[].address': { rule: 'new state', after: listener({ address: '127.0.0.1:1' }) },
  'listeners[].upstream': { rule: 'carried over', after: listener({ upstream: 'other' }) },
  'listeners[].routes': { rule: 'carried over', after: listener({ upstream: undefined, routes: [{ pathPrefix: '/', upstream: 'api' }] }) },
  // The certificate is re-read on every reload; only turning TLS on or off waits for a restart.
  'listeners[].tls': { rule: 'carried with a written rule', before: listener({ tls: { cert: 'a.pem', key: 'a.key' } }), after: listener({ tls: { cert: 'b.pem', key: 'b.key' } }) },
  'listeners[].http2': { rule: 'restart-only', after: listener({ http2: true }) },
  'listeners[].trustedProxies': { rule: 'restart-only', after: listener({ trustedProxies: ['10.0.0.0/8'] }) },
  'listeners[].forwardedHeaders': { rule: 'restart-only', after: listener({ forwardedHeaders: false }) },
  'listeners[].limits': { rule: 'restart-only', after: listener({ limits: {} }) },
  'admin.address': { rule: 'restart-only', after: top({ admin: { address: '127.0.0.1:1' } }) },
  'admin.token': { rule: 'restart-only', after: top({ admin: { address: '127.0.0.1:0', token: 't' } }) },
  'log.level': { rule: 'applies at once', after: top({ log: { level: 'debug' } }) },
  'log.access': { rule: 'applies at once', after: top({ log: { access: true } }) },
  'shutdown.grace': { rule: 'applies at once', after: top({ shutdown: { grace: '1s' } }) },
  'reload.watch': { rule: 'applies at once', after: top({ reload: { watch: true } }) },
  'reload.debounce': { rule: 'applies at once', after: top({ reload: { watch: false, debounce: '1s' } }) },
  'resolver.servers': { rule: 'restart-only', after: top({ resolver: { servers: ['127.0.0.1:53'] } }) },
  'resolver.minTtl': { rule: 'applies at once', after: top({ resolver: { minTtl: '1s' } }) },
  'resolver.maxTtl': { rule: 'applies at once', after: top({ resolver: { maxTtl: '1m' } }) },
  'resolver.timeout': { rule: 'restart-only', after: top({ resolver: { timeout: '1s' } }) },
  workers: { rule: 'restart-only', after: top({ workers: 2 }) },
}

t.test("docs/configuration.md's table gives every setting of the schema the rule the matrix asserts", async (t) => {
  const doc = readFileSync(join(root, 'docs/configuration.md'), 'utf8')
  const section = doc.slice(doc.indexOf('### Which rule each setting follows'))
  const table = Object.fromEntries([...section.matchAll(/^\| `([^`]+)` \| ([^|]+?) \|/gm)].map((m) => [m[1], m[2]]))
  const expected: Record<string, string> = {}
  for (const [k, row] of Object.entries(ROWS)) expected[k.startsWith('servers.') ? `upstreams.NAME.servers[].${k.slice('servers.'.length)}` : `upstreams.NAME.${k}`] = DOC_RULE[row.rule]
  // A registry source's settings (see the first test): a changed entry is a new subscription; kept addresses keep their state.
  for (const k of ['zookeeper', 'etcd']) expected[`upstreams.NAME.servers[].${k}.*`] = 'carried with a written rule'
  for (const k of Object.keys(FLEET_ROWS)) expected[`fleet.${k}`] = 'restart-only'
  for (const [k, row] of Object.entries(SETTING_ROWS)) expected[k] = row.rule
  t.same(table, expected, 'one row per setting, each with its rule')
  // Every setting outside groups and the fleet has a row too.
  const schema = jsonSchema() as unknown as { properties: Record<string, TSchema & { items?: TSchema }> }
  const others = Object.entries(schema.properties)
    .filter(([k]) => !['$schema', 'upstreams', 'fleet'].includes(k))
    .flatMap(([k, v]) => {
      const inner = leaves(v.items ?? v)
      // A top-level scalar (`workers`) is a setting of its own.
      return inner.length === 0 ? [k] : inner.map((leaf) => `${k}${v.items === undefined ? '' : '[]'}.${leaf.split('.')[0] as string}`)
    })
  t.same([...new Set(others)].filter((k) => SETTING_ROWS[k] === undefined), [], 'settings without a row')
  // "restart-only" is exactly what the reload names in its warning.
  for (const [k, row] of Object.entries(SETTING_ROWS)) t.equal(restartOnly(row.before ?? top({}), row.after).length > 0, row.rule === 'restart-only', `${k}: ${row.rule}`)
})

interface Provider {
  address: string
  held: ServerResponse[]
  /** Reset every request but checks and queued ones (switched on to get a server ejected by real failures). */
  mode: { reset: boolean }
}

/**
 * Answers at once (or resets: `mode.reset`); /hold/... waits until released; /healthz answers `health`. A
 * /queued/... request (the one that waits in the queue) is answered wherever it lands, so its outcome is the
 * update's, not the server's.
 */
function provider(t: Tap, health: number, reset = false): Promise<Provider> {
  const held: ServerResponse[] = []
  const mode = { reset }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith('/healthz') === true) res.writeHead(health).end('ok')
    else if (req.url?.startsWith('/queued') === true) res.end('ok')
    else if (mode.reset) req.socket.destroy()
    else if (req.url?.startsWith('/hold') === true) held.push(res)
    else res.end('ok')
  })
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ address: `127.0.0.1:${(server.address() as AddressInfo).port}`, held, mode })))
}
type Tap = { teardown(fn: () => unknown): void }

t.test('each setting changed on a kept group with live state follows its rule', async (t) => {
  const dir = tempDir(t)
  const certs = makeCerts(dir)
  // The ejected server passes its checks and resets every real request: passive evidence alone takes it out.
  // The trial server is ejected the same way, then holds its trial request.
  const [resetting, trial, ramping, checkDown, draining, steady, spare] = await Promise.all([
    provider(t, 200, true),
    provider(t, 200),
    provider(t, 200),
    provider(t, 503),
    provider(t, 200),
    provider(t, 200),
    provider(t, 200),
  ])
  const ejected = resetting.address
  const addresses = { ejected, trial: trial.address, ramping: ramping.address, checkDown: checkDown.address, draining: draining.address, steady: steady.address, spare: spare.address }
  const world: World = { certs, address: (name) => addresses[name] }
  const base: UpstreamConfig = {
    slowStart: '1h',
    // No recovery probes: the ejected server passes TCP connects and checks, which would end its ejection at once.
    passive: { maxFails: 1, failTimeout: '1h', maxEjectPercent: 50, recoveryProbe: false },
    // unejectOnPass off: the ejected server passes its checks, which would otherwise lift its ejection.
    active: { type: 'http', interval: '100ms', rise: 2, fall: 1, unejectOnPass: false, http: { path: '/healthz' } },
    retry: { tries: 2 },
    // The two servers that serve take one request each: with both held, the next request waits in the queue.
    queue: { size: 8, timeout: '10m' },
    servers: [
      { address: ejected },
      { address: trial.address },
      { address: ramping.address, maxConns: 1 },
      { address: checkDown.address },
      { address: draining.address },
      { address: steady.address, maxConns: 1 },
    ],
  }
  const config = (u: UpstreamConfig): Config => proxyConfig([], { upstreams: { api: u } })
  const { logger, lines } = capture()
  const proxy = await startProxyFromFile(t, join(dir, 'vigil.json'), config(base), logger)
  const agent = client(t)
  const group = (): Upstream => proxy.vigil.upstreams.get('api') as Upstream
  const peer = (name: keyof typeof addresses): Peer => group().find(addresses[name]) as Peer

  /** Bring every server back to its live state after a row: ejected, ramping, down by check, draining. */
  async function establish(): Promise<void> {
    await get(`${proxy.admin}/upstreams/api/servers/${draining.address}/drain`, { method: 'POST' })
    await until(() => peer('checkDown').checkUp === false && [peer('ejected'), peer('ramping'), peer('steady'), peer('draining')].every((p) => p.checkUp), 'the check states')
    trial.mode.reset = true
    await until(async () => {
      if (peer('ejected').passive?.state === 'ejected' && peer('trial').passive?.state === 'ejected') return true
      await get(proxy.url, { dispatcher: agent })
      return false
    }, 'the ejections')
    trial.mode.reset = false
    if (peer('ramping').effectiveWeight === peer('ramping').weight) {
      await get(`${proxy.admin}/upstreams/api/servers/${ramping.address}/disable`, { method: 'POST' })
      await get(`${proxy.admin}/upstreams/api/servers/${ramping.address}/enable`, { method: 'POST' })
    }
  }

  for (const [setting, row] of Object.entries(ROWS)) {
    await establish()
    // A request in flight on each of the two serving servers (maxConns 1 each), held until the row is judged.
    const holders = [ramping, steady]
    const heldNow = (): number => holders.reduce((n, h) => n + h.held.length, 0)
    const inFlight = [1, 2].map((n) => get(`${proxy.url}/hold/${setting}/${n}`, { dispatcher: agent }))
    await until(() => heldNow() === 2, 'the held requests')
    // In trial: the trial server's ejection time is over (its timer's call, made here: failTimeout is an hour, so
    // the other ejected server stays out), and its one trial request is running, held by the server.
    peer('trial').passive?.openTrial()
    const trialRequest = get(`${proxy.url}/hold/${setting}/trial`, { dispatcher: agent })
    await until(() => trial.held.length === 1, 'the trial request')
    // Waiting in queue: every eligible server is at its maxConns limit.
    const waiter = get(`${proxy.url}/queued/${setting}`, { dispatcher: agent })
    await until(() => group().queue?.length === 1, 'the queued request')
    t.equal(peer('trial').passive?.state, 'probing', `${setting}: the trial request is running`)
    const before = { group: group(), peers: new Map(group().peers.map((p) => [p.address, { peer: p, pool: p.pool, passive: p.passive, rtt: p.rtt }])), retry: group().retry, balancer: group().balancer, queue: group().queue }
    const warned = lines.filter((l) => l['msg'] === 'these settings change at the next restart').length
    writeConfig(proxy.file, config(row.change(base, world)))
    const result = await proxy.vigil.reload('api')
    t.equal(result.ok, true, `${setting}: the reload applies (${result.error ?? ''})`)
    const after = group()
    const kept = (name: keyof typeof addresses): boolean => after.find(addresses[name]) === before.peers.get(addresses[name])?.peer
    const rule = row.rule
    const failures: string[] = []
    const expect = (ok: boolean, what: string): void => void (ok || failures.push(what))
    // Every generation is a new immutable group over the same lasting state: its events, monitor and wait queue,
    // and each kept server's state holder.
    expect(after !== before.group, 'the reload built a new generation of the group')
    expect(after.monitor === before.group.monitor && after.group === before.group.group, 'the group keeps its monitor and events')
    expect(before.group.select([]) === undefined || after.peers.includes(before.group.select([]) as Peer), 'the replaced generation picks from the live servers')
    for (const name of ['trial', 'ramping', 'checkDown', 'draining'] as const) expect(kept(name), `${name} keeps its state holder`)
    if (rule !== 'new-server') expect(kept('steady'), 'steady keeps its state holder')
    // Ejected: kept unless passive accounting starts afresh.
    if (rule === 'passive-afresh') expect(peer('ejected').passive?.state === 'ok' && peer('ejected').passiveOk, 'the ejected server is back in rotation')
    else expect(peer('ejected').passive?.state === 'ejected' && !peer('ejected').passiveOk, 'the ejected server stays ejected')
    // In trial: the running trial keeps its state machine (its answer decides), unless accounting starts afresh:
    // then the server is back in rotation at once and the trial's answer counts for nothing.
    if (rule === 'passive-afresh') expect(peer('trial').passive !== before.peers.get(addresses.trial)?.passive && peer('trial').passive?.state === 'ok' && peer('trial').passiveOk, 'the server in trial is back in rotation')
    else expect(peer('trial').passive === before.peers.get(addresses.trial)?.passive && peer('trial').passive?.state === 'probing' && !peer('trial').passiveOk, 'the trial is still running')
    // Waiting in queue: the queue is the group's, so the waiter stays in it; it is admitted at the swap only when
    // the new generation has room (servers back in rotation, a new server), otherwise when a held request ends.
    const room = rule === 'passive-afresh' || rule === 'new-server'
    expect(after.queue === before.queue, 'the same wait queue')
    expect(after.queue?.length === (room ? 0 : 1), room ? 'the waiter is admitted at the swap (the new generation has room)' : 'the waiter is still queued')
    expect(peer('ramping').effectiveWeight < peer('ramping').weight, 'the ramp goes on')
    if (rule === 'ramp-continues') expect(after.slowStart.window === 30 * 60_000 && after.slowStart.active > 0, 'the new window carries the ramp')
    expect(peer('checkDown').checkUp === false, 'the server down by check stays down')
    expect(peer('draining').operator === 'draining', 'the draining server stays draining')
    const pools = rule === 'new-pools'
    for (const name of ['trial', 'ramping', 'checkDown', 'draining'] as const) expect((peer(name).pool !== before.peers.get(addresses[name])?.pool) === pools, pools ? `${name} has a new pool` : `${name} keeps its pool`)
    if (pools && setting.startsWith('tls.')) expect(after.peers.every((p) => p.origin.startsWith('https://')), 'the whole group connects with TLS')
    if (rule === 'retuned') expect(after.peers.every((p) => p.rtt.decay === 3_000 && p.rtt === before.peers.get(p.address)?.rtt), 'every estimate is retuned in place')
    // A setting that applies is not announced as waiting for a restart.
    if (rule !== 'restart-only') expect(lines.filter((l) => l['msg'] === 'these settings change at the next restart').length === warned, 'no restart warning')
    if (rule === 'restart-only') {
      expect(lines.filter((l) => l['msg'] === 'these settings change at the next restart').length === warned + 1, 'the restart warning names it')
      expect(after.queue === before.queue, 'applied to nothing')
    }
    if (rule === 'kept' && setting.startsWith('retry.')) expect(after.retry !== before.retry, 'a new retry policy')
    if (rule === 'server-in-place' && setting !== 'servers.resolve') {
      const p = peer('ejected')
      const field = setting.slice('servers.'.length)
      const value = { weight: p.weight === 3, backup: p.backup, down: p.configDown, maxConns: p.maxConns === 7 }[field]
      expect(value === true, `the server's ${field} changed in place`)
    }
    if (rule === 'new-server') expect(after.find(addresses.steady) === undefined && after.find(addresses.spare) !== undefined, 'the old address left, the new one came')
    t.same(failures, [], `${setting} (${rule})`)

    // The trial across the swap is answered; its success restores the server (counted by the state it ran under;
    // afresh, it already was back). Then the requests in flight across the swap finish with their answers.
    for (const r of trial.held.splice(0)) r.end('released')
    const trialAnswer = await trialRequest
    t.equal(trialAnswer.status, 200, `${setting}: the trial request is answered`)
    await until(() => peer('trial').passive?.state === 'ok' && peer('trial').passiveOk, `${setting}: the server in trial is back`)
    for (const h of holders) for (const r of h.held.splice(0)) r.end('released')
    const answers = await Promise.all(inFlight)
    const bad = answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${String(a.headers['x-vigil-error'] ?? '')} ${a.body}`)
    t.same(bad, [], `${setting}: the requests in flight are answered`)
    // The waiter leaves the queue under the live generation's settings: where those are TLS or HTTP/2, which these
    // plain HTTP/1.1 providers do not speak, its failure proves it went through the new pools.
    const queued = await waiter
    const newProtocol = setting.startsWith('tls.') || setting === 'protocol'
    if (!newProtocol) t.equal(queued.status, 200, `${setting}: the waiter is answered (${String(queued.headers['x-vigil-error'] ?? '')} ${queued.body})`)
    else t.match({ status: queued.status, code: queued.headers['x-vigil-error'] }, { status: 502, code: setting === 'protocol' ? String : 'tls_failed' }, `${setting}: the waiter went through the new pools (${String(queued.headers['x-vigil-error'])})`)
    if (newProtocol) {
      // Its failures ejected servers: new passive settings for a moment start accounting afresh.
      writeConfig(proxy.file, config({ ...base, passive: { ...base.passive, ejectAtLeastOne: false } }))
      t.equal((await proxy.vigil.reload('api')).ok, true, `${setting}: passive accounting afresh`)
    }
    writeConfig(proxy.file, config(base))
    t.equal((await proxy.vigil.reload('api')).ok, true, `${setting}: back to the base file`)
  }
})
