// The `slow` scenario per balancing policy: three providers, one adds latency mid-run. For round_robin,
// least_conn, p2c and ewma side by side: throughput while one is slow relative to before, p50/p99, and each
// provider's share of the requests. Every round runs every policy, in an order rotated each round, and the table
// shows medians over rounds, so a burst of load from elsewhere on the machine does not land on one policy.
// Loopback only, bounded (about rounds x 4 x (2 x PHASE + 2) seconds), every process it starts runs in its own
// process group and is killed at the end.
//
//   npm run bench:balance -- [--rounds 3] [--phase 5] [--connections 20] [--delay 50]
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'

const root = fileURLToPath(new URL('../../', import.meta.url))
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, phase: { type: 'string', default: '5' }, connections: { type: 'string', default: '20' }, delay: { type: 'string', default: '50' } } })
const ROUNDS = Number(values.rounds)
const PHASE = Number(values.phase)
const CONNECTIONS = Number(values.connections)
const DELAY = Number(values.delay)
const POLICIES = ['round_robin', 'least_conn', 'p2c', 'ewma'] as const
const NAMES = ['a', 'b', 'c'] as const
/** The provider that slows down. */
const SLOW = 'b'

const children = new Set<ChildProcess>()
function killAll(): void {
  for (const c of children) {
    try {
      process.kill(-(c.pid as number), 'SIGKILL')
    } catch {
      // already gone
    }
  }
  children.clear()
}
process.on('exit', killAll)
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(1))

/** Start a child in its own process group and resolve with the first stdout line `pick` accepts. */
function start<T>(args: string[], pick: (line: string) => T | undefined): Promise<{ child: ChildProcess; value: T }> {
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  children.add(child)
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited early (${code})`)))
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    lines.on('line', (line) => {
      const value = pick(line)
      if (value !== undefined) resolve({ child, value })
    })
  })
}

/** A free loopback port for the admin listener (the config check rejects two listeners both on port 0). */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function served(address: string): Promise<number> {
  const res = await fetch(`http://${address}/_control`)
  return ((await res.json()) as { served: number }).served
}

interface Phase {
  rps: number
  p50: number
  p99: number
  errors: number
  share: Record<string, number>
}

async function phase(url: string, providers: readonly { name: string; address: string }[]): Promise<Phase> {
  const before = await Promise.all(providers.map((p) => served(p.address)))
  const r = await autocannon({ url, connections: CONNECTIONS, duration: PHASE })
  const after = await Promise.all(providers.map((p) => served(p.address)))
  const counts = after.map((n, i) => n - (before[i] as number))
  const total = counts.reduce((s, n) => s + n, 0)
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.non2xx,
    share: Object.fromEntries(providers.map((p, i) => [p.name, (counts[i] as number) / Math.max(1, total)])),
  }
}

async function run(policy: (typeof POLICIES)[number], dir: string): Promise<{ before: Phase; during: Phase }> {
  const providers = await Promise.all(
    NAMES.map(async (name) => {
      const { value } = await start([join(root, 'dist/src/demo/provider.js'), '--name', name], (line) => (JSON.parse(line) as { port: number }).port)
      return { name, address: `127.0.0.1:${value}` }
    }),
  )
  const file = join(dir, `${policy}.json`)
  writeFileSync(
    file,
    JSON.stringify({
      listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
      admin: { address: `127.0.0.1:${await freePort()}` },
      log: { level: 'info' },
      upstreams: { api: { balance: policy, servers: providers.map((p) => ({ address: p.address })) } },
    }),
  )
  const { value: listener } = await start([join(root, 'dist/src/cli.js'), 'start', '--config', file], (line) => {
    const entry = JSON.parse(line) as { msg?: string; listeners?: string[] }
    return entry.msg === 'vigil started' ? entry.listeners?.[0] : undefined
  })
  const url = `http://${listener}/`
  await autocannon({ url, connections: CONNECTIONS, duration: 1 }) // warm-up: pools, JIT, ewma samples
  const before = await phase(url, providers)
  await fetch(`http://${providers[NAMES.indexOf(SLOW)]?.address}/_control?delay=${DELAY}`)
  const during = await phase(url, providers)
  killAll()
  return { before, during }
}

const median = (xs: number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

const dir = mkdtempSync(join(tmpdir(), 'vigil-balance-slow-'))
try {
  const results = new Map<string, { before: Phase; during: Phase }[]>(POLICIES.map((p) => [p, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < POLICIES.length; i++) {
      const policy = POLICIES[(i + round) % POLICIES.length] as (typeof POLICIES)[number]
      results.get(policy)?.push(await run(policy, dir))
      process.stderr.write(`round ${round + 1}/${ROUNDS}: ${policy} done\n`)
    }
  }
  const rows = POLICIES.map((policy) => {
    const runs = results.get(policy) as { before: Phase; during: Phase }[]
    const m = (f: (r: { before: Phase; during: Phase }) => number): number => median(runs.map(f))
    const share = NAMES.map((n) => `${(100 * m((r) => r.during.share[n] as number)).toFixed(1)}%`).join(' / ')
    const errors = runs.reduce((s, r) => s + r.before.errors + r.during.errors, 0)
    return `| ${policy} | ${Math.round(m((r) => r.before.rps))} | ${Math.round(m((r) => r.during.rps))} | ${m((r) => r.during.rps / r.before.rps).toFixed(2)} | ${m((r) => r.before.p50)} / ${m((r) => r.before.p99)} | ${m((r) => r.during.p50)} / ${m((r) => r.during.p99)} | ${share} | ${errors} |`
  })
  process.stdout.write(
    [
      `slow scenario: 3 providers, ${SLOW} adds ${DELAY} ms after the first phase; ${CONNECTIONS} connections, ${PHASE} s per phase, medians of ${ROUNDS} rounds`,
      '',
      '| policy | req/s before | req/s during | during / before | p50 / p99 ms before | p50 / p99 ms during | share a / b (slow) / c during | errors |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
    ].join('\n'),
  )
} finally {
  killAll()
  rmSync(dir, { recursive: true, force: true })
}
