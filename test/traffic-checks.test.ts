// Traffic-aware checks (active.trafficInterval): the rule (skipCheck), the checker's schedule on a fake clock
// against a real TCP listener, and end to end with real providers: a server with traffic is checked far less
// than one without, counted at the providers.
import t from 'tap'
import { mock } from 'node:test'
import { createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { ActiveChecker, RateWindow, skipCheck, type CheckTarget } from '../src/health/active.js'
import { resolveCheck } from '../src/health/check-spec.js'
import { HealthEvents } from '../src/health/events.js'
import { RiseFall } from '../src/health/rise-fall.js'
import { Upstream } from '../src/upstream/upstream.js'
import type { Peer } from '../src/upstream/peer.js'
import { client, get, spawnProvider, startProxy, steadyGets, type Provider } from './helpers/index.js'
import { statusOf } from './helpers/health.js'
import { until } from './helpers/config-file.js'

const spec = resolveCheck({ type: 'tcp', interval: 1_000, trafficInterval: 10_000, downInterval: 5_000, jitter: 0, rise: 1, fall: 1 }, undefined)

t.test('skipCheck: only an up, settled server is left out, for standing by or for recent traffic', async (t) => {
  const up = new RiseFall(1, 1, false)
  up.record(true)
  const now = 100_000
  t.equal(skipCheck(spec, up, false, now - 5_000, now - 1_000, now), 'traffic', 'answered 5 s ago, checked 1 s ago')
  t.equal(skipCheck(spec, up, false, now - 5_000, now - 10_000, now), undefined, 'checked trafficInterval ago: due')
  t.equal(skipCheck(spec, up, false, now - 10_000, now - 1_000, now), undefined, 'last answer trafficInterval ago: not covered')
  t.equal(skipCheck(spec, up, false, 0, now - 1_000, now), undefined, 'never answered')
  t.equal(skipCheck(spec, up, false, now + 60_000, now - 1_000, now), undefined, 'a clock that went backwards checks')
  t.equal(skipCheck(resolveCheck({ interval: 1_000 }, undefined), up, false, now - 1, now - 1, now), undefined, 'without trafficInterval: never')
  t.equal(skipCheck(spec, up, true, 0, now - 1_000, now), 'standby')
  const down = new RiseFall(1, 1, false)
  down.record(false)
  t.equal(skipCheck(spec, down, true, now - 1, now - 1, now), undefined, 'down: checked, standby or not, traffic or not')
  const failing = new RiseFall(2, 3, false)
  failing.record(true)
  failing.record(false)
  t.equal(failing.changing, true)
  t.equal(skipCheck(spec, failing, false, now - 1, now - 1, now), undefined, 'changing: its fastInterval')
  t.equal(skipCheck(spec, failing, true, now - 1, now - 1, now), 'standby', 'changing but standing by: checked when it comes back')
})

t.test('RateWindow: events per second over the sliding window', async (t) => {
  const r = new RateWindow(60_000, 0)
  for (let s = 0; s < 60; s++) r.add(s * 1_000)
  t.equal(r.perSecond(59_999), 1)
  t.equal(r.perSecond(90_000), 0.5, 'half the previous minute still in the window')
  t.equal(r.perSecond(200_000), 0, 'nothing for two minutes')
})

/** Let real I/O happen while timers are fake: yield to the event loop until `cond`. */
async function ioUntil(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 100_000 && !cond(); i++) await new Promise((r) => setImmediate(r))
  if (!cond()) throw new Error('condition never held')
}

t.test('the schedule on a fake clock: interval without traffic, trafficInterval with it, back when it stops; down keeps its interval; standby is left out', async (t) => {
  const sockets = new Set<Socket>()
  const server: Server = createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.destroy()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 })
  t.teardown(() => mock.timers.reset())
  const random = mock.method(Math, 'random', () => 0.5)
  t.teardown(() => random.mock.restore())

  const upstream = new Upstream('api', { servers: [{ address }], active: { type: 'tcp', interval: 1_000, trafficInterval: 10_000, downInterval: 5_000, jitter: 0, rise: 1, fall: 1 } })
  t.teardown(() => upstream.close())
  const checker = new ActiveChecker(new Map([['api', upstream]]), { events: new HealthEvents(), log: pino({ level: 'silent' }) })
  t.teardown(() => checker.stop())
  const peer = upstream.peers[0] as Peer
  const target = checker.stateOf(peer) as CheckTarget
  checker.start()
  mock.timers.tick(0)
  await ioUntil(() => target.checks === 1)
  t.equal(peer.checkUp, true)

  /** `seconds` of fake time, one second at a time (`each` runs before every second); the checks in that time. */
  async function run(seconds: number, each: () => void = () => {}): Promise<number> {
    const before = target.checks
    for (let s = 0; s < seconds; s++) {
      each()
      mock.timers.tick(1_000)
      await ioUntil(() => !target.running)
    }
    return target.checks - before
  }
  const traffic = (): void => {
    peer.lastAnswered = Date.now()
  }

  t.equal(await run(20), 20, 'no traffic: one check per interval')
  const withTraffic = await run(40, traffic)
  t.ok(withTraffic >= 3 && withTraffic <= 5, `traffic answered every second: ${withTraffic} checks in 40 s, one per trafficInterval`)
  t.ok(target.skipped.traffic >= 35, `${target.skipped.traffic} due checks left out for traffic`)
  // Traffic stops: its last answer covers the server for trafficInterval, then every interval again.
  const covered = await run(10)
  t.ok(covered <= 2, `the 10 s after the last answer: ${covered} checks`)
  t.equal(await run(10), 10, 'uncovered: one check per interval again')

  // Down: every downInterval, never left out, even with answers still recorded (the rule reads the state first).
  server.close()
  for (const s of sockets) s.destroy()
  await run(2)
  t.equal(peer.checkUp, false, 'refused: down by check (fall 1)')
  t.equal(await run(20, traffic), 4, 'down: one check per downInterval (5 s) in 20 s, traffic or not')
  const skippedDown = target.skipped.traffic

  // A standby server (outside a subset's rotation) that is down keeps being checked; once up it is left out.
  peer.standby = true
  t.equal(await run(10), 2, 'standby but down: still every downInterval')
  t.equal(target.skipped.traffic, skippedDown)
  const back: Server = createServer((s) => s.destroy())
  await new Promise<void>((r) => back.listen(Number(address.split(':')[1]), '127.0.0.1', r))
  t.teardown(() => back.close())
  await run(5)
  t.equal(peer.checkUp, true, 'up again')
  // (Its group has no subset, so the refresh of its flip cleared the flag this test set by hand.)
  peer.standby = true
  const skips = target.skipped.standby
  t.equal(await run(20), 0, 'up and standing by: no checks')
  t.equal(target.skipped.standby - skips, 20, 'each due check counted as left out')
})

/** Checks a provider received, from its own side. */
async function healthz(p: Provider): Promise<number> {
  return (JSON.parse((await get(`http://${p.address}/_control`)).body) as { healthz: number }).healthz
}

t.test('end to end: a server with traffic gets (almost) no checks while one without gets them every interval', async (t) => {
  const [busy, idle] = await Promise.all([spawnProvider(t, 'busy'), spawnProvider(t, 'idle')])
  const active = { type: 'http' as const, interval: '100ms', trafficInterval: '1h', rise: 1, fall: 3, http: { path: '/healthz' } }
  const proxy = await startProxy(t, {
    listeners: [
      { address: '127.0.0.1:0', upstream: 'busy' },
      { address: '127.0.0.1:0', upstream: 'idle' },
    ],
    upstreams: { busy: { servers: [{ address: busy.address }], active }, idle: { servers: [{ address: idle.address }], active } },
  })
  await until(async () => (await healthz(busy)) >= 1 && (await healthz(idle)) >= 1, 'both checked at start')
  const load = steadyGets(proxy.url, client(t), 2)
  t.teardown(() => load.stop())
  const peer = proxy.vigil.upstreams.get('busy')?.peers[0] as Peer
  await until(() => peer.lastAnswered > 0, 'the busy server answered a request')
  const busyBefore = await healthz(busy)
  const idleBefore = await healthz(idle)
  await until(async () => (await healthz(idle)) >= idleBefore + 20, 'twenty checks of the idle server')
  const busyChecks = (await healthz(busy)) - busyBefore
  await load.stop()
  t.ok(load.statuses.length > 0 && load.statuses.every((s) => s === 200), `${load.statuses.length} requests, all answered`)
  t.ok(busyChecks <= 1, `while the idle server got 20 checks, the busy one got ${busyChecks} (at most one already due)`)
  const rows = await statusOf(proxy.admin)
  const row = (name: string) => rows.find((r) => r.upstream === name)
  t.ok((row('busy')?.checksSkipped.traffic ?? 0) >= 10, `busy: ${row('busy')?.checksSkipped.traffic} checks left out for traffic`)
  t.equal(row('idle')?.checksSkipped.traffic, 0)
  t.ok((row('idle')?.probeRate ?? 0) > (row('busy')?.probeRate ?? 0), `probes/s: idle ${row('idle')?.probeRate}, busy ${row('busy')?.probeRate}`)
  const metrics = (await get(`${proxy.admin}/metrics`)).body
  t.match(metrics, new RegExp(`vigil_check_skips_total\\{server="${busy.address}",type="http",reason="traffic"\\} [1-9]`))
})
