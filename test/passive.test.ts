// State-machine unit tests for passive health (fake clock), one block per ejection mode, plus the cap,
// fail-open, growth/decay of the ejection time, and stall suspicion.
import t from 'tap'
import { mock } from 'node:test'
import { EventEmitter } from 'node:events'
import { Upstream } from '../src/upstream/upstream.js'
import type { Upstream as UpstreamConfig } from '../src/config/schema.js'
import type { Peer } from '../src/upstream/peer.js'
import { passiveLink } from '../src/health/passive.js'
import { Role } from '../src/health/ejection.js'
import type { Waiting } from '../src/health/stall.js'
import type { HealthEvent } from '../src/health/passive-events.js'
import { HealthEvents } from '../src/health/events.js'
import { ActiveChecker } from '../src/health/active.js'
import { statusRows, type ServerStatus } from '../src/admin/status.js'
import { silent } from './helpers/index.js'
import { classifyError, FailureSet, httpFailure, type Failure } from '../src/health/outcome.js'
import { NginxDetector } from '../src/health/eject/nginx.js'
import { ConsecutiveDetector } from '../src/health/eject/consecutive.js'
import { WindowDetector } from '../src/health/eject/window.js'
import { RateDetector } from '../src/health/eject/rate.js'
import { parseConfig } from '../src/config/load.js'
import type { ConfigError } from '../src/config/errors.js'

const REFUSED = classifyError({ code: 'ECONNREFUSED' })

function fakeClock(t: Tap): void {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 })
  t.teardown(() => mock.timers.reset())
}
type Tap = { teardown(fn: () => unknown): void }
const tick = (ms: number): void => mock.timers.tick(ms)

/**
 * An upstream of `n` peers (nothing listens: these tests never send traffic). Recovery probes are off unless
 * asked for: with them, nothing listening would keep every ejection closed (see test/recovery.test.ts).
 */
function group(t: Tap, n: number, extra: Partial<Omit<UpstreamConfig, 'servers'>> = {}): { u: Upstream; events: HealthEvent[] } {
  const servers = Array.from({ length: n }, (_, i) => ({ address: `127.0.0.1:${10_001 + i}` }))
  const u = new Upstream('api', { servers, ...extra, passive: { recoveryProbe: false, ...extra.passive } })
  const events: HealthEvent[] = []
  u.on('health', (e: HealthEvent) => events.push(e))
  t.teardown(() => u.close())
  return { u, events }
}

function waiting(): Waiting {
  return { started: Date.now(), role: Role.Normal, prevWaiting: undefined, nextWaiting: undefined, waitingOn: undefined, stalled() {} }
}

/** One request to `peer`, finished at once with `failure` (undefined: success). */
function hit(u: Upstream, peer: Peer, failure?: Failure): Role {
  const w = waiting()
  u.passive.dispatched(peer, w, Date.now())
  u.passive.settled(peer, w, failure, true, Date.now())
  return w.role
}

const peer = (u: Upstream, i: number): Peer => u.peers[i] as Peer
const kinds = (events: HealthEvent[]): string[] => events.map((e) => `${e.kind}${e.peer === undefined ? '' : ` ${e.peer.slice(-1)}`}`)
/** Which peers the balancer hands out over `n` picks. */
function picks(u: Upstream, n: number): Set<string> {
  const seen = new Set<string>()
  for (let i = 0; i < n; i++) {
    const p = u.select([])
    if (p !== undefined) seen.add(p.address)
  }
  return seen
}

t.test('detectors', async (t) => {
  t.test('nginx: failures add up (no window) until a success more than failTimeout after the last failure', async (t) => {
    const d = new NginxDetector(3, 10_000)
    t.equal(d.record(true, 0), false)
    t.equal(d.record(true, 20_000), false, 'spread far apart, still counted')
    t.equal(d.record(false, 25_000), false, 'a success within failTimeout of the last failure clears nothing')
    t.equal(d.record(true, 40_000), true, 'third failure ejects')
    t.same(d.evidence(), { failures: 3, requests: 3, span: 40_000 })
    d.reset()
    t.equal(d.record(true, 50_000), false)
    t.equal(d.record(false, 60_001), false, 'a success after failTimeout clears the count')
    t.equal(d.record(true, 60_002), false)
    t.equal(d.record(true, 60_003), false)
    t.equal(d.record(true, 60_004), true)
  })

  t.test('consecutive: N in a row, any success restarts the count', async (t) => {
    const d = new ConsecutiveDetector(3)
    t.equal(d.record(true, 0), false)
    t.equal(d.record(true, 1), false)
    t.equal(d.record(false, 2), false)
    t.equal(d.record(true, 3), false)
    t.equal(d.record(true, 4), false)
    t.equal(d.record(true, 10), true)
    t.same(d.evidence(10), { failures: 3, requests: 3, span: 7 })
  })

  t.test('window: N failures within a true sliding window; successes do not erase them', async (t) => {
    const d = new WindowDetector(3, 1_000)
    t.equal(d.record(true, 0), false)
    t.equal(d.record(true, 500), false)
    t.equal(d.record(false, 600), false)
    t.equal(d.record(true, 1_200), false, 'the first failure slid out of the window')
    t.equal(d.record(true, 1_400), true, '500, 1200, 1400 are within 1000 ms')
    t.same(d.evidence(1_400), { failures: 3, requests: 3, span: 900 })
    d.reset()
    t.equal(d.record(true, 5_000), false)
  })

  t.test('rate: opossum opens over the failure percentage once the volume is reached', async (t) => {
    const calls: string[] = []
    const rotate = new EventEmitter()
    const d = new RateDetector(
      { ejectDuration: () => (calls.push('duration'), 5_000), breakerOpened: () => calls.push('open'), breakerHalfOpen: () => calls.push('half'), breakerClosed: () => calls.push('close') },
      { failPercent: 50, minRequests: 4, window: 10_000, rotate },
    )
    t.teardown(() => d.shutdown())
    d.record(false)
    d.record(true)
    d.record(true)
    await new Promise((r) => setImmediate(r))
    t.same(calls, [], 'below the volume threshold nothing happens')
    d.record(true)
    await new Promise((r) => setImmediate(r))
    t.same(calls, ['duration', 'open'], 'the duration is asked before the breaker starts its timer')
    t.match(d.evidence(), { failures: 3, requests: 4 })
    // Rotating every bucket out forgets the window.
    for (let i = 0; i < 10; i++) rotate.emit('rotate')
    t.match(d.evidence(), { failures: 0, requests: 0 })
  })
})

t.test('outcome sets: listed statuses only, and 403/404 never count against a provider', async (t) => {
  const passive = new FailureSet(['error', 'http_503', 'http_404', 'http_403'], true)
  t.ok(passive.has(REFUSED))
  t.notOk(passive.has(classifyError({ code: 'UND_ERR_HEADERS_TIMEOUT' })))
  t.ok(passive.hasStatus(503))
  t.notOk(passive.hasStatus(502))
  t.notOk(passive.hasStatus(404))
  t.notOk(passive.has(httpFailure(403)))
  const retry = new FailureSet(['timeout', 'invalid_header', 'http_404'], false)
  t.ok(retry.hasStatus(404), 'retry lists may name 404, as proxy_next_upstream does')
  t.ok(retry.has(classifyError({ code: 'HPE_INVALID_HEADER_TOKEN' })))
  t.ok(retry.has(classifyError({ code: 'UND_ERR_CONNECT_TIMEOUT' })))
  t.notOk(retry.has(REFUSED))
})

t.test('nginx mode: eject at maxFails, exactly one trial after failTimeout, restore or eject again', async (t) => {
  fakeClock(t)
  const { u, events } = group(t, 3, { passive: { maxFails: 2, failTimeout: '10s' } })
  const a = peer(u, 0)
  hit(u, a, REFUSED)
  t.ok(a.eligible, 'one failure of two')
  hit(u, a, REFUSED)
  t.notOk(a.eligible, 'ejected')
  t.notOk(picks(u, 20).has(a.address), 'an ejected peer is never picked')
  t.match(events.at(-1), { kind: 'ejected', peer: a.address, reason: 'max_fails', failure: 'connect_refused', duration: 10_000, evidence: { failures: 2 } })
  tick(9_999)
  t.notOk(a.eligible)
  tick(1)
  t.ok(a.eligible, 'ejection time over: its turn for a trial')
  t.equal(u.passive.snapshot()[0]?.state, 'trial')
  t.equal(hit(u, a, REFUSED), Role.Trial, 'the first request to it is the trial')
  t.notOk(a.eligible, 'a failed trial ejects again')
  t.match(events.at(-1), { kind: 'ejected', reason: 'trial_failed', failure: 'connect_refused', duration: 10_000 }, 'nginx mode does not grow the ejection by default')
  tick(10_000)
  const w = waiting()
  u.passive.dispatched(a, w, Date.now())
  t.equal(w.role, Role.Trial)
  t.notOk(a.eligible, 'while the trial is in flight nobody else gets the peer')
  t.notOk(picks(u, 20).has(a.address))
  u.passive.settled(a, w, undefined, false, Date.now())
  t.ok(a.eligible, 'an abandoned trial (client gone) lets another request try')
  t.equal(hit(u, a), Role.Trial)
  t.ok(a.eligible, 'a successful trial restores')
  t.same(kinds(events), ['ejected 1', 'trial 1', 'ejected 1', 'trial 1', 'trial 1', 'restored 1'])
  t.match(u.passive.snapshot()[0], { state: 'ok', ejections: 2, trials: 3 })
})

t.test('ejection cap, groups of one, maxFails 0', async (t) => {
  fakeClock(t)
  const { u, events } = group(t, 4)
  hit(u, peer(u, 0), REFUSED)
  hit(u, peer(u, 1), REFUSED)
  hit(u, peer(u, 2), REFUSED)
  hit(u, peer(u, 2), REFUSED)
  t.same(
    u.peers.map((p) => p.eligible),
    [false, false, true, true],
    'half of four may be ejected, the third stays in',
  )
  t.same(kinds(events), ['ejected 1', 'ejected 2', 'capped 3'], 'the capped peer is logged once until it succeeds')
  t.equal(u.passive.snapshot()[2]?.capped, 2, 'but counted every time')
  hit(u, peer(u, 2))
  hit(u, peer(u, 2), REFUSED)
  t.equal(events.at(-1)?.kind, 'capped')
  tick(10_000)
  hit(u, peer(u, 0))
  hit(u, peer(u, 2), REFUSED)
  t.notOk(peer(u, 2).eligible, 'room again once one was restored')

  const one = group(t, 1)
  hit(one.u, peer(one.u, 0), REFUSED)
  t.ok(peer(one.u, 0).eligible, 'a group of one never ejects')
  const off = group(t, 2, { passive: { maxFails: 0, maxEjectPercent: 100 } })
  hit(off.u, peer(off.u, 0), REFUSED)
  t.ok(peer(off.u, 0).eligible, 'maxFails 0 disables passive ejection')
})

t.test('fail open when nothing is eligible, or fail fast when configured', async (t) => {
  fakeClock(t)
  const { u, events } = group(t, 2, { passive: { maxEjectPercent: 100 } })
  hit(u, peer(u, 0), REFUSED)
  hit(u, peer(u, 1), REFUSED)
  t.equal(u.eligibleCount, 0)
  t.equal(picks(u, 4).size, 2, 'every non-down peer is tried rather than none')
  t.match(events.at(-1), { kind: 'no_eligible', peer: undefined, reason: /failing open/ })
  t.equal(hit(u, peer(u, 1)), Role.LastResort)
  t.ok(peer(u, 1).eligible, 'a success while failing open restores the peer')
  t.match(events.slice(-2), [{ kind: 'restored' }, { kind: 'eligible' }])
  hit(u, peer(u, 0), REFUSED)
  t.equal(hit(u, peer(u, 0), REFUSED), Role.LastResort, 'a failure while failing open changes nothing')

  // The older place of the setting (passive.failOpen) is still read.
  const fast = group(t, 2, { passive: { maxEjectPercent: 100, failOpen: false } })
  hit(fast.u, peer(fast.u, 0), REFUSED)
  hit(fast.u, peer(fast.u, 1), REFUSED)
  t.equal(fast.u.select([]), undefined, 'failOpen false: nothing to pick, the proxy answers 503')
  t.match(fast.events.at(-1), { kind: 'no_eligible', reason: /503/ })
})

t.test('ejection time grows with re-ejections, is capped and jittered, and decays while healthy', async (t) => {
  fakeClock(t)
  const { u, events } = group(t, 3, { passive: { mode: 'consecutive', maxFails: 1, ejectTime: '1s', maxEjectTime: '3s' } })
  const a = peer(u, 0)
  const durations: number[] = []
  u.on('health', (e: HealthEvent) => e.kind === 'ejected' && durations.push(e.duration as number))
  hit(u, a, REFUSED)
  for (let i = 0; i < 3; i++) {
    tick(4_000)
    t.equal(hit(u, a, REFUSED), Role.Trial)
  }
  t.equal(durations.length, 4)
  const within = (d: number, base: number): boolean => d >= base && d <= base * 1.1
  t.ok(within(durations[0] as number, 1_000), `first ${durations[0]}`)
  t.ok(within(durations[1] as number, 2_000), `second ${durations[1]}`)
  t.ok(within(durations[2] as number, 3_000), `third ${durations[2]}`)
  t.ok(within(durations[3] as number, 3_000), `capped at maxEjectTime ${durations[3]}`)
  tick(4_000)
  hit(u, a)
  t.equal(events.at(-1)?.kind, 'restored')
  tick(2_000) // two ejectTimes healthy: the multiplier drops from 4 to 2
  hit(u, a, REFUSED)
  t.ok(within(durations[4] as number, 3_000), `after decay ${durations[4]}`)
  t.equal(events.at(-1)?.multiplier, 3)
})

t.test('rate mode: the breaker opens, its half-open is the single trial, success closes it', async (t) => {
  fakeClock(t)
  const { u, events } = group(t, 3, { passive: { mode: 'rate', minRequests: 4, failPercent: 50, failTimeout: '10s', ejectTime: '2s' } })
  const a = peer(u, 0)
  hit(u, a)
  for (let i = 0; i < 3; i++) hit(u, a, REFUSED)
  await new Promise((r) => setImmediate(r))
  t.notOk(a.eligible, 'ejected at 75% over 4 requests')
  t.match(events.at(-1), { kind: 'ejected', reason: 'failure_rate', evidence: { failures: 3, requests: 4 } })
  tick(2_300)
  t.ok(a.eligible, 'half-open: its trial may go')
  t.equal(hit(u, a, REFUSED), Role.Trial)
  await new Promise((r) => setImmediate(r))
  t.notOk(a.eligible, 'trial failed: open again')
  t.match(events.at(-1), { kind: 'ejected', reason: 'trial_failed', multiplier: 2 })
  tick(4_500)
  t.equal(hit(u, a), Role.Trial)
  await new Promise((r) => setImmediate(r))
  t.ok(a.eligible)
  t.match(events.at(-1), { kind: 'restored' })

  // The cap closes the breaker again instead of ejecting.
  const r = group(t, 2, { passive: { mode: 'rate', minRequests: 2 } })
  for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) hit(r.u, peer(r.u, i), REFUSED)
  await new Promise((r) => setImmediate(r))
  t.same(
    r.u.peers.map((p) => p.eligible),
    [false, true],
  )
  t.match(r.events.at(-1), { kind: 'capped' })
})

t.test('stall: a peer whose oldest request waits far longer than the group p99 is suspected until it answers', async (t) => {
  fakeClock(t)
  const { u, events } = group(t, 3, { passive: { stall: { factor: 10, floor: '200ms' } } })
  const [a, b] = [peer(u, 0), peer(u, 1)]
  // History: the group answers in 30 ms.
  for (let i = 0; i < 50; i++) {
    const w = waiting()
    u.passive.dispatched(b, w, Date.now())
    tick(30)
    u.passive.responded(w, Date.now())
    u.passive.settled(b, w, undefined, true, Date.now())
  }
  const stuck = waiting()
  u.passive.dispatched(a, stuck, Date.now())
  tick(250)
  t.ok(a.eligible, '250 ms is under 10 x p99 (300 ms)')
  tick(100)
  t.notOk(a.eligible, 'suspected past 300 ms')
  t.match(events.at(-1), { kind: 'suspect', peer: a.address, evidence: { threshold: 300, p99: 30 } })
  t.equal(u.passive.snapshot()[0]?.stalls, 1)
  const second = waiting()
  u.passive.dispatched(a, second, Date.now())
  u.passive.responded(second, Date.now())
  tick(100)
  t.ok(a.eligible, 'a response clears the suspicion')
  t.match(events.at(-1), { kind: 'cleared', reason: 'responded again' })
  t.ok(stuck.waitingOn !== undefined, 'the request already waiting is not failed early')
  u.passive.settled(a, second, undefined, true, Date.now())
  tick(400)
  t.notOk(a.eligible, 'still nothing from it: suspected again')
  u.passive.vouch(a, Date.now())
  tick(100)
  t.ok(a.eligible, 'a passed active check clears it too')
  u.passive.settled(a, stuck, undefined, true, Date.now())
  t.equal(stuck.waitingOn, undefined)

  const off = group(t, 2, { passive: { stall: { enabled: false } } })
  const w = waiting()
  off.u.passive.dispatched(peer(off.u, 0), w, Date.now())
  tick(60_000)
  t.ok(peer(off.u, 0).eligible, 'stall detection can be turned off')
})

t.test('passiveLink: each passive state as the status page shows it; a check restores and vouches through it', async (t) => {
  fakeClock(t)
  const { u, events } = group(t, 3, { passive: { maxFails: 1, failTimeout: '10s' } })
  const [a, b] = [peer(u, 0), peer(u, 1)]
  const upstreams = new Map([['api', u]])
  const checker = new ActiveChecker(upstreams, { events: new HealthEvents(), log: silent })
  const rows = (): ServerStatus[] => statusRows({ upstreams: () => upstreams, generation: () => 1, checker, passive: () => passiveLink })
  t.match(rows()[0], { passive: 'ok', ejectionReason: null, ejectedUntil: null, ejections: 0 })
  hit(u, a, REFUSED)
  const until = Date.now() + 10_000
  t.match(rows()[0], { status: 'down', passive: 'ejected', ejectionReason: 'max_fails', ejectionFailure: 'connect_refused', ejectedUntil: new Date(until).toISOString(), ejections: 1 })
  t.same(passiveLink.ejection(a), { failure: 'error', reason: 'max_fails', until }, 'the failure class is what a check may disprove')
  tick(10_000)
  t.match(rows()[0], { status: 'up', passive: 'trial', ejectionReason: 'max_fails', ejectedUntil: null })
  const trial = waiting()
  u.passive.dispatched(a, trial, Date.now())
  t.match(rows()[0], { status: 'down', passive: 'trial' }, 'its trial request is running')
  passiveLink.restore(a, { check: 'http' })
  t.match(events.at(-1), { kind: 'restored', peer: a.address, reason: 'active check passed', evidence: { check: 'http' } })
  t.equal(passiveLink.ejection(a), undefined)
  u.passive.settled(a, trial, undefined, true, Date.now())
  t.equal(events.at(-1)?.kind, 'restored', 'the trial finishing later changes nothing')
  t.match(rows()[0], { status: 'up', passive: 'ok', ejectionReason: null, ejections: 1 })

  u.passive.dispatched(b, waiting(), Date.now())
  tick(300)
  t.match(rows()[1], { status: 'down', passive: 'suspect', stalls: 1 })
  passiveLink.vouch(b)
  t.match(events.at(-1), { kind: 'cleared', peer: b.address })
  t.match(rows()[1], { status: 'up', passive: 'ok', stalls: 1 })
  t.equal(passiveLink.snapshot(b)?.suspect, false)
})

t.test('config: passive and retry keys are validated with their JSON path', async (t) => {
  const doc = {
    listeners: [{ address: '127.0.0.1:1', upstream: 'a' }],
    upstreams: {
      a: {
        servers: [{ address: '127.0.0.1:2' }],
        passive: { mode: 'sliding', ejectTime: '2 s', stall: { factor: 0 } },
        retry: { hedge: 'yes', budget: { percent: 200 }, perTryTimeout: '250ms' },
      },
    },
  }
  const err = t.throws(() => parseConfig(JSON.stringify(doc))) as unknown as ConfigError
  t.match(
    err.issues.map((i) => `${i.path}: ${i.expected}`),
    [
      'upstreams.a.passive.mode: "nginx" or "consecutive" or "window" or "rate" or "outlier"',
      /^upstreams\.a\.passive\.ejectTime: /,
      'upstreams.a.passive.stall.factor: a number >= 1',
      'upstreams.a.retry.hedge: true or false',
      'upstreams.a.retry.budget.percent: an integer from 0 to 100',
    ],
  )
})
