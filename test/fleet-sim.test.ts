// The fleet simulation (bench/sim/): deterministic for a seed, and the orderings its model must show whatever
// the seed: sharing never detects a dead provider later, subsets and shared checks lower the probe rate, a
// partition between one consumer and one provider is not spread by shared evidence, a registry outage ejects nothing.
import t from 'tap'
import { runAll, defaultParams } from '../bench/sim/sim.js'
import { STRATEGIES, type Fault } from '../bench/sim/model.js'
import type { RunResult } from '../bench/sim/fleet.js'
import { ASSUMPTIONS, SIM_HEAD, simHtmlSection, simMarkdown, simSvg } from '../bench/sim/report.js'
import { renderHtml, renderMarkdown } from '../bench/lib/report.js'

// Small enough to run in well under a second; no noise, so every false ejection is the model's doing. Three
// checkers per server: two must report it down, so one partitioned checker cannot take it down for the others
// (with k = 2 both must: a test below).
const base = defaultParams({ consumers: 200, providers: 20, rate: 20, duration: 20_000, subsetSize: 5, noise: 0, outage: 10_000 })
const params = { ...base, fleet: { ...base.fleet, checkers: 3 } }
const faults: Fault[] = ['kill', 'freeze', 'partition', 'degrade', 'registry', 'registry+kill']
const strip = (runs: RunResult[]) => runs.map(({ wallMs: _, ...r }) => r)

const first = runAll(params, faults)
const find = (fault: Fault, strategy: string): RunResult => {
  const r = first.runs.find((x) => x.fault === fault && x.strategy === strategy)
  if (r === undefined) throw new Error(`no run ${fault}/${strategy}`)
  return r
}

t.test('one seed, one result: a second run gives the same figures', async (t) => {
  t.equal(first.runs.length, faults.length * STRATEGIES.length)
  t.same(strip(runAll(params, faults).runs), strip(first.runs))
  const other = runAll({ ...params, seed: 2 }, ['kill'])
  t.not(JSON.stringify(strip(other.runs)), JSON.stringify(strip(first.runs.filter((r) => r.fault === 'kill'))), 'another seed gives other figures')
})

t.test('kill: every consumer takes the dead provider out; shared observations never later than none', async (t) => {
  for (const s of STRATEGIES) {
    const r = find('kill', s.name)
    t.equal(r.detected, r.affected, `${s.name}: every consumer of P0 took it out`)
    t.ok(r.failed > 0, `${s.name}: the fault cost requests before it was out`)
  }
  const alone = find('kill', 'probe-all')
  const shared = find('kill', 'shared-obs')
  t.ok((shared.detectP50 as number) <= (alone.detectP50 as number), `p50 ${shared.detectP50} ≤ ${alone.detectP50}`)
  t.ok((shared.detectP99 as number) <= (alone.detectP99 as number), `p99 ${shared.detectP99} ≤ ${alone.detectP99}`)
  t.ok(shared.failed <= alone.failed, `failed ${shared.failed} ≤ ${alone.failed}`)
})

t.test('enough has been said: a dead provider costs about quorum + margin writes, not one per consumer', async (t) => {
  for (const fault of ['kill', 'freeze', 'registry+kill'] as Fault[]) {
    const r = find(fault, 'shared-obs')
    const alone = find(fault, 'probe-all')
    t.ok(r.suppressedWrites > 0, `${fault}: writes were suppressed (${r.suppressedWrites})`)
    t.ok(r.registryWrites < r.affected / 2, `${fault}: ${r.registryWrites} writes for ${r.affected} consumers that saw it`)
    t.ok(r.writesPeak < r.affected / 2, `${fault}: peak ${r.writesPeak}/s`)
    t.ok((r.detectP99 as number) <= (alone.detectP99 as number), `${fault}: still detected no later than without sharing`)
  }
})

t.test('probe rates: subsets, traffic-aware probing and shared checks each lower the probes per provider', async (t) => {
  const all = find('kill', 'probe-all').probesPerProvider
  t.equal(all, params.consumers, 'probe-all: every consumer checks every provider once a second')
  t.ok(find('kill', 'subset').probesPerProvider < all, 'subsets')
  t.ok(find('kill', 'traffic-aware').probesPerProvider < all, 'traffic-aware')
  t.ok(find('kill', 'shared-checks').probesPerProvider <= params.fleet.checkers, 'shared checks: k checkers per provider')
  t.ok(find('kill', 'combined').probesPerProvider < find('kill', 'shared-checks').probesPerProvider, 'all of them together')
})

t.test('partition: only the partitioned consumer takes the provider out, with or without shared evidence', async (t) => {
  for (const s of STRATEGIES) {
    const r = find('partition', s.name)
    t.equal(r.affected, 1)
    t.equal(r.detected, 1, `${s.name}: the partitioned consumer took it out`)
    t.equal(r.falseEjections, 0, `${s.name}: nobody else did`)
  }
})

t.test('registry outage: nothing healthy changes', async (t) => {
  for (const s of STRATEGIES) {
    const r = find('registry', s.name)
    t.equal(r.falseEjections, 0, `${s.name}: no ejection`)
    t.equal(r.sharedDecisions, 0, `${s.name}: no decision on shared evidence`)
  }
})

t.test("shared checks with k = 2: one partitioned checker's report no longer takes the provider down elsewhere", async (t) => {
  const r = runAll({ ...base, fleet: { ...base.fleet, checkers: 2 } }, ['partition'], STRATEGIES.filter((s) => s.name === 'shared-checks')).runs[0] as RunResult
  t.equal(r.detected, 1)
  t.equal(r.falseEjections, 0, 'both checkers must agree (a strict majority of k)')
})

t.test('every fault that hurts a provider is detected by someone; freeze and degrade cost requests', async (t) => {
  for (const fault of ['freeze', 'degrade', 'registry+kill'] as Fault[]) {
    const r = find(fault, 'probe-all')
    t.ok(r.detected > 0 && r.failed > 0, `${fault}: ${r.detected}/${r.affected} detected, ${r.failed} failed`)
  }
  t.ok(find('registry+kill', 'shared-checks').failed > find('kill', 'shared-checks').failed, 'shared checks cost more while the registry is down')
})

t.test('the outputs: a table row and a bar per run, the assumptions, the drill report section', async (t) => {
  const md = simMarkdown(first)
  const rows = md.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| fault') && !l.startsWith('| ---'))
  t.equal(rows.length, first.runs.length)
  t.ok(rows.every((r) => r.split(' | ').length === SIM_HEAD.length), 'every row has every column')
  for (const a of ASSUMPTIONS) t.ok(md.includes(a), 'states its assumptions')
  const svg = simSvg(first)
  t.match(svg, /^<svg[^>]+>.*<\/svg>$/s)
  t.ok((svg.match(/<rect [^>]*><title>/g) ?? []).length >= first.runs.length, 'bars with their figures')
  const results = { drills: [], sim: first }
  t.ok(renderHtml(results).includes(simHtmlSection(first)), 'report.html has the section')
  t.match(renderMarkdown(results), /## Fleet simulation \(`npm run sim`\)/)
})
