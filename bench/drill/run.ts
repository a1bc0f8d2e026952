// `npm run drill`: every scenario against every proxy variant, results in bench/out/<scenario>.json and the
// HTML report beside them (`npm run bench:keep` copies them to the committed bench/results/). Flags (or env):
//   --scenarios kill,freeze  --proxies vigil-both,nginx  --scale 0.5 (all durations)  --rate 200 --connections 20
// Every row is labelled with its run (when this invocation started) and scale: rerunning one proxy keeps the
// other proxies' rows of earlier runs, and the report says so.
import { parseArgs } from 'node:util'
import { cpus, loadavg } from 'node:os'
import { readFile } from 'node:fs/promises'
import { resultsDir, writeJson, type RunLabel } from '../lib/results.js'
import { drillMisses, writeReport } from '../lib/report.js'
import type { ProxySpec } from '../lib/proxies.js'
import { defaultLoad, runScenario, WARM, type RunResult } from './drill.js'
import { defaultTiming, grpcScenarios, scaled, scenarioNamed, scenarios, type Scenario } from './scenarios.js'

export const proxySpecs: readonly ProxySpec[] = [
  { name: 'vigil-passive', kind: 'vigil', fragment: 'vigil-passive.json' },
  { name: 'vigil-active', kind: 'vigil', fragment: 'vigil-active.json' },
  { name: 'vigil-both', kind: 'vigil', fragment: 'vigil-both.json' },
  // The same with a primary and two workers: the same figures are the target, and every decision applied by
  // both workers within 100 ms.
  { name: 'vigil-both-w2', kind: 'vigil', fragment: 'vigil-both.json', workers: 2 },
  // Issue 15's rows: passive only with one failure ejecting for 10 s; p2c with checks; outlier mode. Each
  // "-classic" twin turns recovery probes and stall re-dispatch off (vigil before issue 15, nginx's behaviour).
  { name: 'vigil-passive1', kind: 'vigil', fragment: 'vigil-passive1.json' },
  { name: 'vigil-passive1-classic', kind: 'vigil', fragment: 'vigil-passive1-classic.json' },
  { name: 'vigil-p2c', kind: 'vigil', fragment: 'vigil-p2c.json' },
  { name: 'vigil-p2c-classic', kind: 'vigil', fragment: 'vigil-p2c-classic.json' },
  { name: 'vigil-outlier', kind: 'vigil', fragment: 'vigil-outlier.json' },
  { name: 'nginx', kind: 'nginx' },
  { name: 'haproxy', kind: 'haproxy' },
  { name: 'caddy', kind: 'caddy' },
]

/**
 * The proxies of the gRPC drills: vigil with an h2c listener in front of h2c upstreams (passive health, gRPC
 * checks, retries), and nginx with grpc_pass (the only open-source peer here that proxies HTTP/2 to upstreams).
 */
export const grpcProxySpecs: readonly ProxySpec[] = [
  { name: 'vigil-grpc', kind: 'vigil', fragment: 'vigil-grpc.json', listener: { http2: true } },
  { name: 'nginx-grpc', kind: 'nginx', template: 'nginx-h2.conf' },
]
const allSpecs = [...proxySpecs, ...grpcProxySpecs]

const env = process.env
const { values } = parseArgs({
  options: {
    scenarios: { type: 'string', default: env['DRILL_SCENARIOS'] ?? [...scenarios, ...grpcScenarios].map((s) => s.name).join(',') },
    // Unset: every proxy of the scenario's kind (HTTP/1.1 or gRPC).
    proxies: { type: 'string', default: env['DRILL_PROXIES'] },
    scale: { type: 'string', default: env['DRILL_SCALE'] ?? '1' },
    rate: { type: 'string', default: env['DRILL_RATE'] ?? String(defaultLoad.rate) },
    connections: { type: 'string', default: env['DRILL_CONNECTIONS'] ?? String(defaultLoad.connections) },
  },
})
const chosen = values.scenarios.split(',').map(scenarioNamed)
const named = values.proxies?.split(',').map((name) => {
  const spec = allSpecs.find((p) => p.name === name)
  if (spec === undefined) throw new Error(`unknown proxy "${name}" (known: ${allSpecs.map((p) => p.name).join(', ')})`)
  return spec
})
/** The chosen proxies that carry the scenario's protocol. */
const specsFor = (s: Scenario): readonly ProxySpec[] => {
  const kind = s.grpc === true ? grpcProxySpecs : proxySpecs
  return named === undefined ? kind : named.filter((p) => kind.includes(p))
}
const timing = scaled(defaultTiming, Number(values.scale))
const load = { ...defaultLoad, rate: Number(values.rate), connections: Number(values.connections) }

const label: RunLabel = { run: new Date().toISOString(), scale: Number(values.scale) }

// Before anything starts: how long this takes (load time, plus the providers' and proxy's start, the warm-up and
// the last counts per run; measured at about 4 s on a 2-core machine).
const SETUP_MS = WARM + 4_000
const totalMs = chosen.reduce((n, s) => n + specsFor(s).length * (s.duration(timing) + SETUP_MS), 0)
const minutes = (ms: number) => (ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`)
process.stderr.write(
  `drill: ${chosen.length} scenario${chosen.length === 1 ? '' : 's'} × their proxies at scale ${label.scale}: ` +
    `about ${minutes(totalMs)} (ends near ${new Date(Date.now() + totalMs).toISOString().slice(11, 16)} UTC); --scale 0.5 about halves it\n` +
    `results: ${resultsDir}\n`,
)

/** The slowest propagation and where it waited: decision → sent to every worker → read by the last → applied. */
const slowest = (p: NonNullable<RunResult['propagation']>): string =>
  p.slowestMs === undefined ? '-' : `${p.slowestMs.toFixed(1)} ms (sent ${p.slowestSentMs?.toFixed(1) ?? '-'}, read ${p.slowestReceivedMs?.toFixed(1) ?? '-'})`
const fmt = (ms: number | null | undefined) => (ms === undefined ? '-' : ms === null ? 'never' : `${(ms / 1000).toFixed(1)}s`)

for (const scenario of chosen) {
  const file = `${resultsDir}${scenario.name}.json`
  // Runs of proxies not chosen this time are kept, so one proxy can be rerun alone.
  const previous = await readFile(file, 'utf8').then((t) => (JSON.parse(t) as { runs: RunResult[] }).runs, () => [] as RunResult[])
  const specs = specsFor(scenario)
  const runs = previous.filter((r) => !specs.some((s) => s.name === r.proxy))
  const load1 = loadavg()[0] as number
  for (const spec of specs) {
    process.stderr.write(`${scenario.name} / ${spec.name} ... `)
    const result: RunResult = { ...(await runScenario(scenario, spec, timing, load)), ...label }
    const c = result.client
    process.stderr.write(
      result.status === 'ok' && c !== undefined
        ? `${c.requests} req, ${c.errors} errors, ${c.non2xx} non-2xx, ${c.slow} slow, detect ${fmt(result.detectMs)}, recover ${fmt(result.recoverMs)}, false ejections ${result.falseEjections ?? '-'}` +
            `${result.propagation === undefined ? '' : `, decision → every worker: slowest ${slowest(result.propagation)} of ${result.propagation.measured}`}` +
            `${drillMisses(result).length === 0 ? '' : `  MISSED: ${drillMisses(result).join(', ')}`}\n`
        : `${result.status}: ${result.note}\n`,
    )
    runs.push(result)
  }
  runs.sort((a, b) => allSpecs.findIndex((p) => p.name === a.proxy) - allSpecs.findIndex((p) => p.name === b.proxy))
  const machine = { cpus: cpus().length, node: process.version, loadavg: [load1, loadavg()[0] as number] }
  await writeJson(file, { kind: 'drill', scenario: scenario.name, description: scenario.description, date: new Date().toISOString(), machine, timing, load, runs })
}
process.stdout.write(`report: ${await writeReport()}\n`)
