import t from 'tap'
import { inject, type Clock, type FaultStep, type FaultTarget } from '../bench/drill/faults.js'
import { defaultTiming, providersOf, scaled, scenarioNamed, scenarios } from '../bench/drill/scenarios.js'

/** A clock that jumps instead of waiting, and a target that records what it was asked to do. */
function fakes(lateBy = 0) {
  let now = 1_000
  const clock: Clock = {
    now: () => now,
    sleep: async (ms) => {
      now += ms + lateBy
    },
  }
  const calls: string[] = []
  const record = (what: string) => async () => void calls.push(what)
  const target: FaultTarget = {
    kill: async (p) => void calls.push(`kill ${p}`),
    restart: async (p) => void calls.push(`restart ${p}`),
    freeze: async (p) => void calls.push(`freeze ${p}`),
    thaw: async (p) => void calls.push(`thaw ${p}`),
    control: async (p, q) => void calls.push(`control ${p} ${q}`),
    replace: async (p) => {
      calls.push(`replace ${p}`)
      return { replacement: `${p}2`, note: 'POST /reload; applied' }
    },
    retire: async (p) => void calls.push(`retire ${p}`),
    burn: async (ms) => {
      await record(`burn ${ms}`)()
      now += 5 // acting takes time too
    },
  }
  return { clock, target, calls }
}

t.test('runs steps in time order, each at its time, and records when it ran', async (t) => {
  const { clock, target, calls } = fakes()
  const steps: FaultStep[] = [
    { at: 300, action: 'restart', provider: 'b', mark: 'repair' },
    { at: 100, action: 'kill', provider: 'b', mark: 'fault' },
    { at: 200, action: 'burn', arg: '50' },
    { at: 200, action: 'control', provider: 'a', arg: 'delay=5' },
  ]
  const events = await inject(steps, target, 1_000, clock)
  t.same(calls, ['kill b', 'burn 50', 'control a delay=5', 'restart b'])
  t.same(
    events.map((e) => [e.action, e.ran]),
    [
      ['kill', 100],
      ['burn', 200],
      ['control', 205],
      ['restart', 300],
    ],
    'a step that comes due while another acts runs right after it',
  )
  t.equal(events[1]?.done, 205, 'done is when the action finished')
  t.equal(events[0]?.mark, 'fault')
  t.equal(events[3]?.mark, 'repair')
})

t.test('a late clock is recorded, not hidden', async (t) => {
  const { clock, target } = fakes(40)
  const events = await inject([{ at: 100, action: 'freeze', provider: 'c' }, { at: 500, action: 'thaw', provider: 'c' }], target, 1_000, clock)
  t.same(events.map((e) => e.ran), [140, 540])
  t.same(events.map((e) => e.done), [140, 540])
})

t.test('a replacement names the new provider and what the proxy did', async (t) => {
  const { clock, target, calls } = fakes()
  const [e] = await inject([{ at: 0, action: 'replace', provider: 'a', mark: 'fault' }, { at: 10, action: 'retire', provider: 'a' }], target, 1_000, clock)
  t.equal(e?.replacement, 'a2')
  t.equal(e?.note, 'POST /reload; applied')
  t.same(calls, ['replace a', 'retire a'])
})

t.test('the scenarios and their fault scripts', async (t) => {
  t.same(
    scenarios.map((s) => s.name),
    ['kill', 'freeze', 'errors', 'slow', 'flap', 'rolling', 'partial', 'global', 'noise'],
  )
  // partial: one of five is the faulty one; global: all five fail alike and none is marked faulty.
  t.same(providersOf(scenarioNamed('partial')), ['a', 'b', 'c', 'd', 'e'])
  t.match(scenarioNamed('partial').steps(defaultTiming), [{ provider: 'b', arg: 'failPercent=20', mark: 'fault' }, { provider: 'b', arg: 'failPercent=0', mark: 'repair' }])
  const global = scenarioNamed('global').steps(defaultTiming)
  t.equal(new Set(global.filter((x) => x.arg === 'failPercent=20').map((x) => x.provider)).size, 5)
  t.ok(global.every((x) => x.mark === undefined))
  t.same(providersOf(scenarioNamed('kill')), ['a', 'b', 'c'])
  const timing = defaultTiming
  for (const s of scenarios) {
    const steps = s.steps(timing)
    t.ok(steps.every((x) => x.at >= 0 && x.at < s.duration(timing)), `${s.name}: every step inside the load`)
    const faults = steps.filter((x) => x.mark === 'fault').length
    t.equal(steps.filter((x) => x.mark === 'repair').length, faults, `${s.name}: every fault has a repair`)
  }
  const flap = scenarioNamed('flap').steps(timing)
  t.equal(flap.length, 20, '20 s of 1 s down / 1 s up is 10 faults and 10 repairs')
  t.same(flap.slice(0, 2).map((x) => [x.at, x.arg]), [[5_000, 'status=503'], [6_000, 'status=200']])
  const rolling = scenarioNamed('rolling').steps(timing)
  t.same(rolling.filter((x) => x.action === 'replace').map((x) => x.provider), ['a', 'b', 'c'])
  t.same(scenarioNamed('kill').steps(scaled(timing, 0.5)).map((x) => x.at), [2_500, 7_500], 'scaling shortens every phase')
  t.equal(scaled(timing, 0.5).flapHalf, 1_000, 'the flap period is the fault itself and is not scaled')
  t.throws(() => scenarioNamed('nope'), /unknown scenario "nope"/)
})
