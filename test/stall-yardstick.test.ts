// The stall watch's yardstick (src/health/stall.ts), on real groups with a fake clock: the p99 over the group's last
// response times, handed on by taken() (a cluster worker's batch), adopted from a cluster's primary; and the
// primary streaming every group's p99 to its workers' replicas (src/workers/state-stream.ts, replica.ts). End to
// end with real processes: test/workers-stall.test.ts.
import t from 'tap'
import { mock } from 'node:test'
import { setImmediate as turn } from 'node:timers/promises'
import { Upstream } from '../src/upstream/upstream.js'
import type { Peer } from '../src/upstream/peer.js'
import { Role } from '../src/health/ejection.js'
import { LATENCY_SAMPLES, type StallWatch, type Waiting } from '../src/health/stall.js'
import type { HealthEvent } from '../src/health/passive-events.js'
import { stallRows } from '../src/admin/status.js'
import { Replica } from '../src/workers/replica.js'
import { streamOf } from './helpers/state-stream.js'
import type { Delta } from '../src/workers/protocol.js'

type Tap = { teardown(fn: () => unknown): void }

const group = (t: Tap): Upstream => {
  const u = new Upstream('api', { servers: [{ address: '127.0.0.1:1' }, { address: '127.0.0.1:2' }, { address: '127.0.0.1:3' }], passive: { recoveryProbe: false, stall: { factor: 10, floor: '200ms' } } })
  t.teardown(() => u.close())
  return u
}
const watchOf = (u: Upstream): StallWatch => u.passive.stall as StallWatch
const waiting = (): Waiting => ({ started: Date.now(), role: Role.Normal, prevWaiting: undefined, nextWaiting: undefined, waitingOn: undefined, stalled() {} })
const tick = (ms: number): void => mock.timers.tick(ms)

/** `n` requests to `peer`, each answered after `ms` (fake clock). */
function answered(u: Upstream, peer: Peer, n: number, ms: number): void {
  for (let i = 0; i < n; i++) {
    const w = waiting()
    u.passive.dispatched(peer, w, Date.now())
    tick(ms)
    u.passive.responded(w, Date.now())
    u.passive.settled(peer, w, undefined, true, Date.now())
  }
}


t.test('taken(): the response times since the last call, oldest first, the newest LATENCY_SAMPLES at most', async (t) => {
  const w = watchOf(group(t))
  t.same(w.taken(), [])
  w.sample(3)
  w.sample(5)
  t.same(w.taken(), [3, 5])
  t.same(w.taken(), [], 'each once')
  for (let i = 0; i < LATENCY_SAMPLES + 10; i++) w.sample(i)
  const all = w.taken()
  t.equal(all.length, LATENCY_SAMPLES, 'more than the watch holds: the newest')
  t.equal(all[0], 10)
  t.equal(all.at(-1), LATENCY_SAMPLES + 9)
  t.equal(w.held, LATENCY_SAMPLES)
})

t.test('the p99 over the samples held; computed again only when samples came', async (t) => {
  const w = watchOf(group(t))
  t.equal(w.p99(), 0, 'no samples yet')
  for (let i = 1; i <= 100; i++) w.sample(i)
  t.equal(w.p99(), 100, 'the 99th of 100 by index: the largest')
  for (let i = 0; i < 100; i++) w.sample(1)
  t.equal(w.p99(), 99, 'of 200: the second largest')
  t.same(w.yardstick(), { p99: 99, threshold: 990, samples: 200 })
})

t.test("a worker that adopted the proxy's p99 judges by it, not by its own few samples", async (t) => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 })
  t.teardown(() => mock.timers.reset())
  const u = group(t)
  const events: HealthEvent[] = []
  u.on('health', (e: HealthEvent) => events.push(e))
  const [a, b] = u.peers as [Peer, Peer]
  // Its own share: fast answers, 5 ms (by itself: threshold the floor, 200 ms).
  answered(u, b, 20, 5)
  t.same(watchOf(u).yardstick(), { p99: 5, threshold: 200, samples: 20 })
  watchOf(u).adopt(40)
  t.same(watchOf(u).yardstick(), { p99: 40, threshold: 400, samples: 20 }, "the proxy's p99, this process's samples")
  u.passive.dispatched(a, waiting(), Date.now())
  tick(350)
  t.ok(a.eligible, 'waiting 350 ms: under 10 x the proxy p99')
  tick(100)
  t.notOk(a.eligible, 'suspected past 400 ms')
  t.match(events.at(-1), { kind: 'suspect', peer: a.address, evidence: { threshold: 400, p99: 40 } })
  answered(u, b, 20, 1)
  t.equal(watchOf(u).p99(), 40, 'its own samples do not move it: the next p99 comes from the primary')
  t.match(stallRows(new Map([['api', u]])), [{ upstream: 'api', p99Ms: 40, thresholdMs: 400, samples: 40 }], 'as the status page shows it')
})

t.test("the primary streams every group's p99 to the workers' replicas; versions, snapshots, new generations", async (t) => {
  const primary = group(t)
  let worker = group(t)
  const { sent, measured, stream } = streamOf(primary)
  const replica = new Replica(() => new Map([['api', worker]]), 7)
  stream.watch()
  await turn()
  t.equal(sent.length, 1)
  t.same(sent[0]?.latency, [], 'no samples at the primary yet: no p99 (a worker judges by its own until there is one)')
  t.ok(replica.change(sent[0] as Delta))

  // A worker's batch: its response times join the primary's watch.
  for (const ms of [10, 20, 30]) watchOf(primary).sample(ms)
  stream.latencyChanged()
  await Promise.resolve()
  t.equal(sent.length, 2)
  t.same(sent[1]?.servers, [], 'no server changed')
  t.same(sent[1]?.latency, [['api', 30]], "the group's p99")
  stream.applied(7, 2, 0, 0)
  t.same(measured, [1], 'a version that only carries a p99 is no health decision: not measured as a propagation')
  t.ok(replica.change(sent[1] as Delta))
  t.equal(watchOf(worker).p99(), 30, 'the worker judges by it')

  stream.latencyChanged()
  await Promise.resolve()
  t.equal(sent.length, 2, 'no new samples: nothing to send')

  t.same(stream.snapshot().latency, [['api', 30]], 'every snapshot carries it')
  // A reload that rebuilds the worker's passive health: the new watch takes the p99 held.
  worker = group(t)
  t.equal(watchOf(worker).p99(), 0)
  replica.reapply()
  t.equal(watchOf(worker).p99(), 30, "a new generation's watch judges by the proxy's p99 at once")
})

t.test('a server change found by a flush for response times is measured from that flush', async (t) => {
  const primary = group(t)
  const { sent, stream } = streamOf(primary)
  stream.watch()
  await turn()
  // A gate-neutral change (no 'change' event): the operator state of a server written directly.
  ;(primary.peers[0] as Peer).operator = 'draining'
  const before = performance.timeOrigin + performance.now()
  watchOf(primary).sample(5)
  stream.latencyChanged()
  await Promise.resolve()
  t.equal(sent.length, 2)
  t.equal(sent[1]?.servers.length, 1, 'the change goes with it')
  t.ok((sent[1]?.decided ?? 0) >= before, 'decided: the flush, not the epoch')
})
