import t from 'tap'
import { BUCKET, ClientRecorder, ProviderRecorder, clientFigures, detection, falseEjections, quietSpans, recoveryTime, series, type FaultWindow } from '../bench/drill/timeline.js'
import { analyse, faultWindows } from '../bench/drill/drill.js'
import { scenarioNamed } from '../bench/drill/scenarios.js'
import type { FaultEvent } from '../bench/drill/faults.js'

const ORIGIN = 1_000_000

/** Give `name` `n` requests in every bucket of [from, to) ms. */
function fill(p: ProviderRecorder, name: string, from: number, to: number, n = 5): void {
  for (let at = from; at < to; at += BUCKET) p.add(name, ORIGIN + at, n)
}

function clock(start: number) {
  let now = start
  return { now: () => now, set: (ms: number) => void (now = ORIGIN + ms) }
}

t.test('client recorder: buckets by arrival, and when each hurt request was sent', async (t) => {
  const c = clock(ORIGIN)
  const rec = new ClientRecorder(ORIGIN, 5_000, c.now)
  c.set(150)
  rec.response(200, 3)
  c.set(180)
  rec.response(503, 2)
  c.set(2_600)
  rec.response(200, 1_500)
  c.set(9_000)
  rec.error(new Error('request timed out'))
  rec.error(new Error('read ECONNRESET'))
  t.same(rec.buckets.get(1), { ok: 1, non2xx: 1, errors: 0, slow: 0 })
  t.same(rec.buckets.get(26), { ok: 1, non2xx: 0, errors: 0, slow: 1 })
  t.same(rec.buckets.get(90), { ok: 0, non2xx: 0, errors: 2, slow: 0 })
  c.set(3_000)
  rec.response(200, 300)
  rec.response(200, 200)
  t.same(
    rec.hurt.map((h) => [h.sent, h.done]),
    [
      [178, 180],
      [1_100, 2_600],
      [4_000, 9_000],
      [9_000, 9_000],
      [2_700, 3_000],
    ],
    'a 503 when it came, slower ones and a timeout from when they were sent',
  )
  const f = clientFigures(rec)
  t.same({ requests: f.requests, errors: f.errors, non2xx: f.non2xx, slow: f.slow }, { requests: 7, errors: 2, non2xx: 1, slow: 1 })
  t.equal(f.p99, 1_500)
})

t.test('provider recorder: incarnations of one provider add up', async (t) => {
  const p = new ProviderRecorder(ORIGIN)
  p.add('b', ORIGIN + 100, 3)
  p.add('b', ORIGIN + 150, 2) // a restarted process reporting the same bucket
  p.add('b', ORIGIN + 1_200, 4)
  t.equal(p.at('b', 1), 5)
  t.equal(p.total('b'), 9)
  t.equal(p.total('b', 1_000, 2_000), 4)
  t.equal(p.total('nobody'), 0)
})

t.test('series: per-second sums for the charts', async (t) => {
  const p = new ProviderRecorder(ORIGIN)
  fill(p, 'a', 0, 2_000, 2)
  const c = clock(ORIGIN)
  const rec = new ClientRecorder(ORIGIN, 5_000, c.now)
  c.set(1_500)
  rec.response(502, 1)
  rec.error(new Error('x'))
  c.set(5_000) // after the end: left out
  rec.response(200, 1)
  const s = series(rec, p, 3_000)
  t.same(s.providers['a'], [20, 20, 0])
  t.same(s.non2xx, [0, 1, 0])
  t.same(s.errors, [0, 1, 0])
  t.same(s.ok, [0, 0, 0])
})

t.test('quiet spans need the load to go elsewhere', async (t) => {
  const busy = [[0, 100], [1_500, 1_600], [1_700, 1_800]] as const
  const plenty = () => 50
  t.same(quietSpans(busy, 0, 4_000, plenty, 1_500), [1_800], 'the 1.4 s gap is too short, the 2.2 s one at the end is not')
  t.same(quietSpans(busy, 0, 4_000, plenty, 1_000), [100, 1_800])
  t.same(quietSpans(busy, 0, 4_000, () => 9, 500), [], 'fewer than 10 requests elsewhere: no load, no verdict')
  t.same(quietSpans([[1_500, 1_600]], 1_550, 1_650, plenty, 60), [], 'traffic that started before the span still counts')
})

t.test('detection: provider-side when the faulty process counts, client-side when it cannot', async (t) => {
  const p = new ProviderRecorder(ORIGIN)
  fill(p, 'a', 0, 10_000)
  fill(p, 'b', 0, 3_000)
  p.add('b', ORIGIN + 4_500, 1) // a trial request
  const w: FaultWindow = { provider: 'b', fault: 2_000, repair: 6_000, until: 10_000, counts: true }
  const rec = new ClientRecorder(ORIGIN, 5_000, clock(ORIGIN).now)
  t.same(detection(w, p, rec), { after: 1_000, leaked: 1 }, 'out one second after the fault, one request after that')
  fill(p, 'b', 3_000, 6_000)
  t.same(detection(w, p, rec), { after: undefined, leaked: undefined }, 'traffic until the repair: not detected')

  const dead = { ...w, counts: false }
  const c = clock(ORIGIN)
  const clients = new ClientRecorder(ORIGIN, 5_000, c.now)
  for (let at = 0; at < 10_000; at += 50) {
    c.set(at + 5)
    clients.response(200, 5) // the load keeps flowing to the healthy providers
  }
  clients.hurt.push({ sent: 2_100, done: 2_100 }, { sent: 2_700, done: 4_700 }, { sent: 1_500, done: 1_500 }, { sent: 4_000, done: 6_000 })
  t.same(detection(dead, p, clients), { after: 700, leaked: 1 }, 'the last request the fault hurt before a quiet second, and a trial after')
  clients.hurt.push({ sent: 3_500, done: 3_500 }, { sent: 4_900, done: 4_900 }, { sent: 5_600, done: 5_600 })
  t.same(detection(dead, p, clients).after, undefined, 'hurt requests all through the fault: not detected')

  const stuck = new ClientRecorder(ORIGIN, 5_000)
  stuck.hurt.push({ sent: 2_000, done: 4_000 }, { sent: 4_000, done: 6_000 })
  t.same(detection(dead, p, stuck).after, undefined, 'every connection stuck on the frozen provider: nothing went elsewhere')
})

t.test('recovery: the first run of traffic that lasts, ignoring a burst of queued requests', async (t) => {
  const p = new ProviderRecorder(ORIGIN)
  const w: FaultWindow = { provider: 'b', fault: 1_000, repair: 3_000, until: 9_000, counts: false }
  t.equal(recoveryTime(w, p), undefined, 'never')
  p.add('b', ORIGIN + 3_000, 40) // the kernel backlog of a frozen process, served at SIGCONT
  fill(p, 'b', 5_500, 9_000)
  t.equal(recoveryTime(w, p), 2_500)
  const short = new ProviderRecorder(ORIGIN)
  fill(short, 'b', 3_200, 3_600)
  t.equal(recoveryTime({ ...w, until: 3_800 }, short), 200, 'a window shorter than the gap judges by what it has')
  t.equal(recoveryTime({ ...w, repair: 3_250, until: 3_800 }, short), 0, 'traffic in the bucket of the repair is no negative time')
})

t.test('false ejections: a healthy provider idle for a second while others work', async (t) => {
  const p = new ProviderRecorder(ORIGIN)
  fill(p, 'a', 0, 10_000)
  fill(p, 'c', 0, 10_000)
  fill(p, 'b', 0, 3_000)
  fill(p, 'b', 4_500, 10_000)
  t.equal(falseEjections(['a', 'b', 'c'], p, 0, 10_000), 1)
  const stall = new ProviderRecorder(ORIGIN)
  for (const n of ['a', 'b', 'c']) {
    fill(stall, n, 0, 3_000)
    fill(stall, n, 5_000, 10_000)
  }
  t.equal(falseEjections(['a', 'b', 'c'], stall, 0, 10_000), 0, 'everyone idle is a stall, not an ejection')
})

t.test('analyse: fault windows, worst figures and the faulty share', async (t) => {
  const events: FaultEvent[] = [
    { at: 1_000, ran: 1_000, done: 1_002, action: 'control', provider: 'b', arg: 'status=503', mark: 'fault' },
    { at: 2_000, ran: 2_005, done: 2_010, action: 'control', provider: 'b', arg: 'status=200', mark: 'repair' },
    { at: 3_000, ran: 3_000, done: 3_001, action: 'control', provider: 'b', arg: 'status=503', mark: 'fault' },
    { at: 4_000, ran: 4_000, done: 4_000, action: 'control', provider: 'b', arg: 'status=200', mark: 'repair' },
  ]
  t.same(
    faultWindows(events, 6_000, true).map((w) => [w.fault, w.repair, w.until]),
    [
      [1_000, 2_010, 3_000],
      [3_000, 4_000, 6_000],
    ],
  )
  const p = new ProviderRecorder(ORIGIN)
  fill(p, 'a', 0, 6_000)
  fill(p, 'c', 0, 6_000)
  fill(p, 'b', 0, 1_300) // detected 300 ms into the first fault
  fill(p, 'b', 2_500, 6_000) // and never in the second
  const rec = new ClientRecorder(ORIGIN, 5_000, clock(ORIGIN + 500).now)
  rec.response(200, 1)
  const r = analyse(scenarioNamed('flap'), events, rec, p, 6_000)
  t.equal(r.detected, '1/2')
  t.equal(r.detectMs, null, 'one window never detected: the worst is never')
  t.equal(r.recoverMs, 490)
  t.equal(r.falseEjections, 0)
  t.ok(r.faultyShare !== undefined && r.faultyShare > 0.1 && r.faultyShare < 0.34)
  const quiet = analyse(scenarioNamed('noise'), [], rec, p, 6_000)
  t.equal(quiet.detectMs, undefined)
  t.equal(quiet.faultyShare, undefined)
  t.equal(quiet.falseEjections, 1, 'in noise every provider is healthy, b included')
})
