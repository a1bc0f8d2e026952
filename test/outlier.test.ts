// Outlier ejection (Envoy's success rate and failure percentage) and the ejection cap's rounding: the algorithms
// as pure functions, the sweep on a fake clock; end to end in test/outlier-e2e.test.ts.
import t from 'tap'
import { mock } from 'node:test'
import { Upstream } from '../src/upstream/upstream.js'
import type { GroupConfig } from '../src/config/schema.js'
import type { Peer } from '../src/upstream/peer.js'
import type { HealthEvent } from '../src/health/passive-events.js'
import { OUTLIER_DEFAULTS, outlierVerdicts, type OutlierSample } from '../src/health/eject/outlier.js'
import { ejectionAllowance } from '../src/health/cap.js'
import { httpFailure } from '../src/health/outcome.js'

const at = (requests: number, failPercent: number): OutlierSample => ({ requests, failures: Math.round((requests * failPercent) / 100) })

t.test('success rate: the one bad server of five is an outlier; five alike are not', async (t) => {
  const one = outlierVerdicts([at(200, 20), at(200, 0), at(200, 0), at(200, 0), at(200, 0)], OUTLIER_DEFAULTS)
  t.match(one, [{ index: 0, reason: 'success_rate', successRate: 80 }])
  t.ok((one[0]?.limit as number) > 80 && (one[0]?.limit as number) < 96, `below mean - 1.9 stdev (${one[0]?.limit})`)
  t.same(outlierVerdicts([at(200, 20), at(200, 20), at(200, 20), at(200, 20), at(200, 20)], OUTLIER_DEFAULTS), [], 'all five at 20%: nobody')
  // Four identical and one a single request worse: Envoy's exact rule (stdev floor 0) calls that an outlier.
  const nearly = [at(500, 20), at(500, 20), at(500, 20), at(500, 20), { requests: 500, failures: 101 }]
  t.match(outlierVerdicts(nearly, { ...OUTLIER_DEFAULTS, stdevFloor: 0 }), [{ index: 4 }], 'stdevFloor 0: a 0.2-point difference ejects')
  t.same(outlierVerdicts(nearly, OUTLIER_DEFAULTS), [], 'the 1-point stdev floor: no ejection for a 0.2-point difference')
})

t.test('the volume rules: requestVolume per server, minimumHosts such servers', async (t) => {
  t.same(outlierVerdicts([at(99, 20), at(200, 0), at(200, 0), at(200, 0), at(200, 0)], OUTLIER_DEFAULTS), [], 'too few requests: not judged, and four are too few hosts')
  t.same(outlierVerdicts([at(200, 20), at(200, 0), at(200, 0), at(200, 0)], OUTLIER_DEFAULTS), [], 'four servers: below minimumHosts')
  // With n servers no z-score exceeds sqrt(n - 1): four servers need a stdevFactor below 1.73.
  t.same(outlierVerdicts([at(200, 20), at(200, 0), at(200, 0), at(200, 0)], { ...OUTLIER_DEFAULTS, minimumHosts: 4 }), [])
  t.match(outlierVerdicts([at(200, 20), at(200, 0), at(200, 0), at(200, 0)], { ...OUTLIER_DEFAULTS, minimumHosts: 4, stdevFactor: 1.5 }), [{ index: 0 }])
})

t.test('failure percentage: above the threshold ejects whatever the others do; worst first (one by success rate too)', async (t) => {
  const all = [at(200, 90), at(200, 95), at(200, 90), at(200, 90), at(200, 90)]
  t.same(
    outlierVerdicts(all, OUTLIER_DEFAULTS).map((v) => [v.index, v.reason]),
    [[1, 'success_rate'], [0, 'failure_percentage'], [2, 'failure_percentage'], [3, 'failure_percentage'], [4, 'failure_percentage']],
  )
  t.same(outlierVerdicts(all, { ...OUTLIER_DEFAULTS, threshold: 0, stdevFloor: 5 }), [], 'threshold 0 turns it off')
  t.same(outlierVerdicts([at(200, 85), at(200, 85), at(200, 85), at(200, 85), at(200, 85)], OUTLIER_DEFAULTS), [], 'at the threshold: not above it')
})

t.test('the cap: how many servers passive evidence may take out of groups of 1, 2, 3, 4 and 10', async (t) => {
  const table = (percent: number, atLeastOne: boolean): number[] => [1, 2, 3, 4, 10].map((n) => ejectionAllowance(n, percent, atLeastOne))
  t.same(table(50, false), [0, 1, 1, 2, 5], '50% (the default): rounded down')
  t.same(table(10, false), [0, 0, 0, 0, 1], "10% (Envoy's default): rounds down to nothing below 10 servers")
  t.same(table(10, true), [0, 1, 1, 1, 1], 'ejectAtLeastOne: always one, never a group of one')
  t.same(table(100, false), [0, 2, 3, 4, 10])
  t.same(table(0, true), [0, 1, 1, 1, 1])
})

t.test('the sweep on a fake clock: the bad server is ejected at the interval, cap and growth as in the other modes', async (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 })
  t.teardown(() => mock.timers.reset())
  const servers = Array.from({ length: 5 }, (_, i) => ({ address: `127.0.0.1:${10_001 + i}` }))
  const config: GroupConfig = { servers, passive: { mode: 'outlier', failOn: ['error', 'http_503'], ejectTime: '30s', maxEjectTime: '5m', outlier: { interval: '10s' } } }
  const u = new Upstream('api', config)
  t.teardown(() => u.close())
  const events: HealthEvent[] = []
  u.on('health', (e: HealthEvent) => events.push(e))
  const f503 = httpFailure(503)
  const hit = (p: Peer, failed: boolean): void => {
    const w = { started: Date.now(), role: 0, prevWaiting: undefined, nextWaiting: undefined, waitingOn: undefined, stalled() {} }
    u.passive.dispatched(p, w, Date.now())
    u.passive.settled(p, w, failed ? f503 : undefined, true, Date.now())
  }
  const interval = (bad: number[]): void => {
    for (let i = 0; i < 150; i++) for (const [n, p] of u.peers.entries()) if (p.eligible) hit(p, bad.includes(n) && i % 5 === 0)
  }
  interval([0])
  mock.timers.tick(9_999)
  t.same(events, [], 'nothing before the interval ends')
  mock.timers.tick(1)
  t.match(events, [{ kind: 'ejected', peer: servers[0]?.address, reason: 'success_rate', evidence: { requests: 150, failures: 30, successRate: 80 } }])
  t.ok((events[0]?.duration as number) >= 30_000, 'ejectTime, jittered')
  t.equal(u.peers[0]?.eligible, false)
  // Its trial comes after the ejection; a failing trial ejects it again for longer.
  events.length = 0
  mock.timers.tick(40_000)
  t.equal(u.passive.snapshot()[0]?.state, 'trial')
  hit(u.peers[0] as Peer, true)
  t.match(events, [{ kind: 'trial' }, { kind: 'ejected', reason: 'trial_failed', multiplier: 2 }])
  t.ok((events[1]?.duration as number) >= 60_000, 'twice ejectTime')
})

t.test('the sweep: every server at 20% is no outlier; two bad of five with the cap at 20% eject only the worst', async (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 })
  t.teardown(() => mock.timers.reset())
  const servers = Array.from({ length: 5 }, (_, i) => ({ address: `127.0.0.1:${10_001 + i}` }))
  const u = new Upstream('api', { servers, passive: { mode: 'outlier', failOn: ['http_503'], maxEjectPercent: 20, outlier: { threshold: 10, successRate: false } } })
  t.teardown(() => u.close())
  const events: HealthEvent[] = []
  u.on('health', (e: HealthEvent) => events.push(e))
  const hit = (p: Peer, failed: boolean): void => {
    const w = { started: Date.now(), role: 0, prevWaiting: undefined, nextWaiting: undefined, waitingOn: undefined, stalled() {} }
    u.passive.dispatched(p, w, Date.now())
    u.passive.settled(p, w, failed ? httpFailure(503) : undefined, true, Date.now())
  }
  // Failure percentage above 10%: servers 1 (40%) and 3 (20%); the cap (20% of 5: one) takes the worst only.
  for (let i = 0; i < 100; i++) for (const [n, p] of u.peers.entries()) hit(p, (n === 1 && i % 5 < 2) || (n === 3 && i % 5 === 0))
  mock.timers.tick(10_000)
  t.match(
    events.map((e) => [e.kind, e.peer, e.reason]),
    [
      ['ejected', servers[1]?.address, 'failure_percentage'],
      ['capped', servers[3]?.address, /failure_percentage/],
    ],
  )
})
