// The "fake alive" case from the passive-health issue, small and self-contained: 16 closed-loop clients,
// three providers, one frozen with SIGSTOP for a while. Runs vigil with passive health only (stall detection
// off), with stall detection (the default), and with hedging, and reports what the clients saw.
// Loopback only, bounded (about 3 × (freeze + 4 s)), stops by itself.
// Usage: npm run build && node dist/bench/passive-freeze.js [--freeze 6] [--clients 16]
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { Agent, request } from 'undici'
import { Vigil } from '../src/index.js'
import type { Upstream } from '../src/config/schema.js'

const dist = fileURLToPath(new URL('../', import.meta.url))
const { values } = parseArgs({ options: { freeze: { type: 'string', default: '6' }, clients: { type: 'string', default: '16' } } })
const freezeMs = Number(values.freeze) * 1000
const clients = Number(values.clients)
const RESPONSE_TIMEOUT = '5s'

const SETUPS: Record<string, Partial<Upstream>> = {
  'passive only': { passive: { stall: { enabled: false } } },
  'passive + stall': {},
  'stall + hedge 200ms': { retry: { perTryTimeout: '200ms', hedge: true } },
}

interface Provider {
  proc: ChildProcess
  address: string
}

async function provider(name: string): Promise<Provider> {
  const proc = spawn(process.execPath, [`${dist}src/demo/provider.js`, '--name', name], { stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  const line = await new Promise<string>((resolve) => createInterface({ input: proc.stdout as NodeJS.ReadableStream }).once('line', resolve))
  return { proc, address: `127.0.0.1:${(JSON.parse(line) as { port: number }).port}` }
}

function signal(p: Provider, sig: NodeJS.Signals): void {
  process.kill(-(p.proc.pid as number), sig)
}

interface Result {
  requests: number
  errors: number
  slow: number
  maxMs: number
}

async function run(setup: Partial<Upstream>, ps: Provider[]): Promise<Result> {
  const vigil = await new Vigil(
    {
      listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
      upstreams: { api: { servers: ps.map((p) => ({ address: p.address })), timeouts: { response: RESPONSE_TIMEOUT }, ...setup } },
    },
    { logger: pino({ level: 'silent' }), admin: false },
  ).start()
  const url = `http://127.0.0.1:${vigil.listenerAddresses[0]?.port}/`
  const agent = new Agent({ connections: clients })
  const result: Result = { requests: 0, errors: 0, slow: 0, maxMs: 0 }
  let stop = false
  const loops = Array.from({ length: clients }, async () => {
    while (!stop) {
      const t0 = performance.now()
      const r = await request(url, { dispatcher: agent })
      await r.body.dump()
      const ms = performance.now() - t0
      result.requests++
      if (r.statusCode !== 200) result.errors++
      if (ms > 1000) result.slow++
      result.maxMs = Math.max(result.maxMs, ms)
    }
  })
  await new Promise((r) => setTimeout(r, 1000))
  signal(ps[0] as Provider, 'SIGSTOP')
  await new Promise((r) => setTimeout(r, freezeMs))
  signal(ps[0] as Provider, 'SIGCONT')
  await new Promise((r) => setTimeout(r, 1000))
  stop = true
  await Promise.all(loops)
  await agent.close()
  await vigil.stop(1000)
  return result
}

const ps = await Promise.all([0, 1, 2].map((i) => provider(`p${i}`)))
try {
  process.stdout.write(`${clients} closed-loop clients, 3 providers, one frozen ${freezeMs / 1000}s, response timeout ${RESPONSE_TIMEOUT}\n`)
  process.stdout.write(`setup                 requests  errors  >1s   max ms\n`)
  for (const [name, setup] of Object.entries(SETUPS)) {
    const r = await run(setup, ps)
    process.stdout.write(`${name.padEnd(20)} ${String(r.requests).padStart(9)} ${String(r.errors).padStart(7)} ${String(r.slow).padStart(5)} ${String(Math.round(r.maxMs)).padStart(8)}\n`)
  }
} finally {
  for (const p of ps) {
    signal(p, 'SIGCONT')
    signal(p, 'SIGKILL')
  }
}
