// `npm run bench:h2` (and the second half of `npm run bench`): HTTP/2 load from h2load against the upstream
// directly, through vigil (an h2c listener in front of h2c upstreams) and through nginx (an h2c listener and
// grpc_pass, nginx's only way to speak HTTP/2 to an upstream), in interleaved rounds within one run, with CPU
// time per request of each proxy's process group from /proc/PID/stat (as bench/throughput.ts measures it).
// Two workloads: `h2`, GETs to one nginx worker answering 200 over h2c on three ports; `grpc`, unary calls to three
// @grpc/grpc-js providers (bench/lib/grpc-provider.ts), each call one length-prefixed message POSTed by h2load.
// A row whose tool is missing (h2load, nginx) or whose vigil build has no HTTP/2 listener is skipped with a note.
// Writes bench/out/h2-throughput.json.
//   --rounds 3 --duration 5 --clients 10 --streams 10 --workloads h2,grpc --targets direct,vigil,nginx
import { cpus, loadavg, tmpdir } from 'node:os'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Listener } from '../src/config/schema.js'
import { SAY_PATH, sayRequest } from './lib/grpc-provider.js'
import { runH2load, type H2LoadSummary } from './lib/h2load.js'
import { Proc, firstJsonLine, grpcProviderScript, groupsCpuMs, which } from './lib/procs.js'
import { isInstalled, startHelloUpstream, startProxy, type HelloUpstream, type ProxySpec, type ProxyUnderTest } from './lib/proxies.js'
import { median, medianKnown, resultsDir, writeJson, type MeasuredRound } from './lib/results.js'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: process.env['BENCH_ROUNDS'] ?? '3' },
    duration: { type: 'string', default: process.env['BENCH_DURATION'] ?? '5' },
    clients: { type: 'string', default: '10' },
    streams: { type: 'string', default: '10' },
    servers: { type: 'string', default: '3' },
    workloads: { type: 'string', default: 'h2,grpc' },
    targets: { type: 'string', default: 'direct,vigil,nginx' },
  },
})
const rounds = Number(values.rounds)
const duration = Number(values.duration)
const clients = Number(values.clients)
const streams = Number(values.streams)
const count = Number(values.servers)
const only = values.targets.split(',')
const notes: string[] = []
const started = new Date().toISOString()

/** Three gRPC providers in processes of their own. */
async function startGrpcUpstream(n: number): Promise<HelloUpstream> {
  const procs = Array.from({ length: n }, (_, i) => new Proc(`grpc-${i}`, process.execPath, [grpcProviderScript, '--name', `g${i}`]))
  const ready = await Promise.all(procs.map((p) => firstJsonLine<{ port: number }>(p)))
  return { servers: ready.map((r) => `127.0.0.1:${r.port}`), pids: procs.map((p) => p.pid), stop: async () => void (await Promise.all(procs.map((p) => p.stop()))) }
}

interface Workload {
  name: 'h2' | 'grpc'
  path: string
  upstream: HelloUpstream
  vigil: ProxySpec
  data?: string
  headers?: string[]
}

const vigilHasH2 = 'http2' in (Listener.properties as Record<string, unknown>)
if (!vigilHasH2) notes.push('vigil: this build has no HTTP/2 listener (listeners[].http2), rows skipped')
if ((await which('h2load')) === undefined) {
  process.stderr.write('h2load is not installed (Debian package nghttp2-client): no HTTP/2 rows\n')
  await writeJson(`${resultsDir}h2-throughput.json`, { kind: 'h2-throughput', date: new Date().toISOString(), notes: ['h2load not installed: nothing measured'] })
  process.exit(0)
}

const dir = await mkdtemp(join(tmpdir(), 'vigil-h2bench-'))
// One length-prefixed Say request (Msg { text: "hello" }): what every h2load request of the grpc workload sends.
const frame = join(dir, 'call.bin')
const payload = sayRequest()
const header = Buffer.alloc(5)
header.writeUInt32BE(payload.length, 1)
await writeFile(frame, Buffer.concat([header, payload]))

const workloads: Workload[] = []
const chosen = values.workloads.split(',')
if (chosen.includes('h2')) {
  const upstream = await startHelloUpstream(count, true)
  if (upstream === undefined) notes.push('h2: nginx (the h2c upstream) is not installed, workload skipped')
  else workloads.push({ name: 'h2', path: '/', upstream, vigil: { name: 'vigil', kind: 'vigil', fragment: 'vigil-h2c.json', listener: { http2: true } } })
}
if (chosen.includes('grpc')) {
  workloads.push({
    name: 'grpc',
    path: SAY_PATH,
    upstream: await startGrpcUpstream(count),
    vigil: { name: 'vigil', kind: 'vigil', fragment: 'vigil-grpc.json', listener: { http2: true } },
    data: frame,
    headers: ['content-type: application/grpc', 'te: trailers'],
  })
}

interface Target {
  workload: Workload
  name: string
  port: number
  proxy?: ProxyUnderTest
}
const targets: Target[] = []
for (const w of workloads) {
  if (only.includes('direct')) targets.push({ workload: w, name: 'direct', port: Number((w.upstream.servers[0] as string).split(':')[1]) })
  const specs: ProxySpec[] = [
    ...(only.includes('vigil') && vigilHasH2 ? [w.vigil] : []),
    ...(only.includes('nginx') ? [{ name: 'nginx', kind: 'nginx' as const, template: 'nginx-h2.conf' }] : []),
  ]
  for (const spec of specs) {
    if (!(await isInstalled(spec.kind))) {
      notes.push(`${w.name} ${spec.name}: not installed, skipped`)
      continue
    }
    const proxy = await startProxy(spec, w.upstream.servers)
    targets.push({ workload: w, name: spec.name, port: proxy.port, proxy })
  }
}

interface Round extends H2LoadSummary, MeasuredRound {
  workload: string
}
const results: Round[] = []
try {
  for (let round = 1; round <= rounds; round++) {
    for (const w of workloads) {
      const mine = targets.filter((t) => t.workload === w)
      // Rotate the order every round so no target always runs first.
      const order = mine.map((_, i) => mine[(i + round - 1) % mine.length] as Target)
      for (const target of order) {
        const load = { url: `http://127.0.0.1:${target.port}${w.path}`, clients, streams, data: w.data, headers: w.headers }
        await runH2load({ ...load, duration: 1 })
        const pids = target.proxy === undefined ? [] : [target.proxy.pid]
        const [before, upBefore] = [await groupsCpuMs(pids), await groupsCpuMs(w.upstream.pids)]
        const summary = await runH2load({ ...load, duration })
        const [after, upAfter] = [await groupsCpuMs(pids), await groupsCpuMs(w.upstream.pids)]
        const per = (a: number | undefined, b: number | undefined): number | undefined =>
          a === undefined || b === undefined || summary.requests === 0 ? undefined : ((b - a) * 1_000) / summary.requests
        const cpuUs = target.proxy === undefined ? undefined : per(before, after)
        results.push({ workload: w.name, target: target.name, round, ...summary, cpuUs, upstreamCpuUs: per(upBefore, upAfter) })
        const cpu = cpuUs === undefined ? '' : `  cpu ${cpuUs.toFixed(1)} µs/req`
        process.stderr.write(`round ${round} ${w.name.padEnd(5)} ${target.name.padEnd(7)} ${summary.rps.toFixed(0)} req/s  mean ${summary.meanMs.toFixed(2)} ms  failed ${summary.failed}${cpu}\n`)
      }
    }
  }
} finally {
  for (const t of targets) await t.proxy?.stop()
  for (const w of workloads) await w.upstream.stop()
  await rm(dir, { recursive: true, force: true })
}

const summary = targets.map((t) => {
  const mine = results.filter((r) => r.workload === t.workload.name && r.target === t.name)
  return {
    workload: t.workload.name,
    target: t.name,
    rps: median(mine.map((r) => r.rps)),
    meanMs: median(mine.map((r) => r.meanMs)),
    failed: mine.reduce((n, r) => n + r.failed, 0),
    cpuUs: medianKnown(mine.map((r) => r.cpuUs)),
    upstreamCpuUs: medianKnown(mine.map((r) => r.upstreamCpuUs)),
  }
})
const ratios = workloads.map((w) => {
  const of = (name: string) => summary.find((s) => s.workload === w.name && s.target === name)
  const [direct, vigil, nginx] = [of('direct'), of('vigil'), of('nginx')]
  return {
    workload: w.name,
    vigilOverDirect: vigil && direct ? vigil.rps / direct.rps : undefined,
    vigilOverNginx: vigil && nginx ? vigil.rps / nginx.rps : undefined,
    vigilCpuOverNginx: vigil?.cpuUs !== undefined && nginx?.cpuUs !== undefined ? vigil.cpuUs / nginx.cpuUs : undefined,
  }
})
await writeJson(`${resultsDir}h2-throughput.json`, {
  kind: 'h2-throughput',
  date: new Date().toISOString(),
  run: started,
  scale: duration / 5,
  machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, loadavg: loadavg() },
  settings: { rounds, duration, clients, streams, servers: count, tool: 'h2load -t 1 (h2c, prior knowledge)' },
  summary,
  ratios,
  rounds: results,
  notes: [...notes, 'h2load judges HTTP statuses only: a gRPC call failing with grpc-status in its trailers counts as 2xx'],
})

const fmt = (n: number | undefined, digits = 0): string => (n === undefined ? '-' : n.toFixed(digits))
const out = [
  `HTTP/2 (h2load, ${clients} connections × ${streams} streams, median of ${rounds} rounds of ${duration} s; machine shared, load average ${loadavg()[0]?.toFixed(1)})`,
  `${'workload'.padEnd(10)}${'target'.padEnd(9)}${'req/s'.padStart(10)}${'mean ms'.padStart(10)}${'failed'.padStart(8)}${'cpu µs/req'.padStart(12)}${'upstream µs'.padStart(13)}`,
  ...summary.map(
    (s) =>
      `${s.workload.padEnd(10)}${s.target.padEnd(9)}${fmt(s.rps).padStart(10)}${fmt(s.meanMs, 2).padStart(10)}${String(s.failed).padStart(8)}${fmt(s.cpuUs, 1).padStart(12)}${fmt(s.upstreamCpuUs, 1).padStart(13)}`,
  ),
  ...ratios.map((r) => `${r.workload}: vigil/direct req/s ${fmt(r.vigilOverDirect, 2)}  vigil/nginx req/s ${fmt(r.vigilOverNginx, 2)}  cpu per request vigil/nginx ${fmt(r.vigilCpuOverNginx, 2)}`),
  ...notes.map((n) => `note: ${n}`),
]
process.stdout.write(`${out.join('\n')}\n`)
