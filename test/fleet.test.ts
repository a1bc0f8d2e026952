// Shared observations end to end: a fleet of three real vigils (in-process, each with its own etcd client and
// lease), a real etcd started here, real providers on loopback. The rules: a quorum of other vigils ejects a
// server at a vigil with no traffic of its own to it; a failure enough others report is not written again until
// they are too few; a vigil whose own requests succeed ignores the quorum; the
// ejection cap holds over shared evidence; an observer's records go with it (clean stop: at once; SIGKILL: when
// its lease runs out); with the registry stopped, nothing healthy changes.
import t from 'tap'
import { join } from 'node:path'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Etcd3 } from 'etcd3'
import type { Config, Vigil } from '../src/index.js'
import type { HealthEvent } from '../src/health/events.js'
import type { FleetStatus } from '../src/fleet/fleet.js'
import { client, get, httpServer, startProxy } from './helpers/index.js'
import { startCli } from './helpers/cli.js'
import { proxyConfig, tempDir, until, writeConfig } from './helpers/config-file.js'
import { waitFor } from './helpers/wait.js'
import { startEtcd } from './helpers/registries.js'
import { echoClient, spawnGrpcProvider, type EchoClient } from './helpers/grpc.js'

type Tap = Parameters<typeof httpServer>[0]
type Upstream = Config['upstreams'][string]
type FleetConfig = NonNullable<Config['fleet']>

const etcd = await startEtcd(t)
const kv = new Etcd3({ hosts: etcd.endpoint })
t.teardown(() => kv.close())
const registry = { etcd: { endpoints: [etcd.endpoint], resyncInterval: '1s', connectTimeout: '2s' } }

let n = 0
/** Each test its own fleet path, so fleets of different tests never see each other. */
const fleetAt = (): ((id: string, extra?: Partial<FleetConfig>) => FleetConfig) => {
  const path = `/vigil/fleet${++n}`
  return (id, extra = {}) => ({ registry, path, id, ttl: '2s', quorum: 2, window: '30s', writeJitter: '20ms', writeRate: 50, ...extra })
}

/** A provider: answers 200 (503 to requests carrying `x-fail` when `marked`); /healthz answers `health()`. */
async function provider(tt: Tap, health: () => number = () => 200, marked = false): Promise<string> {
  return (
    await httpServer(tt, (req: IncomingMessage, res: ServerResponse) => {
      if (req.url === '/healthz') res.writeHead(health()).end()
      else res.writeHead(marked && req.headers['x-fail'] !== undefined ? 503 : 200).end('ok')
    })
  ).address
}

interface Member {
  vigil: Vigil
  url: string
  admin: string
  events: HealthEvent[]
}

async function member(tt: Tap, upstream: Upstream, fleet: FleetConfig): Promise<Member> {
  const { vigil, url, admin } = await startProxy(tt, { upstreams: { api: upstream }, fleet })
  const events: HealthEvent[] = []
  vigil.events.on('health', (e) => void events.push(e))
  return { vigil, url, admin, events }
}

const peer = (m: Member, address: string): NonNullable<ReturnType<NonNullable<ReturnType<Vigil['upstreams']['get']>>['find']>> =>
  m.vigil.upstreams.get('api')?.find(address) as NonNullable<ReturnType<NonNullable<ReturnType<Vigil['upstreams']['get']>>['find']>>
const fleetRow = (m: Member, address: string): FleetStatus['upstreams'][string][number] | undefined =>
  m.vigil.fleet?.status().upstreams['api']?.find((s) => s.server === address)

/** Passive only, one failure ejects for an hour: an ejection stays until the test lifts it. */
const passiveOnly = (servers: string[]): Upstream => ({
  servers: servers.map((address) => ({ address })),
  passive: { maxFails: 1, failTimeout: '1h', failOn: ['error', 'timeout', 'http_503'], recoveryProbe: false },
  retry: { tries: 1 },
})

/** Requests through `m` until `done`, with `x-fail` when `fail`. */
async function traffic(m: Member, done: () => boolean, fail: boolean): Promise<void> {
  const agent = client(t)
  await waitFor(() => {
    void get(m.url, { dispatcher: agent, headers: fail ? { 'x-fail': '1' } : {} })
    return done()
  }, 20_000)
}

/** Three vigils a, b, c of one fleet, passive only, in front of a good provider and one that fails marked requests. */
async function trio(tt: Tap): Promise<{ good: string; bad: string; members: [Member, Member, Member] }> {
  const fleet = fleetAt()
  const [good, bad] = [await provider(tt), await provider(tt, undefined, true)]
  const group = passiveOnly([good, bad])
  const members: [Member, Member, Member] = [await member(tt, group, fleet('a')), await member(tt, group, fleet('b')), await member(tt, group, fleet('c'))]
  await waitFor(() => members.every((m) => m.vigil.fleet?.consumers.view.count === 3))
  return { good, bad, members }
}

t.test('a quorum of other vigils ejects a server at a vigil with no traffic of its own; the ejection ends with the quorum', async (t) => {
  const { good, bad, members: [a, b, c] } = await trio(t)
  // a and b see `bad` fail (their requests carry x-fail; round robin sends some to `bad`): each ejects it.
  await traffic(a, () => peer(a, bad).passive?.state === 'ejected', true)
  await traffic(b, () => peer(b, bad).passive?.state === 'ejected', true)
  await waitFor(() => peer(c, bad).passive?.state === 'ejected', 20_000)
  t.equal(peer(c, bad).passive?.ejection()?.reason, 'fleet_quorum', 'c ejected it on the fleet word')
  t.ok(peer(c, good).eligible, 'the healthy server stays in rotation')
  const row = fleetRow(c, bad)
  t.same(row?.observers.map((o) => [o.observer, o.event]).sort(), [['a', 'ejected'], ['b', 'ejected']], 'the status shows who said what')
  t.equal(row?.decision, 'ejected')
  const status = JSON.parse((await get(`${c.admin}/status?format=json`)).body) as { servers: { server: { name: string; fleetObservers: number; fleetDecision: string; ejectionReason: string }[] }; fleet: FleetStatus }
  t.match(status.servers.server.find((s) => s.name === bad), { fleetObservers: 2, fleetDecision: 'ejected', ejectionReason: 'fleet_quorum' })
  t.equal(status.fleet.count, 3)
  const html = (await get(`${c.admin}/status?format=html`)).body
  t.match(html, /<table id="fleet">/, 'the html page has the fleet table')
  t.match(html, new RegExp(`${bad.replace(/\./g, '\\.')}</td><td>2 of 2</td><td>ejected</td><td>a: ejected`), 'with who reported what and the decision')
  t.match((await get(`${c.admin}/metrics`)).body, new RegExp(`vigil_fleet_observers\\{upstream="api",server="${bad}"\\} 2`))
  t.match((await get(`${c.admin}/metrics`)).body, new RegExp(`vigil_fleet_quorum\\{upstream="api",server="${bad}"\\} 2`), 'the quorum per server')
  t.match((await get(`${c.admin}/metrics`)).body, /vigil_ejections_total\{upstream="api",server="[^"]+",reason="fleet_quorum"\} 1/)
  t.notOk(
    (await kv.getAll().prefix(`/vigil/fleet${n}/observations/api/`).keys()).some((k) => k.endsWith('@c')),
    'c does not echo an ejection it took on the fleet word',
  )
  // a stops cleanly: its lease is revoked, its report is gone, one observer is below the quorum.
  await a.vigil.stop(0)
  await waitFor(() => peer(c, bad).passive?.state === 'ok', 20_000)
  t.ok(c.events.some((e) => e.source === 'passive' && e.event === 'restored' && /fewer observers/.test(e.reason)), 'restored once the quorum is gone')
})

t.test('enough has been said: a failure that quorum + margin others report is not written again, until they are too few', async (t) => {
  const fleet = fleetAt()
  const [good, bad] = [await provider(t), await provider(t, undefined, true)]
  // localWindow 10m: the first requests of c and d keep their own traffic "recent", so the others' quorum makes them
  // suspect (their own detectors decide) and never ejects them on the fleet's word (which is not written: no echo).
  const members = await Promise.all(['a', 'b', 'c', 'd'].map((id) => member(t, passiveOnly([good, bad]), fleet(id, { localWindow: '10m' }))))
  await waitFor(() => members.every((m) => m.vigil.fleet?.consumers.view.count === 4))
  const [a, b, c, d] = members as [Member, Member, Member, Member]
  for (const m of [c, d]) await traffic(m, () => peer(m, bad).requests > 0, false)
  const key = (id: string): string => `/vigil/fleet${n}/observations/api/${encodeURIComponent(bad)}@${id}`
  // a, b and c see `bad` fail, one after the other: each sees at most two others report it (quorum 2 + margin 1 is
  // three), so each writes its record.
  for (const m of [a, b, c]) await traffic(m, () => peer(m, bad).passive?.state === 'ejected', true)
  await waitFor(() => fleetRow(d, bad)?.reporting === 3, 20_000)
  t.same(await Promise.all([a, b, c].map(async (m) => (await kv.get(key(m.vigil.fleet?.id ?? '')).string()) !== null)), [true, true, true], "a's, b's and c's records are in etcd")
  // d sees it fail too, on its own requests: three others already say so.
  await traffic(d, () => peer(d, bad).passive?.state === 'ejected', true)
  t.not(peer(d, bad).passive?.ejection()?.reason, 'fleet_quorum', "d ejected it on its own evidence, not on the fleet's word")
  await waitFor(() => d.vigil.fleet?.writer.status().suppressed === 1, 20_000)
  t.equal(await kv.get(key('d')).string(), null, "d's record is absent from etcd")
  const status = JSON.parse((await get(`${d.admin}/status?format=json`)).body) as { fleet: FleetStatus }
  t.match(status.fleet.writes, { suppressed: 1 }, 'the status shows the suppressed write')
  t.match((await get(`${d.admin}/metrics`)).body, /vigil_fleet_writes_total\{result="suppressed"\} 1/)
  t.match((await get(`${d.admin}/status?format=html`)).body, /1 suppressed/)
  // a stops: its lease is revoked and its record goes; d still sees the failure and two others are too few now.
  await a.vigil.stop(0)
  t.equal(d.vigil.fleet?.writer.status().written, 0, 'd has written nothing so far')
  await waitFor(() => d.vigil.fleet?.writer.status().written === 1, 20_000)
  const record = JSON.parse((await kv.get(key('d')).string()) as string) as { ejected: boolean; event: string }
  t.match(record, { ejected: true, event: 'ejected' }, 'd writes its record once the others are too few')
  t.equal(d.vigil.fleet?.writer.status().suppressed, 1, 'and that write was not suppressed')
})

t.test('local success wins: a vigil whose own requests to the server succeed ignores the quorum', async (t) => {
  const { bad: flaky, members: [a, b, c] } = await trio(t)
  // c's own requests (no x-fail) succeed on both servers all along.
  const agent = client(t)
  let stop = false
  const ok: number[] = []
  const load = (async () => {
    while (!stop) ok.push((await get(c.url, { dispatcher: agent })).status)
  })()
  await traffic(a, () => peer(a, flaky).passive?.state === 'ejected', true)
  await traffic(b, () => peer(b, flaky).passive?.state === 'ejected', true)
  await waitFor(() => fleetRow(c, flaky)?.reporting === 2, 20_000)
  await waitFor(() => fleetRow(c, flaky)?.decision === 'ignored', 20_000)
  t.ok(peer(c, flaky).eligible, 'still in rotation at c')
  t.equal(peer(c, flaky).effectiveWeight, peer(c, flaky).weight, 'at its full weight')
  t.ok(c.events.some((e) => e.source === 'fleet' && e.event === 'ignored'), 'the decision is an event')
  stop = true
  await load
  t.ok(ok.every((s) => s === 200), `every request through c succeeded (${ok.length})`)
})

t.test('a gRPC call that ends UNAVAILABLE (under HTTP 200) is no local success: the quorum is not ignored', async (t) => {
  const fleet = fleetAt()
  const [good, flaky] = await Promise.all([spawnGrpcProvider(t, 'good'), spawnGrpcProvider(t, 'flaky')])
  await flaky.control('fail=14')
  const servers = [good, flaky].map((p) => ({ address: p.address }))
  // a and b eject flaky on their first failed call; c counts its own failures without ejecting on them.
  const grpcMember = async (id: string, maxFails: number): Promise<Member & { echo: EchoClient }> => {
    const passive = { maxFails, failTimeout: '1h', failOn: ['error' as const, 'timeout' as const, 'grpc_UNAVAILABLE' as const], recoveryProbe: false }
    const { vigil, url, admin, port } = await startProxy(t, {
      listeners: [{ address: '127.0.0.1:0', upstream: 'api', http2: true }],
      upstreams: { api: { protocol: 'h2c', servers, passive, retry: { tries: 1 } } },
      fleet: fleet(id, { localWindow: '10m' }),
    })
    const events: HealthEvent[] = []
    vigil.events.on('health', (e) => void events.push(e))
    return { vigil, url, admin, events, echo: echoClient(t, `127.0.0.1:${port}`) }
  }
  const [a, b, c] = [await grpcMember('a', 1), await grpcMember('b', 1), await grpcMember('c', 1_000)]
  await waitFor(() => [a, b, c].every((m) => m.vigil.fleet?.consumers.view.count === 3))
  const failedCalls = { a: 0, b: 0, c: 0 }
  const call = async (m: Member & { echo: EchoClient }, id: 'a' | 'b' | 'c'): Promise<void> => {
    await m.echo.say({ text: id }, 10_000).catch(() => void failedCalls[id]++)
  }
  // c calls all along (both servers; those to flaky end UNAVAILABLE), from before the quorum forms.
  let stop = false
  const load = (async () => {
    while (!stop) await call(c, 'c')
  })()
  t.teardown(() => void (stop = true))
  await until(() => failedCalls.c >= 2, 'c to fail on flaky')
  for (const [m, id] of [[a, 'a'], [b, 'b']] as const) await until(async () => (await call(m, id), peer(m, flaky.address).passive?.state === 'ejected'), `${id} to eject flaky`)
  await until(() => fleetRow(c, flaky.address)?.reporting === 2 && fleetRow(c, flaky.address)?.decision === 'suspect', 'c to suspect flaky on the quorum')
  stop = true
  await load
  t.notOk(c.events.some((e) => e.source === 'fleet' && e.event === 'ignored' && e.server === flaky.address), 'c never ignored the quorum')
  t.ok(peer(c, flaky.address).effectiveWeight < peer(c, flaky.address).weight, 'a suspect at a lowered weight at c')
})

t.test('the ejection cap holds over shared evidence', async (t) => {
  const fleet = fleetAt()
  // Both servers fail their checks at a and b; c has no check of its own and no traffic.
  const [x, y] = [await provider(t, () => 503), await provider(t, () => 503)]
  const checked: Upstream = { ...passiveOnly([x, y]), active: { type: 'http', interval: '200ms', fall: 1, rise: 1, http: { path: '/healthz' } } }
  const [a, b] = [await member(t, checked, fleet('a')), await member(t, checked, fleet('b'))]
  const c = await member(t, passiveOnly([x, y]), fleet('c'))
  await waitFor(() => [x, y].every((s) => fleetRow(c, s)?.reporting === 2), 20_000)
  await waitFor(() => [x, y].every((s) => fleetRow(c, s)?.decision !== 'none'), 20_000)
  const outcomes = [x, y].map((s) => fleetRow(c, s)?.decision).sort()
  t.same(outcomes, ['capped', 'ejected'], 'one ejected, the other held by the cap (50% of two)')
  t.equal([x, y].filter((s) => peer(c, s).eligible).length, 1, 'one server stays in rotation at c')
  t.ok(c.events.some((e) => e.source === 'passive' && e.event === 'capped' && /fleet_quorum/.test(e.reason)), 'the cap says it held')
  t.ok([a, b].every((m) => [x, y].every((s) => peer(m, s).checkUp === false)), 'the observers see both down by check')
})

t.test("an observer killed with SIGKILL: its reports vanish when its lease runs out, and the quorum with them", async (t) => {
  const fleet = fleetAt()
  const bad = await provider(t, () => 503)
  const good = await provider(t)
  const checked: Upstream = { ...passiveOnly([good, bad]), active: { type: 'http', interval: '200ms', fall: 1, rise: 1, http: { path: '/healthz' } } }
  const file = join(tempDir(t), 'vigil.json')
  writeConfig(file, { ...proxyConfig([]), upstreams: { api: checked }, fleet: fleet('killed') })
  const cli = startCli(t, ['start', '--config', file])
  const a = await member(t, checked, fleet('a'))
  const c = await member(t, passiveOnly([good, bad]), fleet('c'))
  await waitFor(() => fleetRow(c, bad)?.reporting === 2, 20_000)
  await waitFor(() => peer(c, bad).passive?.state === 'ejected', 20_000)
  const key = `/vigil/fleet${n}/observations/api/${encodeURIComponent(bad)}@killed`
  process.kill(-(cli.child.pid as number), 'SIGKILL')
  await cli.exited
  t.not(await kv.get(key).string(), null, 'the report outlives the kill (its lease has not run out yet)')
  await waitFor(() => fleetRow(c, bad)?.reporting === 1, 20_000)
  t.equal(await kv.get(key).string(), null, 'etcd deleted it with the lease')
  await waitFor(() => peer(c, bad).passive?.state === 'ok', 20_000)
  t.ok(peer(a, bad).checkUp === false, 'the surviving observer still reports it')
})

t.test('the registry stopped: nothing healthy changes, and the fleet carries on when it is back', async (t) => {
  const fleet = fleetAt()
  const [p1, p2, p3] = [await provider(t), await provider(t), await provider(t)]
  const base = passiveOnly([p1, p2, p3])
  // Stall detection off: three vigils, their providers and etcd's restart share this process and two cores, and a
  // starved event loop once made a 1 ms provider look stalled here; what this test judges is the registry outage.
  const checked: Upstream = {
    ...base,
    passive: { ...base.passive, stall: { enabled: false } },
    active: { type: 'http', interval: '200ms', fall: 1, rise: 1, http: { path: '/healthz' } },
  }
  const members = [await member(t, checked, fleet('a')), await member(t, checked, fleet('b')), await member(t, checked, fleet('c'))]
  await waitFor(() => members.every((m) => m.vigil.fleet?.consumers.view.count === 3))
  const before = members.map((m) => m.events.length)
  const agents = members.map(() => client(t))
  await etcd.kill()
  t.teardown(() => (etcd.running ? undefined : etcd.start()))
  // Three resync intervals without the registry, with traffic through every vigil.
  const statuses: number[] = []
  const left = new Set<string>()
  const until = Date.now() + 3_500
  while (Date.now() < until) {
    statuses.push(...(await Promise.all(members.map((m, i) => get(m.url, { dispatcher: agents[i] }).then((r) => r.status)))))
    for (const m of members) for (const p of [p1, p2, p3]) if (!peer(m, p).eligible) left.add(`${p} at ${m.vigil.fleet?.id ?? ''}`)
  }
  t.same([...left], [], 'no server left rotation anywhere during the outage')
  t.ok(statuses.every((s) => s === 200), `${statuses.length} requests during the outage, all 200`)
  t.ok(members.every((m) => [p1, p2, p3].every((p) => peer(m, p).eligible)), 'every server still in rotation at every vigil')
  t.same(
    members.map((m, i) => m.events.slice(before[i]).filter((e) => e.event === 'ejected' || e.event === 'down' || e.event === 'suspect')),
    [[], [], []],
    'no ejection, no check down, no suspicion',
  )
  t.ok(members.every((m) => m.vigil.fleet?.consumers.view.count === 3), 'every vigil keeps the last consumer list')
  await etcd.start()
  await waitFor(() => members.every((m) => m.vigil.fleet?.status().sources.every((s) => s.connected)), 30_000)
  t.same((await kv.getAll().prefix(`/vigil/fleet${n}/consumers/`).keys()).sort().map((k) => k.split('/').pop()), ['a', 'b', 'c'], 'registrations are there again')
})

t.test('suspect: a vigil whose own recent requests failed checks the server at once, then at the fast interval, at a lower weight', async (t) => {
  const fleet = fleetAt()
  const [good, bad] = [await provider(t), await provider(t, undefined, true)]
  const group = passiveOnly([good, bad])
  const [a, b] = [await member(t, group, fleet('a')), await member(t, group, fleet('b'))]
  // c needs five failures to eject, and checks (passing: the provider answers /healthz) every hour.
  const lenient: Upstream = {
    ...group,
    passive: { ...group.passive, maxFails: 5 },
    active: { type: 'http', interval: '1h', fastInterval: '100ms', rise: 1, fall: 5, http: { path: '/healthz' } },
  }
  // c's own failure must stay "recent" while a and b eject (each may take seconds on a loaded machine): with the
  // default 10 s localWindow it once aged out, and c, then without traffic of its own, ejected on the fleet word.
  const c = await member(t, lenient, fleet('c', { localWindow: '10m' }))
  await traffic(c, () => peer(c, bad).failures > 0, true)
  await traffic(a, () => peer(a, bad).passive?.state === 'ejected', true)
  await traffic(b, () => peer(b, bad).passive?.state === 'ejected', true)
  await waitFor(() => fleetRow(c, bad)?.decision === 'suspect', 20_000)
  t.equal(peer(c, bad).effectiveWeight, peer(c, bad).weight * 0.1, 'weight lowered to suspectWeight (10%)')
  const checks = c.vigil.checker.stateOf(peer(c, bad))?.checks ?? 0
  await waitFor(() => (c.vigil.checker.stateOf(peer(c, bad))?.checks ?? 0) >= checks + 3, 20_000)
  t.pass('checked again and again although its interval is an hour')
  t.ok(peer(c, bad).passive?.state === 'ok', 'its own detector decides: still in rotation')
  await a.vigil.stop(0)
  await waitFor(() => fleetRow(c, bad)?.decision === 'none', 20_000)
  t.equal(peer(c, bad).effectiveWeight, peer(c, bad).weight, 'full weight again once the quorum is gone')
  t.equal(c.vigil.checker.stateOf(peer(c, bad))?.hurried, false, 'and its interval')
})

t.test('shared checks: each server is probed by k consumers, the others take their results', async (t) => {
  const fleet = fleetAt()
  let failing = false
  const servers = await Promise.all([0, 1, 2, 3, 4, 5].map(() => provider(t)))
  const sick = await provider(t, () => (failing ? 503 : 200))
  const all = [...servers, sick]
  const checked: Upstream = { ...passiveOnly(all), passive: { maxFails: 0 }, active: { type: 'http', interval: '200ms', fall: 1, rise: 1, http: { path: '/healthz' } } }
  const members = await Promise.all(['a', 'b', 'c'].map((id) => member(t, checked, fleet(id, { shareChecks: { k: 2 }, quorum: 5 }))))
  await waitFor(() => members.every((m) => m.vigil.fleet?.consumers.view.count === 3))
  // Every target is probed by exactly two of the three (k = 2: both must say down for the third to take their word).
  const probedBy = (address: string): string[] => members.filter((m) => fleetRow(m, address)?.probedHere === true).map((m) => m.vigil.fleet?.id ?? '')
  t.same(all.map((s) => probedBy(s).length), all.map(() => 2), 'two checkers per server')
  const checks = (m: Member, address: string): number => m.vigil.checker.stateOf(peer(m, address))?.checks ?? 0
  // Until the others joined, each vigil was a smaller fleet and probed more (a probe it started then may still
  // be finishing): look from the moment every checker has run a few checks since.
  const settle = (): Promise<void> => {
    const from = members.map((m) => all.map((s) => checks(m, s)))
    return waitFor(() => all.every((s, j) => members.some((m, i) => checks(m, s) >= (from[i]?.[j] ?? 0) + 3)))
  }
  await settle()
  const at = members.map((m) => all.map((s) => checks(m, s)))
  await settle()
  t.same(
    all.filter((s, j) => members.some((m, i) => fleetRow(m, s)?.probedHere === false && checks(m, s) !== at[i]?.[j])),
    [],
    'the others do not probe it',
  )
  t.same(members.map((m) => m.vigil.fleet?.status().checks.probed).reduce((x, y) => (x ?? 0) + (y ?? 0), 0), 2 * all.length, 'the probes add up to k per server')
  failing = true
  await waitFor(() => members.every((m) => peer(m, sick).checkUp === false), 20_000)
  const checkers = probedBy(sick)
  t.ok(
    // On both checkers' word, or by its own check if it came due while only one of them had said so (verifying).
    members.filter((m) => !checkers.includes(m.vigil.fleet?.id ?? '')).every((m) => m.events.some((e) => e.source === 'active' && e.event === 'down')),
    'the other took it down too',
  )
  failing = false
  await waitFor(() => members.every((m) => peer(m, sick).checkUp), 20_000)
  t.match((await get(`${members[0]?.admin}/metrics`)).body, /vigil_fleet_checked_servers\{role="shared"\} [0-9]/)
})
