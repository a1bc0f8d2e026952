// `npm run bench`: the same load against the upstream directly, vigil, a minimal undici forwarder (vigil's
// libraries without vigil's logic), a plain http-proxy forwarder and nginx (when installed), in interleaved
// rounds within one run. Prints a table, writes bench/out/throughput.json and refreshes the report there
// (`npm run bench:keep` makes it the committed one). `vigil+access` is the same vigil writing a JSON access log
// to a file: the ratio of the two rows is what the access log costs. `--targets vigil,vigil+access` runs a subset.
//
// Processes: the load (autocannon; lib/paced.ts at the fixed rate) runs here; the upstream, vigil, the forwarders
// and nginx each run in their own process group, so no proxy shares an event loop with the load generator or the
// upstream, and every target goes through the same loopback hops. CPU time per request comes from /proc/PID/stat (utime + stime of the proxy's process
// group around each measured run, divided by the requests): on a shared machine req/s swings with the
// neighbours, CPU per request much less.
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { groupsCpuMs } from './lib/procs.js'
import { runLoad, type LoadSummary } from './lib/load.js'
import { runPaced } from './lib/paced.js'
import { isInstalled, startHelloUpstream, startProxy, type ProxySpec, type ProxyUnderTest } from './lib/proxies.js'
import { median, medianKnown, resultsDir, runLabel, writeJson, type MeasuredRound } from './lib/results.js'
import { targetMarks, writeReport } from './lib/report.js'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: process.env['BENCH_ROUNDS'] ?? '3' },
    duration: { type: 'string', default: process.env['BENCH_DURATION'] ?? '5' },
    connections: { type: 'string', default: process.env['BENCH_CONNECTIONS'] ?? '50' },
    warmup: { type: 'string', default: process.env['BENCH_WARMUP'] ?? '1' },
    // A second set of rounds at a fixed rate every target sustains: the latency a hop adds when nothing queues.
    rate: { type: 'string', default: process.env['BENCH_RATE'] ?? '2000' },
    // Upstream servers every proxy balances over (and vigil checks); the direct row uses the first.
    servers: { type: 'string', default: process.env['BENCH_SERVERS'] ?? '3' },
    targets: { type: 'string', default: process.env['BENCH_TARGETS'] },
  },
})
const started = new Date().toISOString()
const rounds = Number(values.rounds)
const duration = Number(values.duration)
const connections = Number(values.connections)
const warmup = Number(values.warmup)
const rate = Number(values.rate)
/** `max`: as fast as each target goes; `rate`: the same fixed rate for every target (0 skips it). */
const phases: { phase: 'max' | 'rate'; rate?: number }[] = rate > 0 ? [{ phase: 'max' }, { phase: 'rate', rate }] : [{ phase: 'max' }]

const upstream = await startHelloUpstream(Number(values.servers))
const servers = upstream.servers

const specs: ProxySpec[] = [
  { name: 'undici', kind: 'undici' },
  // Passive health (nginx mode), active HTTP checks on every server, metrics (always on), p2c.
  { name: 'vigil', kind: 'vigil', fragment: 'vigil-throughput.json' },
  { name: 'vigil+access', kind: 'vigil', fragment: 'vigil-throughput.json', access: 'json' },
  // The same vigil adding no Forwarded / X-Forwarded-* (the forwarder adds none): vigil's own logic like for like.
  { name: 'vigil-nofwd', kind: 'vigil', fragment: 'vigil-throughput.json', listener: { forwardedHeaders: false } },
  { name: 'http-proxy', kind: 'http-proxy' },
  { name: 'nginx', kind: 'nginx' },
  // Every core: a primary and 1 or 2 workers, against nginx with 1 or 2 worker processes. The load generator
  // shares the two cores, so the figure to compare is vigil's 2÷1 scaling with nginx's, not 2.0x.
  { name: 'vigil-w1', kind: 'vigil', fragment: 'vigil-throughput.json', workers: 1 },
  { name: 'vigil-w2', kind: 'vigil', fragment: 'vigil-throughput.json', workers: 2 },
  { name: 'nginx-w2', kind: 'nginx', workers: 2 },
]
const notes: string[] = []
const only = values.targets?.split(',')
const targets: { name: string; port: number; proxy?: ProxyUnderTest }[] =
  only === undefined || only.includes('direct') ? [{ name: 'direct', port: Number((servers[0] as string).split(':')[1]) }] : []
for (const spec of specs) {
  if (only !== undefined && !only.includes(spec.name)) continue
  if (!(await isInstalled(spec.kind))) {
    notes.push(`${spec.name}: not installed, skipped`)
    continue
  }
  const proxy = await startProxy(spec, servers)
  targets.push({ name: spec.name, port: proxy.port, proxy })
}

interface Round extends LoadSummary, MeasuredRound {
  phase: 'max' | 'rate'
}
const results: Round[] = []
try {
  for (const { phase, rate } of phases) {
    for (let round = 1; round <= rounds; round++) {
      // Rotate the order every round so no target always runs first (or right after the same neighbour).
      const order = targets.map((_, i) => targets[(i + round - 1) % targets.length] as (typeof targets)[number])
      for (const target of order) {
        const url = `http://127.0.0.1:${target.port}/`
        // At full speed autocannon; at the fixed rate an even load (lib/paced.ts: autocannon's rate comes in bursts
        // at full speed), which times every response exactly: autocannon's percentiles are whole milliseconds.
        const load = (seconds: number): Promise<LoadSummary & { waited?: number }> => (rate === undefined ? runLoad({ url, connections, duration: seconds }) : runPaced({ url, connections, duration: seconds, rate }))
        if (warmup > 0) await load(warmup)
        const proxyPids = target.proxy === undefined ? [] : [target.proxy.pid]
        const [proxyBefore, upBefore] = [await groupsCpuMs(proxyPids), await groupsCpuMs(upstream.pids)]
        const summary = await load(duration)
        const [proxyAfter, upAfter] = [await groupsCpuMs(proxyPids), await groupsCpuMs(upstream.pids)]
        const perRequest = (before: number | undefined, after: number | undefined) =>
          before === undefined || after === undefined || summary.requests === 0 ? undefined : ((after - before) * 1_000) / summary.requests
        const cpuUs = target.proxy === undefined ? undefined : perRequest(proxyBefore, proxyAfter)
        results.push({ phase, target: target.name, round, ...summary, cpuUs, upstreamCpuUs: perRequest(upBefore, upAfter) })
        const cpu = cpuUs === undefined ? '' : `  cpu ${cpuUs.toFixed(1)} µs/req`
        const waited = summary.waited ? `  ${summary.waited} waited for a free connection` : ''
        process.stderr.write(`${phase} round ${round} ${target.name.padEnd(10)} ${summary.rps.toFixed(0)} req/s  p99 ${summary.p99.toFixed(2)} ms${cpu}${waited}\n`)
      }
    }
  }
} finally {
  for (const t of targets) await t.proxy?.stop()
  await upstream.stop()
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
      cpuUs: medianKnown(mine.map((r) => r.cpuUs)),
      upstreamCpuUs: medianKnown(mine.map((r) => r.upstreamCpuUs)),
    }
  })
type Summary = ReturnType<typeof summarise>

function ratiosOf(summary: Summary) {
  const of = (name: string) => summary.find((s) => s.target === name)
  const [direct, vigil, undici, forwarder, nginx, access] = [of('direct'), of('vigil'), of('undici'), of('http-proxy'), of('nginx'), of('vigil+access')]
  const [w1, w2, nginx2, nofwd] = [of('vigil-w1'), of('vigil-w2'), of('nginx-w2'), of('vigil-nofwd')]
  const cpu = (a: typeof vigil, b: typeof vigil) => (a?.cpuUs === undefined || b?.cpuUs === undefined ? undefined : a.cpuUs / b.cpuUs)
  return {
    vigilOverDirect: vigil && direct ? vigil.rps / direct.rps : undefined,
    vigilOverUndici: vigil && undici ? vigil.rps / undici.rps : undefined,
    vigilCpuOverUndici: cpu(vigil, undici),
    vigilOverHttpProxy: vigil && forwarder ? vigil.rps / forwarder.rps : undefined,
    vigilCpuOverHttpProxy: cpu(vigil, forwarder),
    vigilOverNginx: vigil && nginx ? vigil.rps / nginx.rps : undefined,
    vigilCpuOverNginx: cpu(vigil, nginx),
    vigilP99AboveDirect: vigil && direct ? vigil.p99 - direct.p99 : undefined,
    // The same for the references: what the hop itself adds on this machine, whoever forwards.
    undiciP99AboveDirect: undici && direct ? undici.p99 - direct.p99 : undefined,
    nginxP99AboveDirect: nginx && direct ? nginx.p99 - direct.p99 : undefined,
    accessOverVigil: access && vigil ? access.rps / vigil.rps : undefined,
    accessCpuOverVigil: cpu(access, vigil),
    noForwardingOverUndici: nofwd && undici ? nofwd.rps / undici.rps : undefined,
    noForwardingCpuOverUndici: cpu(nofwd, undici),
    // Scaling from one worker to two, vigil's beside nginx's; CPU per request summed over every process.
    vigilTwoOverOneWorker: w2 && w1 ? w2.rps / w1.rps : undefined,
    nginxTwoOverOneWorker: nginx2 && nginx ? nginx2.rps / nginx.rps : undefined,
    vigilTwoWorkersCpuOverOne: cpu(w2, w1),
    vigilOneWorkerCpuOverOneProcess: cpu(w1, vigil),
  }
}
type Ratios = ReturnType<typeof ratiosOf>

const summary = summarise('max')
const ratios = ratiosOf(summary)
const fixed = rate > 0 ? { rate, summary: summarise('rate'), ratios: ratiosOf(summarise('rate')) } : undefined
const met = (v: number | undefined, ok: (v: number) => boolean) => (v === undefined ? undefined : ok(v))
const doc = {
  kind: 'throughput',
  date: new Date().toISOString(),
  run: started,
  // Durations relative to the default 5 s rounds: a short run says so on every row.
  scale: duration / 5,
  machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, loadavg: loadavg() },
  settings: { rounds, duration, connections, warmup, servers: servers.length, upstream: `${upstream.kind} on ${servers.length} ports`, vigil: 'bench/peers/vigil-throughput.json' },
  targets: {
    throughput: 'vigil >= 0.9x undici req/s, >= 2x http-proxy',
    cpu: 'vigil <= 1.1x undici CPU per request',
    latency: 'vigil p99 <= direct p99 + 1 ms at the fixed rate',
    undiciThroughputMet: met(ratios.vigilOverUndici, (v) => v >= 0.9),
    undiciCpuMet: met(ratios.vigilCpuOverUndici, (v) => v <= 1.1),
    httpProxyMet: met(ratios.vigilOverHttpProxy, (v) => v >= 2),
    latencyMetAtRate: met(fixed?.ratios.vigilP99AboveDirect, (v) => v <= 1),
    accessLog: 'vigil+access >= 0.9x vigil req/s (the access log costs at most 10%)',
    accessLogMet: met(ratios.accessOverVigil, (v) => v >= 0.9),
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
  `${'target'.padEnd(12)}${'req/s'.padStart(10)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'errors'.padStart(8)}${'cpu µs/req'.padStart(12)}${'upstream µs'.padStart(13)}`,
  ...rows.map(
    (s) =>
      `${s.target.padEnd(12)}${fmt(s.rps).padStart(10)}${fmt(s.p50, 2).padStart(9)}${fmt(s.p99, 2).padStart(9)}${String(s.errors).padStart(8)}${fmt(s.cpuUs, 1).padStart(12)}${fmt(s.upstreamCpuUs, 1).padStart(13)}`,
  ),
]
const ratioLine = (r: Ratios) =>
  `vigil/undici req/s ${fmt(r.vigilOverUndici, 2)} (target >= 0.9)  cpu ${fmt(r.vigilCpuOverUndici, 2)} (target <= 1.1)   ` +
  `vigil/http-proxy ${fmt(r.vigilOverHttpProxy, 2)} (target >= 2)   vigil/nginx ${fmt(r.vigilOverNginx, 2)}   vigil/direct ${fmt(r.vigilOverDirect, 2)}`
const lines = [
  `run ${runLabel(doc)}; upstream: ${doc.settings.upstream}; vigil: ${doc.settings.vigil}`,
  `as fast as each goes: median of ${rounds} rounds, ${duration} s each, ${connections} connections`,
  ...table(summary),
  ratioLine(ratios),
  `vigil p99 - direct p99 = ${fmt(ratios.vigilP99AboveDirect, 2)} ms at saturation`,
  `access log: vigil+access/vigil req/s ${fmt(ratios.accessOverVigil, 2)} (target >= 0.9)  cpu ${fmt(ratios.accessCpuOverVigil, 2)}`,
  `no forwarding headers: vigil-nofwd/undici req/s ${fmt(ratios.noForwardingOverUndici, 2)}  cpu ${fmt(ratios.noForwardingCpuOverUndici, 2)}`,
  `workers: vigil 2/1 req/s ${fmt(ratios.vigilTwoOverOneWorker, 2)}  nginx 2/1 req/s ${fmt(ratios.nginxTwoOverOneWorker, 2)}  vigil cpu 2/1 ${fmt(ratios.vigilTwoWorkersCpuOverOne, 2)}  vigil 1 worker/1 process cpu ${fmt(ratios.vigilOneWorkerCpuOverOneProcess, 2)}`,
  ...(fixed === undefined
    ? []
    : ['', `at a fixed ${fixed.rate} req/s paced evenly, ${connections} connections`, ...table(fixed.summary), ratioLine(fixed.ratios), `vigil p99 - direct p99 = ${fmt(fixed.ratios.vigilP99AboveDirect, 2)} ms (target <= 1 ms); undici ${fmt(fixed.ratios.undiciP99AboveDirect, 2)} ms, nginx ${fmt(fixed.ratios.nginxP99AboveDirect, 2)} ms`]),
  '',
  `targets: ${targetMarks(doc.targets).join('; ') || 'none measured'}`,
  ...notes,
]
process.stdout.write(`\n${lines.join('\n')}\n`)
const report = await writeReport()
process.stdout.write(`\nresults: ${resultsDir}throughput.json\nreport:  ${report}\n`)
