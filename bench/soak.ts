// npm run soak [-- --duration 10m --kill-every 1m --sample-every 10s --concurrency 8]
// Mixed load through vigil for a long time while providers are killed and restarted; watches vigil's memory and
// descriptors for leaks and counts every error that was not a deliberate fault. Loopback only; stops by itself.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { ms } from '../src/config/duration.js'
import type { Config } from '../src/index.js'
import type { SoakStats } from './soak-vigil.js'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10m' },
    'kill-every': { type: 'string', default: '1m' },
    'down-for': { type: 'string', default: '5s' },
    'sample-every': { type: 'string', default: '10s' },
    concurrency: { type: 'string', default: '8' },
    providers: { type: 'string', default: '3' },
  },
})
const duration = ms(args.duration as `${number}s`)
const killEvery = ms(args['kill-every'] as `${number}s`)
const downFor = ms(args['down-for'] as `${number}s`)
const sampleEvery = ms(args['sample-every'] as `${number}s`)
const concurrency = Number(args.concurrency)
const providerCount = Number(args.providers)

const dist = fileURLToPath(new URL('../', import.meta.url))
const children = new Set<ChildProcess>()

function stopChild(child: ChildProcess): void {
  try {
    process.kill(-(child.pid as number), 'SIGKILL')
  } catch {
    // already gone
  }
}
process.on('exit', () => children.forEach(stopChild))
process.on('SIGINT', () => process.exit(130))

async function startProvider(name: string, port = 0): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, [`${dist}src/demo/provider.js`, '--name', name, '--port', String(port)], { stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  children.add(child)
  child.once('exit', () => children.delete(child))
  const [line] = (await once(createInterface({ input: child.stdout as NodeJS.ReadableStream }), 'line')) as [string]
  return { port: (JSON.parse(line) as { port: number }).port, child }
}

const providers = await Promise.all(Array.from({ length: providerCount }, (_, i) => startProvider(`p${i}`)))
const config: Config = {
  listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
  log: { level: 'warn' },
  upstreams: { api: { servers: providers.map((p) => ({ address: `127.0.0.1:${p.port}` })), timeouts: { connect: '1s', response: '5s', idle: '5s' } } },
}
const vigilChild = fork(`${dist}bench/soak-vigil.js`, [JSON.stringify(config)], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
children.add(vigilChild)
let vigilExited = false
vigilChild.once('exit', (code, signal) => {
  vigilExited = true
  if (!stopping) console.error(`vigil exited unexpectedly (code ${code}, signal ${signal})`)
})
const [{ port }] = (await once(vigilChild, 'message')) as [{ port: number }]
const base = `http://127.0.0.1:${port}`

function vigilStats(): Promise<SoakStats> {
  vigilChild.send('stats')
  return new Promise((resolve) => {
    const onMessage = (m: { stats?: SoakStats }): void => {
      if (m.stats === undefined) return
      vigilChild.off('message', onMessage)
      resolve(m.stats)
    }
    vigilChild.on('message', onMessage)
  })
}

// Outcome counters. A 502/503/504 or a cut response is a deliberate fault only near a kill; anything else is unexpected.
const counts = { ok: 0, faultStatus: 0, cut: 0, aborted: 0, unexpected: 0 }
const unexpected: string[] = []
let lastKill = -Infinity
const nearKill = (): boolean => Date.now() - lastKill < downFor + 6_000
function bad(what: string): void {
  if (nearKill()) counts.cut++
  else {
    counts.unexpected++
    if (unexpected.length < 20) unexpected.push(`${new Date().toISOString()} ${what}`)
  }
}

const keepAlive = new Agent({ keepAliveTimeout: 4_000, connections: concurrency })
const upload = Buffer.alloc(256 * 1024, 0x62)
let stopping = false

/** Keep-alive requests through undici: small and large bodies both ways, some aborted mid-response. */
async function keepAliveWorker(seed: number): Promise<void> {
  for (let i = seed; !stopping; i++) {
    const kind = i % 10
    const abort = kind === 9 ? new AbortController() : undefined
    try {
      const res = await request(kind === 7 || kind === 9 ? `${base}/large?bytes=${1 << 20}` : `${base}/small?i=${i}`, {
        method: kind === 8 ? 'POST' : 'GET',
        body: kind === 8 ? upload : undefined,
        dispatcher: keepAlive,
        signal: abort?.signal,
      })
      if (abort !== undefined) {
        // A client that goes away after the first chunk of a large response.
        for await (const _ of res.body) {
          abort.abort()
          break
        }
        counts.aborted++
        continue
      }
      await res.body.dump({ limit: 2 << 20 })
      if (res.statusCode === 200) counts.ok++
      else if (res.statusCode >= 502 && res.statusCode <= 504 && nearKill()) counts.faultStatus++
      else bad(`status ${res.statusCode}`)
    } catch (err) {
      if (abort?.signal.aborted === true) counts.aborted++
      else bad(`keep-alive: ${(err as Error).message}`)
    }
  }
}

/** One connection per request (Connection: close), through node:http. */
async function closeWorker(seed: number): Promise<void> {
  for (let i = seed; !stopping; i++) {
    const status = await new Promise<number | string>((resolve) => {
      const req = httpRequest(`${base}/close?i=${i}`, { agent: false, headers: { connection: 'close' } }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode as number))
        res.on('error', (e) => resolve(e.message))
      })
      req.on('error', (e) => resolve(e.message))
      req.end()
    })
    if (status === 200) counts.ok++
    else if (typeof status === 'number' && status >= 502 && status <= 504 && nearKill()) counts.faultStatus++
    else bad(`close: ${status}`)
  }
}

const mb = (n: number): string => (n / 1048576).toFixed(1)
const started = Date.now()
const samples: (SoakStats & { t: number; requests: number })[] = []
const total = (): number => counts.ok + counts.faultStatus + counts.cut + counts.aborted + counts.unexpected

console.log(`soak: ${args.duration} of mixed load, ${concurrency} workers, ${providerCount} providers, one killed every ${args['kill-every']} for ${args['down-for']}`)
console.log('   t(s)   rss(MB)  heap(MB)  ext(MB)   fds  sockets   req/s  errors')
const workers = Array.from({ length: concurrency }, (_, i) => (i % 4 === 3 ? closeWorker(i) : keepAliveWorker(i * 1000)))

// Aborted at the end, so the run does not wait out the killer's sleep.
const done = new AbortController()
const killer = (async () => {
  for (let n = 0; !stopping; n++) {
    try {
      await sleep(killEvery, undefined, { signal: done.signal })
    } catch {
      return
    }
    const victim = n % providers.length
    const p = providers[victim]!
    lastKill = Date.now()
    stopChild(p.child)
    await once(p.child, 'exit')
    await sleep(downFor)
    providers[victim] = await startProvider(`p${victim}`, p.port)
  }
})()

let lastCount = 0
while (Date.now() - started < duration && !vigilExited) {
  await sleep(Math.min(sampleEvery, duration - (Date.now() - started)))
  const s = await vigilStats()
  const t = Math.round((Date.now() - started) / 1000)
  const rate = Math.round((total() - lastCount) / (sampleEvery / 1000))
  lastCount = total()
  samples.push({ ...s, t, requests: total() })
  console.log(
    `${String(t).padStart(7)} ${mb(s.rss).padStart(9)} ${mb(s.heapUsed).padStart(9)} ${mb(s.external).padStart(8)} ${String(s.fds).padStart(5)} ${String(s.sockets).padStart(8)} ${String(rate).padStart(7)} ${String(s.errors).padStart(7)}`,
  )
}

stopping = true
done.abort()
await Promise.all([...workers, killer])
await keepAlive.close()
// Let vigil's own keep-alive pools to the providers expire (4 s) before counting what is left open.
await sleep(6_000)
const end = vigilExited ? undefined : await vigilStats()

const afterWarmup = samples.find((s) => s.t >= Math.min(120, duration / 1000 / 5)) ?? samples[0]
const last = samples[samples.length - 1]
console.log('\nrequests:', JSON.stringify({ total: total(), ...counts }))
if (afterWarmup !== undefined && last !== undefined && end !== undefined) {
  const growth = (a: number, b: number): string => `${(((b - a) / a) * 100).toFixed(1)}%`
  console.log(`memory from t=${afterWarmup.t}s to t=${last.t}s: rss ${mb(afterWarmup.rss)} -> ${mb(last.rss)} MB (${growth(afterWarmup.rss, last.rss)}), heap ${mb(afterWarmup.heapUsed)} -> ${mb(last.heapUsed)} MB (${growth(afterWarmup.heapUsed, last.heapUsed)})`)
  console.log(`descriptors: at t=${afterWarmup.t}s ${afterWarmup.fds} fds / ${afterWarmup.sockets} sockets under load; at the end, idle: ${end.fds} fds / ${end.sockets} sockets`)
  console.log(`vigil error/fatal log lines: ${end.errors}${end.lastError === undefined ? '' : ` (last: ${end.lastError})`}`)
}
if (unexpected.length > 0) console.log('unexpected errors (first 20):\n  ' + unexpected.join('\n  '))
const failed = counts.unexpected > 0 || end === undefined || end.errors > 0
if (end !== undefined) {
  vigilChild.send('stop')
  await once(vigilChild, 'exit')
}
providers.forEach((p) => stopChild(p.child))
process.exit(failed ? 1 : 0)
