// `npm run bench`: the same load against a provider directly, vigil, a plain http-proxy forwarder and nginx
// (when installed), in interleaved rounds within one run. Prints a table, writes bench/results/throughput.json
// and refreshes the report.
//
// Processes: autocannon runs here; the provider, vigil, the forwarder and nginx each run in their own process,
// so no proxy shares an event loop with the load generator or the provider, and every target goes through the
// same loopback hops. On a 2-core machine the proxy, the provider and autocannon still compete for CPU; that
// cost is the same for every proxy, and the direct path (no proxy process) shows the ceiling.
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { Proc, firstJsonLine, providerScript } from './lib/procs.js'
import { runLoad, type LoadSummary } from './lib/load.js'
import { isInstalled, startProxy, type ProxySpec, type ProxyUnderTest } from './lib/proxies.js'
import { median, resultsDir, writeJson } from './lib/results.js'
import { writeReport } from './lib/report.js'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: process.env['BENCH_ROUNDS'] ?? '3' },
    duration: { type: 'string', default: process.env['BENCH_DURATION'] ?? '5' },
    connections: { type: 'string', default: process.env['BENCH_CONNECTIONS'] ?? '50' },
    warmup: { type: 'string', default: process.env['BENCH_WARMUP'] ?? '1' },
    // A second set of rounds at a fixed rate every target sustains: the latency a hop adds when nothing queues.
    rate: { type: 'string', default: process.env['BENCH_RATE'] ?? '2000' },
  },
})
const rounds = Number(values.rounds)
const duration = Number(values.duration)
const connections = Number(values.connections)
const warmup = Number(values.warmup)
const rate = Number(values.rate)
/** `max`: as fast as each target goes; `rate`: the same fixed rate for every target (0 skips it). */
const phases: { phase: 'max' | 'rate'; rate?: number }[] = rate > 0 ? [{ phase: 'max' }, { phase: 'rate', rate }] : [{ phase: 'max' }]

const provider = new Proc('provider', process.execPath, [providerScript, '--name', 'bench'])
const { port: providerPort } = await firstJsonLine<{ port: number }>(provider)
const upstream = `127.0.0.1:${providerPort}`

const specs: ProxySpec[] = [
  { name: 'vigil', kind: 'vigil' },
  { name: 'http-proxy', kind: 'http-proxy' },
  { name: 'nginx', kind: 'nginx' },
]
const notes: string[] = []
const targets: { name: string; port: number; proxy?: ProxyUnderTest }[] = [{ name: 'direct', port: providerPort }]
for (const spec of specs) {
  if (!(await isInstalled(spec.kind))) {
    notes.push(`${spec.name}: not installed, skipped`)
    continue
  }
  const proxy = await startProxy(spec, [upstream])
  targets.push({ name: spec.name, port: proxy.port, proxy })
}

interface Round extends LoadSummary {
  phase: 'max' | 'rate'
  target: string
  round: number
}
const results: Round[] = []
try {
  for (const { phase, rate } of phases) {
    for (let round = 1; round <= rounds; round++) {
      // Rotate the order every round so no target always runs first (or right after the same neighbour).
      const order = targets.map((_, i) => targets[(i + round - 1) % targets.length] as (typeof targets)[number])
      for (const target of order) {
        const url = `http://127.0.0.1:${target.port}/`
        if (warmup > 0) await runLoad({ url, connections, duration: warmup, rate, spread: 10 })
        const summary = await runLoad({ url, connections, duration, rate, spread: 10 })
        results.push({ phase, target: target.name, round, ...summary })
        process.stderr.write(`${phase} round ${round} ${target.name.padEnd(10)} ${summary.rps.toFixed(0)} req/s  p99 ${summary.p99} ms\n`)
      }
    }
  }
} finally {
  for (const t of targets) await t.proxy?.stop()
  await provider.stop()
}

const summarise = (phase: Round['phase']) =>
  targets.map((t) => {
    const mine = results.filter((r) => r.target === t.name && r.phase === phase)
    return {
      target: t.name,
      rps: median(mine.map((r) => r.rps)),
      p50: median(mine.map((r) => r.p50)),
      p99: median(mine.map((r) => r.p99)),
      errors: mine.reduce((n, r) => n + r.errors + r.non2xx, 0),
    }
  })
type Summary = ReturnType<typeof summarise>

function ratiosOf(summary: Summary) {
  const of = (name: string) => summary.find((s) => s.target === name)
  const [direct, vigil, forwarder, nginx] = [of('direct'), of('vigil'), of('http-proxy'), of('nginx')]
  return {
    vigilOverDirect: vigil && direct ? vigil.rps / direct.rps : undefined,
    vigilOverHttpProxy: vigil && forwarder ? vigil.rps / forwarder.rps : undefined,
    vigilOverNginx: vigil && nginx ? vigil.rps / nginx.rps : undefined,
    vigilP99AboveDirect: vigil && direct ? vigil.p99 - direct.p99 : undefined,
  }
}

const summary = summarise('max')
const ratios = ratiosOf(summary)
const fixed = rate > 0 ? { rate, summary: summarise('rate'), ratios: ratiosOf(summarise('rate')) } : undefined
const doc = {
  kind: 'throughput',
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, loadavg: loadavg() },
  settings: { rounds, duration, connections, warmup, upstream: 'one demo provider (node http), 30-byte body' },
  targets: {
    throughput: 'vigil >= 1.5x http-proxy',
    latency: 'vigil p99 <= direct p99 + 2 ms',
    throughputMet: ratios.vigilOverHttpProxy === undefined ? undefined : ratios.vigilOverHttpProxy >= 1.5,
    latencyMetAtMax: ratios.vigilP99AboveDirect === undefined ? undefined : ratios.vigilP99AboveDirect <= 2,
    latencyMetAtRate: fixed?.ratios.vigilP99AboveDirect === undefined ? undefined : fixed.ratios.vigilP99AboveDirect <= 2,
  },
  summary,
  ratios,
  fixedRate: fixed,
  rounds: results,
  notes,
}
await writeJson(`${resultsDir}throughput.json`, doc)

const fmt = (n: number | undefined, digits = 0) => (n === undefined ? '-' : n.toFixed(digits))
const table = (rows: Summary) => [
  `${'target'.padEnd(12)}${'req/s'.padStart(10)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'errors'.padStart(8)}`,
  ...rows.map((s) => `${s.target.padEnd(12)}${fmt(s.rps).padStart(10)}${fmt(s.p50, 1).padStart(9)}${fmt(s.p99, 1).padStart(9)}${String(s.errors).padStart(8)}`),
]
const lines = [
  `as fast as each goes: median of ${rounds} rounds, ${duration} s each, ${connections} connections`,
  ...table(summary),
  `vigil/direct ${fmt(ratios.vigilOverDirect, 2)}   vigil/http-proxy ${fmt(ratios.vigilOverHttpProxy, 2)} (target >= 1.5)   vigil/nginx ${fmt(ratios.vigilOverNginx, 2)}`,
  `vigil p99 - direct p99 = ${fmt(ratios.vigilP99AboveDirect, 1)} ms (target <= 2 ms at ${connections} connections)`,
  ...(fixed === undefined
    ? []
    : ['', `at a fixed ${fixed.rate} req/s, ${connections} connections`, ...table(fixed.summary), `vigil p99 - direct p99 = ${fmt(fixed.ratios.vigilP99AboveDirect, 1)} ms`]),
  ...notes,
]
process.stdout.write(`\n${lines.join('\n')}\n`)
const report = await writeReport()
process.stdout.write(`\nresults: ${resultsDir}throughput.json\nreport:  ${report}\n`)
