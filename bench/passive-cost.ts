// Hot-path cost of passive health: req/s through vigil with each passive mode on vs passive off, one run,
// side by side. Loopback only, bounded in time (rounds × modes × duration), stops by itself.
// Also the same accounting alone, in-process, as ns per request: steadier than req/s on a shared machine.
// Usage: npm run build && node dist/bench/passive-cost.js [--duration 5] [--rounds 2] [--connections 32]
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import type { Config, Passive } from '../src/config/schema.js'
import { Upstream } from '../src/upstream/upstream.js'
import { Role } from '../src/health/ejection.js'
import type { Waiting } from '../src/health/stall.js'
import { classifyError } from '../src/health/outcome.js'

const dist = fileURLToPath(new URL('../', import.meta.url))
const { values } = parseArgs({ options: { duration: { type: 'string', default: '5' }, rounds: { type: 'string', default: '2' }, connections: { type: 'string', default: '32' } } })
const duration = Number(values.duration)
const rounds = Number(values.rounds)
const connections = Number(values.connections)

const MODES: Record<string, Passive> = {
  off: { maxFails: 0, stall: { enabled: false } },
  nginx: { mode: 'nginx', stall: { enabled: false } },
  consecutive: { mode: 'consecutive', maxFails: 5, stall: { enabled: false } },
  window: { mode: 'window', maxFails: 5, stall: { enabled: false } },
  rate: { mode: 'rate', stall: { enabled: false } },
  'nginx+stall': { mode: 'nginx' },
}

const children: ChildProcess[] = []
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL')
})

/** A child process that prints one JSON line with its port when ready. */
async function child(script: string, args: string[]): Promise<{ proc: ChildProcess; line: string }> {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(proc)
  const line = await new Promise<string>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`${script} exited (${code})`)))
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).once('line', resolve)
  })
  return { proc, line }
}

async function stop(proc: ChildProcess): Promise<void> {
  const exited = new Promise((r) => proc.once('exit', r))
  proc.kill('SIGTERM')
  await exited
}

/** Ask the OS for a free loopback port (vigil's CLI needs a concrete listener address). */
async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise((r) => s.close(r))
  return port
}

async function vigil(dir: string, providers: string[], passive: Passive): Promise<{ proc: ChildProcess; url: string }> {
  const port = await freePort()
  const config: Config = {
    listeners: [{ address: `127.0.0.1:${port}`, upstream: 'api' }],
    admin: { address: `127.0.0.1:${await freePort()}` },
    log: { level: 'warn' },
    upstreams: { api: { servers: providers.map((address) => ({ address })), passive } },
  }
  const file = join(dir, 'vigil.json')
  writeFileSync(file, JSON.stringify(config))
  const proc = spawn(process.execPath, [`${dist}src/cli.js`, 'start', '--config', file], { stdio: ['ignore', 'ignore', 'inherit'] })
  children.push(proc)
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 200; i++) {
    try {
      await fetch(`${url}/`)
      return { proc, url }
    } catch {
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  throw new Error('vigil did not start')
}

/** ns per request of dispatched → responded → settled, 1% failures, for one mode; no sockets involved. */
async function accountingCost(passive: Passive): Promise<number> {
  const u = new Upstream('bench', { servers: [0, 1, 2, 3].map((i) => ({ address: `127.0.0.1:${20_000 + i}` })), passive: { ...passive, maxEjectPercent: 0 } })
  const failure = classifyError({ code: 'ECONNRESET' })
  const w: Waiting = { started: 0, role: Role.Normal, prevWaiting: undefined, nextWaiting: undefined, waitingOn: undefined, stalled() {} }
  const n = 2_000_000
  let elapsed = 0n
  // Batches yield to the event loop so opossum's promise callbacks run, as they would between requests.
  for (let batch = 0; batch < 20; batch++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n / 20; i++) {
      const peer = u.peers[i & 3] as (typeof u.peers)[number]
      const now = Date.now()
      u.passive.dispatched(peer, w, now)
      u.passive.responded(w, now)
      u.passive.settled(peer, w, i % 100 === 0 ? failure : undefined, true, now)
    }
    await new Promise((r) => setImmediate(r))
    elapsed += process.hrtime.bigint() - t0
  }
  await u.close()
  return Number(elapsed) / n
}

async function main(): Promise<void> {
  process.stdout.write(`passive accounting alone (dispatched + responded + settled, 1% failures, cap 0 so nothing ejects)\n`)
  await accountingCost(MODES['off'] as Passive) // JIT warm-up, not reported
  for (const [name, passive] of Object.entries(MODES)) process.stdout.write(`${name.padEnd(12)} ${(await accountingCost(passive)).toFixed(0).padStart(6)} ns/request\n`)

  const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-'))
  const providers = await Promise.all([0, 1, 2].map((i) => child(`${dist}src/demo/provider.js`, ['--name', `p${i}`])))
  const addresses = providers.map((p) => `127.0.0.1:${(JSON.parse(p.line) as { port: number }).port}`)
  const best = new Map<string, number>()
  for (let round = 0; round < rounds; round++) {
    // Alternate the order so drift in the machine's load does not favour one mode.
    const names = round % 2 === 0 ? Object.keys(MODES) : Object.keys(MODES).reverse()
    for (const name of names) {
      const v = await vigil(dir, addresses, MODES[name] as Passive)
      const result = await autocannon({ url: `${v.url}/`, connections, duration })
      await stop(v.proc)
      const rps = result.requests.average
      if (result.non2xx > 0 || result.errors > 0) throw new Error(`${name}: ${result.non2xx} non-2xx, ${result.errors} errors`)
      best.set(name, Math.max(best.get(name) ?? 0, rps))
      process.stderr.write(`round ${round + 1} ${name}: ${Math.round(rps)} req/s\n`)
    }
  }
  const off = best.get('off') as number
  process.stdout.write(`\npassive mode cost, best of ${rounds} × ${duration}s, ${connections} connections, 3 providers\n`)
  process.stdout.write(`mode          req/s     vs off\n`)
  for (const [name, rps] of best) process.stdout.write(`${name.padEnd(12)} ${String(Math.round(rps)).padStart(7)}   ${(rps / off).toFixed(3)}\n`)
  for (const p of providers) await stop(p.proc)
  rmSync(dir, { recursive: true, force: true })
}

await main()
