// The state a cluster's primary streams to its workers (src/workers/state-stream.ts) and a worker's replica of it
// (src/workers/replica.ts), on real groups in one process: changes of one turn are one version, a worker that
// missed a version applies nothing until a snapshot, a replicated ejection closes the worker's gate without a
// decision of its own. The processes, end to end: test/workers.test.ts.
import t, { type Test } from 'tap'
import { setImmediate as turn } from 'node:timers/promises'
import { Upstream } from '../src/upstream/upstream.js'
import { Role, TRIAL_FAILED, type PeerHealth } from '../src/health/ejection.js'
import { failureOf } from '../src/health/outcome.js'
import { Replica } from '../src/workers/replica.js'
import { StateStream } from '../src/workers/state-stream.js'
import { streamOf } from './helpers/state-stream.js'
import { TRIAL_GRANT, type Delta } from '../src/workers/protocol.js'

const group = (): Upstream => new Upstream('api', { servers: [{ address: '127.0.0.1:1' }, { address: '127.0.0.1:2' }, { address: '127.0.0.1:3' }] })

t.test('versions, a missed one, the snapshot; a replicated ejection', async (t) => {
  const primary = group()
  const worker = group()
  t.teardown(() => Promise.all([primary.close(), worker.close()]))
  const { sent, measured, stream } = streamOf(primary)
  const replica = new Replica(() => new Map([['api', worker]]), 7)
  const events: unknown[] = []
  worker.on('health', (e) => events.push(e))
  stream.watch()
  await turn()
  t.equal(sent.length, 1, 'the first version has every server')
  t.equal(sent[0]?.servers.length, 3)
  t.ok(replica.change(sent[0] as Delta))

  const [a, b, c] = primary.peers
  a!.checkUp = false
  b!.operator = 'draining'
  primary.refresh()
  primary.refresh()
  await Promise.resolve()
  t.equal(sent.length, 2, 'two changes of one decision: one version, sent before the loop runs anything else')
  t.same(sent[1]?.servers.map((s) => s[1]), ['127.0.0.1:1', '127.0.0.1:2'], 'with what changed')
  const now = performance.timeOrigin + performance.now()
  stream.applied(7, 2, now, now)
  t.same(measured, [1, 2], 'the worker holds version 2: it applied 1 and 2, both measured')
  t.ok(stream.last !== undefined && stream.last.sent <= stream.last.received && stream.last.received <= stream.last.ms, 'sent, then read, then applied')

  // One failure ejects (maxFails 1), and the cap lets one of three out.
  const h = c!.passive as PeerHealth
  primary.passive.judge(h, Role.Normal, failureOf('connect_refused'), Date.now())
  t.equal(h.state, 'ejected')
  await turn()
  t.equal(sent.length, 3)
  t.notOk(replica.change(sent[2] as Delta), 'a worker that missed version 2 applies nothing')
  t.equal(worker.peers[2]?.passiveOk, true, 'and stays as it was')

  replica.snapshot(stream.snapshot())
  t.equal(replica.version, 3, 'the snapshot brings it to the current version')
  const [wa, wb, wc] = worker.peers
  t.same([wa!.checkUp, wb!.operator, wc!.passive?.state, wc!.passiveOk], [false, 'draining', 'ejected', false], 'every gate as the primary has it')
  t.equal(worker.eligibleCount, 0, "the worker's snapshot of eligible servers follows")
  t.same(events.filter((e) => (e as { kind: string }).kind === 'ejected'), [], 'the worker decided nothing and reports nothing')

  primary.passive.judge(h, Role.Normal, undefined, Date.now())
  h.restore(Date.now(), 'test')
  await turn()
  t.ok(replica.change(sent[3] as Delta), 'the next version follows')
  t.equal(wc!.passiveOk, true, 'restored on the worker too')
})

/** A primary's group streamed to two workers' groups (ids 1 and 2), each with its replica; apply() hands each the snapshot. */
async function twoWorkers(t: Test): Promise<{ primary: Upstream; workers: Upstream[]; sent: Delta[]; stream: StateStream; apply(): void }> {
  const primary = group()
  const workers = [group(), group()]
  t.teardown(() => Promise.all([primary.close(), ...workers.map((w) => w.close())]))
  const sent: Delta[] = []
  const stream = new StateStream(
    () => new Map([['api', primary]]),
    (d) => {
      sent.push(d)
      return [1, 2]
    },
    () => undefined,
    () => [1, 2],
  )
  const replicas = workers.map((w, i) => new Replica(() => new Map([['api', w]]), i + 1))
  stream.watch()
  await turn()
  return {
    primary,
    workers,
    sent,
    stream,
    apply: () => {
      for (const r of replicas) r.snapshot(stream.snapshot())
    },
  }
}

t.test("an ejected server's trial is granted to one worker at a time; unused, it moves to the next", async (t) => {
  const { primary, workers, sent, stream, apply } = await twoWorkers(t)
  const h = primary.peers[0]!.passive as PeerHealth
  h.eject('max_fails', Date.now())
  h.openTrial()
  t.equal(h.state, 'trial', "the primary's ejection time is over: the trial is due")
  await turn()
  apply()
  const states = (): string[] => workers.map((w) => w.peers[0]!.passive!.state)
  t.same(states(), ['trial', 'ejected'], 'one worker may send it, the other holds the server ejected')
  t.same(workers.map((w) => w.peers[0]!.passiveOk), [true, false])

  const before = sent.length
  stream.regrant(performance.now() + TRIAL_GRANT)
  await turn()
  t.equal(sent.length, before + 1, 'an unused grant moves on as the next version')
  apply()
  t.same(states(), ['ejected', 'trial'], 'to the other worker')

  // The granted worker sends it (the primary hears so): every worker holds the server while the trial runs.
  h.dispatched(Date.now())
  await turn()
  apply()
  t.same(states(), ['probing', 'probing'], 'no second trial from anyone')
  primary.passive.judge(h, Role.Trial, failureOf('connect_refused'), Date.now())
  t.equal(h.state, 'ejected', 'the trial failed: ejected again')
  t.equal(h.snapshot().ejectionReason, TRIAL_FAILED)
  await turn()
  apply()
  t.same(states(), ['ejected', 'ejected'])
})

t.test("a suspect server's stall trials are granted to one worker at a time, and move on while it stays suspect", async (t) => {
  const { primary, workers, stream, apply } = await twoWorkers(t)
  ;(primary.peers[0]!.passive as PeerHealth).stallVerdict(true, { waiting: 500, threshold: 200, p99: 5 })
  await turn()
  apply()
  t.same(workers.map((w) => w.peers[0]!.passive!.suspect), [true, true], 'suspect in every worker')
  // Nothing waits on it in either worker, for longer than the longest quiet time: a worker with the grant lets one
  // request through.
  const trialOpen = (): boolean[] =>
    workers.map((w) => {
      const h = w.peers[0]!.passive as PeerHealth
      const now = Date.now()
      h.maybeStallTrial(now)
      h.maybeStallTrial(now + 10_000)
      return w.peers[0]!.passiveOk
    })
  t.same(trialOpen(), [true, false], 'one worker may let a stall trial through, the other holds it')

  stream.regrant(performance.now() + TRIAL_GRANT)
  await turn()
  apply()
  t.same(trialOpen(), [false, true], 'the grant moves on: the trial not yet sent closes, and the other worker may send one')

  ;(primary.peers[0]!.passive as PeerHealth).answered(Date.now())
  await turn()
  apply()
  t.same(workers.map((w) => [w.peers[0]!.passive!.suspect, w.peers[0]!.passiveOk]), [[false, true], [false, true]], 'it answered: cleared everywhere')
  t.same(stream.snapshot().servers[0]?.[6], 0, 'and the grant is gone')
})
