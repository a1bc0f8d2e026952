// `node dist/bench/side-by-side.js [options] TARGET...`: proxies measured at the same moment, each under its own
// autocannon process, so a noisy machine slows them alike; CPU time per request from /proc for each, and per
// round the ratio of every target to the first. Where `npm run bench` runs targets one after another (rounds
// interleaved), this answers "does this setting or build cost anything" to a few percent: the same build against
// itself gives per-round ratios of about ±10% on a loaded 2-core VM, and a median of 10 rounds about ±3%.
//
// TARGET: `undici` (the minimal forwarder), `undici-like-vigil` (the same with vigil's settings for
// vigil-throughput.json and its forwarding headers: what vigil spends beyond it is its own logic), or `vigil[:OVERRIDES.json][@ROOT]`: vigil with
// bench/peers/vigil-throughput.json, `OVERRIDES.json` merged in (`{ "listener": {...}, "upstream": {...} }`),
// built in the checkout at ROOT (default: this one), e.g. comparing a branch's worktree with main.
//   node dist/bench/side-by-side.js --rounds 10 --duration 4 undici vigil vigil:nofwd.json
//   node dist/bench/side-by-side.js --rate 2000 undici vigil vigil@/tmp/old   (each at 2,000 req/s)
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { firstJsonLine, freePort, groupCpuMs, Proc, root, waitForPort } from './lib/procs.js'
import { peersDir, startHelloUpstream, vigilConfig } from './lib/proxies.js'
import { median } from './lib/results.js'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '8' },
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '25' },
    // Requests per second for each target, paced evenly (lib/paced.ts); 0: as fast as each goes (autocannon). At
    // a fixed rate CPU per request shows what a proxy spends besides forwarding (timers, checks, batching) where
    // nothing queues, and the p99 printed is that of a hop at rest.
    rate: { type: 'string', default: '0' },
  },
})
if (positionals.length < 2) {
  process.stderr.write('usage: side-by-side [--rounds N] [--duration S] [--connections C] [--rate R] TARGET TARGET...\n')
  process.exit(2)
}

interface Target {
  name: string
  port: number
  proc: Proc
  dir?: string
}

const upstream = await startHelloUpstream(3)
const base = JSON.parse(await readFile(`${peersDir}vigil-throughput.json`, 'utf8')) as Record<string, unknown>

async function start(spec: string): Promise<Target> {
  if (spec === 'undici' || spec === 'undici-like-vigil') {
    const like = spec === 'undici' ? [] : ['--like-vigil', `${peersDir}vigil-throughput.json`]
    const proc = new Proc(spec, process.execPath, [`${root}dist/bench/lib/undici-forwarder.js`, ...like, ...upstream.servers])
    return { name: spec, port: (await firstJsonLine<{ port: number }>(proc)).port, proc }
  }
  const [what, checkout = root] = spec.split('@') as [string, string?]
  const overrides = what.includes(':') ? (JSON.parse(await readFile(what.slice(what.indexOf(':') + 1), 'utf8')) as { listener?: Record<string, unknown>; upstream?: Record<string, unknown> }) : {}
  const dir = await mkdtemp(join(tmpdir(), 'vigil-side-'))
  const [port, admin] = [await freePort(), await freePort()]
  const config = vigilConfig(port, admin, upstream.servers, { ...base, ...overrides.upstream }, undefined, undefined, overrides.listener)
  await writeFile(join(dir, 'vigil.json'), JSON.stringify(config))
  const proc = new Proc(spec, process.execPath, [join(checkout, 'dist/src/cli.js'), 'start', '-c', join(dir, 'vigil.json')])
  await waitForPort(port, 10_000, proc)
  return { name: spec, port, proc, dir }
}

interface Served {
  requests: number
  /** ms, at a fixed rate only. */
  p99?: number
}

/** One load process against `port` for `seconds` (autocannon, or paced-cli at a fixed rate): what it got answered. */
function load(port: number, seconds: number): Promise<Served> {
  const url = `http://127.0.0.1:${port}/`
  const [command, args] =
    values.rate === '0'
      ? [`${root}node_modules/.bin/autocannon`, ['-c', values.connections, '-d', String(seconds), '-j', url]]
      : [process.execPath, [`${root}dist/bench/lib/paced-cli.js`, url, values.rate, String(seconds), values.connections]]
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'] })
    let out = ''
    child.stdout.on('data', (b: Buffer) => (out += b.toString()))
    child.once('error', reject)
    child.once('exit', () => {
      const r = JSON.parse(out) as { requests: number | { total: number }; p99: number }
      resolve(typeof r.requests === 'number' ? { requests: r.requests, p99: r.p99 } : { requests: r.requests.total })
    })
  })
}

const targets: Target[] = []
for (const spec of positionals) targets.push(await start(spec))
await Promise.all(targets.map((t) => load(t.port, 1)))
const cpu = targets.map(() => [] as number[])
const rps = targets.map(() => [] as number[])
const p99 = targets.map(() => [] as number[])
const duration = Number(values.duration)
for (let r = 1; r <= Number(values.rounds); r++) {
  const before = await Promise.all(targets.map((t) => groupCpuMs(t.proc.pid)))
  const served = await Promise.all(targets.map((t) => load(t.port, duration)))
  const after = await Promise.all(targets.map((t) => groupCpuMs(t.proc.pid)))
  targets.forEach((_, i) => {
    const s = served[i] as Served
    cpu[i]?.push((((after[i] ?? 0) - (before[i] ?? 0)) * 1_000) / s.requests)
    rps[i]?.push(s.requests / duration)
    if (s.p99 !== undefined) p99[i]?.push(s.p99)
  })
  const latency = (i: number): string => (p99[i]?.length ? ` p99 ${(p99[i]?.at(-1) ?? 0).toFixed(2)} ms` : '')
  process.stdout.write(`round ${r}: ${targets.map((t, i) => `${t.name} ${(rps[i]?.at(-1) ?? 0).toFixed(0)} req/s ${(cpu[i]?.at(-1) ?? 0).toFixed(1)} µs/req${latency(i)}`).join(' | ')}\n`)
}
const first = targets[0] as Target
for (const [i, t] of targets.entries()) {
  const latency = p99[i]?.length ? `, p99 ${median(p99[i] as number[]).toFixed(2)} ms` : ''
  const line = `${t.name}: median ${median(rps[i] as number[]).toFixed(0)} req/s, ${median(cpu[i] as number[]).toFixed(1)} µs/request${latency}`
  if (i === 0) process.stdout.write(`${line}\n`)
  else {
    const ratios = (cpu[i] as number[]).map((c, r) => c / (cpu[0]?.[r] as number))
    const rpsRatio = median((rps[i] as number[]).map((x, r) => x / (rps[0]?.[r] as number)))
    process.stdout.write(`${line}; ÷ ${first.name}: CPU ${median(ratios).toFixed(3)} [${ratios.map((x) => x.toFixed(2)).join(' ')}], req/s ${rpsRatio.toFixed(3)}\n`)
  }
}
for (const t of targets) {
  await t.proc.stop()
  if (t.dir !== undefined) await rm(t.dir, { recursive: true, force: true })
}
await upstream.stop()
