// The "fake alive" case from the passive-health issue, small and self-contained: 16 closed-loop clients,
// three providers, one frozen with SIGSTOP for a while. Runs vigil with passive health only (stall detection
// off), with stall detection (the default), and with hedging, and nginx with the equivalent max_fails /
// fail_timeout / proxy_next_upstream config when it is installed; reports what the clients saw.
// Loopback only, bounded (about 4 × (freeze + 2 s)), stops by itself.
// Usage: npm run build && node dist/bench/passive-freeze.js [--freeze 6] [--clients 16]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
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

/** Drive `url` with the closed-loop clients while provider 0 freezes and thaws. */
async function drive(url: string, ps: Provider[]): Promise<Result> {
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
  return result
}

async function runVigil(setup: Partial<Upstream>, ps: Provider[]): Promise<Result> {
  const vigil = await new Vigil(
    {
      listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
      upstreams: { api: { servers: ps.map((p) => ({ address: p.address })), timeouts: { response: RESPONSE_TIMEOUT }, ...setup } },
    },
    { logger: pino({ level: 'silent' }), admin: false },
  ).start()
  try {
    return await drive(`http://127.0.0.1:${vigil.listenerAddresses[0]?.port}/`, ps)
  } finally {
    await vigil.stop(1000)
  }
}

async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise((r) => s.close(r))
  return port
}

/** nginx with vigil's defaults spelled in nginx: max_fails=1 fail_timeout=10s, proxy_next_upstream error timeout. */
async function runNginx(ps: Provider[]): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-nginx-'))
  mkdirSync(join(dir, 'logs'))
  const port = await freePort()
  const servers = ps.map((p) => `server ${p.address} max_fails=1 fail_timeout=10s;`).join(' ')
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log crit;
events { worker_connections 4096; }
http { access_log off;
  upstream api { ${servers} keepalive 64; }
  server { listen 127.0.0.1:${port};
    location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_connect_timeout 2s; proxy_read_timeout ${RESPONSE_TIMEOUT}; proxy_next_upstream error timeout; } } }
`,
  )
  const nginx = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'ignore' })
  try {
    for (let i = 0; i < 100; i++) {
      try {
        await fetch(`http://127.0.0.1:${port}/`)
        break
      } catch {
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    return await drive(`http://127.0.0.1:${port}/`, ps)
  } finally {
    const exited = new Promise((r) => nginx.once('exit', r))
    nginx.kill('SIGTERM')
    await exited
    rmSync(dir, { recursive: true, force: true })
  }
}

function report(name: string, r: Result): void {
  process.stdout.write(`${name.padEnd(20)} ${String(r.requests).padStart(9)} ${String(r.errors).padStart(7)} ${String(r.slow).padStart(5)} ${String(Math.round(r.maxMs)).padStart(8)}\n`)
}

const ps = await Promise.all([0, 1, 2].map((i) => provider(`p${i}`)))
try {
  process.stdout.write(`${clients} closed-loop clients, 3 providers, one frozen ${freezeMs / 1000}s, response timeout ${RESPONSE_TIMEOUT}\n`)
  process.stdout.write(`setup                 requests  errors  >1s   max ms\n`)
  for (const [name, setup] of Object.entries(SETUPS)) report(name, await runVigil(setup, ps))
  if (spawnSync('nginx', ['-v']).status === 0) report('nginx', await runNginx(ps))
  else process.stdout.write('nginx: not installed, skipped\n')
} finally {
  for (const p of ps) {
    signal(p, 'SIGCONT')
    signal(p, 'SIGKILL')
  }
}
