// Reload drill: steady load through vigil while the config file flips between two provider sets every
// RELOAD_EVERY ms (a rolling deploy on repeat), side by side with the same load and no reloads.
// Loopback only, bounded in time: `npm run build && node dist/bench/reload-drill.js [seconds]`.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import autocannon from 'autocannon'
import pino from 'pino'
import { Vigil, type Config } from '../src/index.js'

const SECONDS = Number(process.argv[2] ?? 10)
const RELOAD_EVERY = 200
const provider = fileURLToPath(new URL('../src/demo/provider.js', import.meta.url))

async function spawnProvider(name: string): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, [provider, '--name', name], { stdio: ['ignore', 'pipe', 'inherit'] })
  const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', resolve))
  return { child, address: `127.0.0.1:${(JSON.parse(line) as { port: number }).port}` }
}

const config = (servers: string[]): Config => ({
  listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
  admin: { address: '127.0.0.1:0' },
  reload: { debounce: 20 },
  log: { level: 'silent' },
  upstreams: { api: { servers: servers.map((address) => ({ address })) } },
})

function write(file: string, c: Config): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(c))
  renameSync(`${file}.tmp`, file)
}

async function run(reloading: boolean, sets: string[][]): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-drill-'))
  const file = join(dir, 'vigil.json')
  write(file, config(sets[0] as string[]))
  const vigil = await new Vigil(config(sets[0] as string[]), { configFile: file, logger: pino({ level: 'silent' }) }).start()
  let flips = 0
  const timer = reloading ? setInterval(() => write(file, config(sets[++flips % 2] as string[])), RELOAD_EVERY) : undefined
  const port = (vigil.listenerAddresses[0] as AddressInfo).port
  const result = await autocannon({ url: `http://127.0.0.1:${port}/`, connections: 16, duration: SECONDS })
  clearInterval(timer)
  const out = { requests: result.requests.total, rps: Math.round(result.requests.average), p99ms: result.latency.p99, non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts, generations: vigil.generation - 1 }
  await vigil.stop(1_000)
  rmSync(dir, { recursive: true, force: true })
  return out
}

const providers = await Promise.all(['a', 'b', 'c', 'd'].map(spawnProvider))
try {
  const sets = [providers.slice(0, 2).map((p) => p.address), providers.slice(2).map((p) => p.address)]
  const steady = await run(false, sets)
  const reloading = await run(true, sets)
  process.stdout.write(`${JSON.stringify({ seconds: SECONDS, reloadEveryMs: RELOAD_EVERY, steady, reloading, rpsRatio: Number((reloading['rps'] as number / (steady['rps'] as number)).toFixed(2)) }, null, 2)}\n`)
} finally {
  for (const p of providers) p.child.kill('SIGKILL')
}
