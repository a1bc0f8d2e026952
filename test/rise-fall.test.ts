// Unit tests: Tengine's rise/fall hysteresis, spec defaults, what a check disproves, the in-flight cap, the lag ring.
import t from 'tap'
import { RiseFall } from '../src/health/rise-fall.js'
import { ACTIVE_DEFAULTS, checkCovers, resolveCheck } from '../src/health/check-spec.js'
import { Limiter, checkDelay, stallLimit } from '../src/health/active.js'
import { LoopLag } from '../src/health/loop-lag.js'
import { statusTable } from '../src/health/probes/http.js'

const run = (m: RiseFall, results: string): string => [...results].map((r) => m.record(r === '+') ?? '.').join(' ')

t.test('up server: fall consecutive failures take it down, a success in between resets the count', async (t) => {
  const m = new RiseFall(2, 3, false)
  t.equal(m.changing, true, 'unchecked counts as changing')
  t.equal(run(m, '+--+---'), '. . . . . . down')
  t.same([m.riseCount, m.fallCount, m.down], [0, 3, true])
  t.equal(run(m, '-'), '.', 'already down: no second transition')
  t.equal(m.fallCount, 4, 'Tengine keeps counting')
})

t.test('down server: rise consecutive successes bring it up, a failure in between resets the count', async (t) => {
  const m = new RiseFall(2, 5, true)
  t.equal(m.down, true, 'defaultDown')
  t.equal(run(m, '+-+'), '. . .')
  t.equal(m.changing, true, 'one success counted against down')
  t.equal(run(m, '+'), 'up')
  t.same([m.riseCount, m.fallCount, m.down, m.changing], [2, 0, false, false])
  t.equal(run(m, '+++'), '. . .')
  t.equal(m.riseCount, 5)
})

t.test('rise 1 / fall 1 flips on every change', async (t) => {
  const m = new RiseFall(1, 1, false)
  t.equal(run(m, '+-+-'), '. down up down')
})

t.test('resolveCheck fills Tengine defaults, except defaultDown', async (t) => {
  const s = resolveCheck({}, undefined)
  t.match(s, { type: 'tcp', interval: 30_000, timeout: 1_000, rise: 2, fall: 5, defaultDown: false, port: 0, fastInterval: 30_000, downInterval: 30_000, jitter: 0.1 })
  t.equal(s.http, undefined)
  const h = resolveCheck({ type: 'https', interval: '2s', downInterval: '10s', tls: { skipVerify: true } }, 'svc.local')
  t.match(h, { interval: 2_000, fastInterval: 2_000, downInterval: 10_000, http: { method: 'GET', path: '/', host: 'svc.local', expectStatus: ACTIVE_DEFAULTS.expectStatus }, tls: { skipVerify: true } })
  t.match(resolveCheck({ tcp: { send: 'PING\r\n', expect: '+PONG' } }, undefined).tcp, { send: 'PING\r\n', expect: '+PONG' })
})

t.test('a passing check lifts only the ejections it disproves', async (t) => {
  const tcp = resolveCheck({ type: 'tcp' }, undefined)
  const exchange = resolveCheck({ type: 'tcp', tcp: { send: 'x', expect: 'y' } }, undefined)
  const http = resolveCheck({ type: 'http' }, undefined)
  t.same(['error', 'timeout', 'http_503'].map((f) => checkCovers(tcp, f)), [true, false, false])
  t.same(['error', 'timeout', 'http_503'].map((f) => checkCovers(exchange, f)), [true, true, false])
  t.same(['error', 'timeout', 'http_503'].map((f) => checkCovers(http, f)), [true, true, true])
  const grpc = resolveCheck({ type: 'grpc' }, undefined)
  t.same(['error', 'timeout', 'invalid_header', 'grpc_UNAVAILABLE'].map((f) => checkCovers(grpc, f)), [true, true, true, false], 'SERVING says nothing of what calls get')
  t.same([tcp, exchange, http].map((c) => checkCovers(c, 'grpc_RESOURCE_EXHAUSTED')), [false, false, false], 'nor does any other check')
})

t.test('expected status table: classes and codes', async (t) => {
  const table = statusTable(['2xx', '301'])
  t.same([200, 299, 301, 302, 404, 500].map((s) => table[s]), [true, true, true, false, false, false])
})

t.test('limiter: at most max jobs run at once, the rest wait their turn in order', async (t) => {
  const limiter = new Limiter(2)
  let running = 0
  let peak = 0
  const order: number[] = []
  const releases: (() => void)[] = []
  for (let i = 0; i < 5; i++) {
    limiter.run(async () => {
      running++
      peak = Math.max(peak, running)
      order.push(i)
      await new Promise<void>((resolve) => releases.push(resolve))
      running--
    })
  }
  t.equal(running, 2)
  while (releases.length > 0) {
    releases.shift()?.()
    await new Promise((r) => setImmediate(r))
  }
  t.equal(peak, 2)
  t.same(order, [0, 1, 2, 3, 4])
})

t.test('stall limit: a fifth of the timeout, at least 50 ms', async (t) => {
  t.equal(stallLimit(1_000), 200)
  t.equal(stallLimit(100), 50)
})

t.test('loop lag: the ticker records a stall, queries see only stalls that ended after their start', async (t) => {
  const lag = new LoopLag()
  lag.hold()
  lag.hold()
  lag.release()
  t.teardown(() => lag.release())
  lag.note(1_000, 30)
  lag.note(2_000, 80)
  t.equal(lag.longestSince(0), 80)
  t.equal(lag.longestSince(1_500), 80)
  t.equal(lag.longestSince(2_500) < 80, true)
  const before = performance.now()
  await new Promise((r) => setTimeout(r, 60))
  const end = Date.now() + 200
  while (Date.now() < end) {
    // stall the loop
  }
  await new Promise((r) => setTimeout(r, 60))
  t.ok(lag.longestSince(before) >= 100, `stall of ${Math.round(lag.longestSince(before))} ms recorded while held`)
})

t.test('loop lag: released by every holder, the ticker records nothing', async (t) => {
  const lag = new LoopLag()
  lag.hold()
  lag.release()
  const before = performance.now()
  await new Promise((r) => setTimeout(r, 60))
  const end = Date.now() + 200
  while (Date.now() < end) {
    // stall the loop
  }
  await new Promise((r) => setTimeout(r, 60))
  t.equal(lag.longestSince(before), 0, 'no ticker ran')
})

t.test('check delay: interval when stable, fastInterval while changing, downInterval while down, jitter bounds', async (t) => {
  const spec = resolveCheck({ interval: 1_000, fastInterval: 100, downInterval: 5_000, jitter: 0.1, rise: 2, fall: 2 }, undefined)
  const m = new RiseFall(2, 2, false)
  t.equal(checkDelay(spec, m, false, 0.5), 100, 'unchecked: fast')
  m.record(true)
  t.same([0, 0.5, 1].map((r) => checkDelay(spec, m, false, r)), [900, 1_000, 1_100], 'up: interval ±10%')
  t.equal(checkDelay(spec, m, true, 0.25), 250, 'spread: anywhere in the interval')
  m.record(false)
  t.equal(checkDelay(spec, m, false, 0.5), 100, 'one failure counted: fast')
  m.record(false)
  t.equal(checkDelay(spec, m, false, 0.5), 5_000, 'down: downInterval')
  m.record(true)
  t.equal(checkDelay(spec, m, false, 0.5), 100, 'recovering: fast')
})
