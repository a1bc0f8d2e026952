// `npm run demo`: three demo providers (a, b, c) on loopback and vigil in front of them, configured the way an
// operator should: a 503 counts against its provider and is retried on another, so a broken provider costs the
// client nothing. SIGINT, SIGTERM and SIGHUP stop the providers and vigil, then the demo exits 0; the providers
// also exit on their own if the demo dies without a word (their stdin closes).
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Vigil } from '../index.js'
import { demoConfig } from './config.js'

const providerScript = fileURLToPath(new URL('./provider.js', import.meta.url))
const NAMES = ['a', 'b', 'c'] as const

interface Running {
  name: string
  child: ChildProcess
  address: string
  exited: Promise<void>
}

function startProvider(name: string): Promise<Running> {
  const child = spawn(process.execPath, [providerScript, '--name', name, '--exit-with-parent'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`provider ${name} exited with ${code}`)))
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', (line) =>
      resolve({ name, child, address: `127.0.0.1:${(JSON.parse(line) as { port: number }).port}`, exited }),
    )
  })
}

const port = process.env['VIGIL_DEMO_PORT'] ?? '8080'
const adminPort = process.env['VIGIL_DEMO_ADMIN_PORT'] ?? '9901'
const providers = await Promise.all(NAMES.map(startProvider))
const vigil = new Vigil(demoConfig(port, adminPort, providers.map((p) => p.address)))

async function stopProviders(): Promise<void> {
  for (const p of providers) p.child.kill('SIGTERM')
  await Promise.all(providers.map((p) => p.exited))
}

try {
  await vigil.start()
} catch (err) {
  await stopProviders()
  process.stderr.write(`demo: ${(err as Error).message}; set VIGIL_DEMO_PORT / VIGIL_DEMO_ADMIN_PORT to free ports\n`)
  process.exit(1)
}

const b = providers[1] as Running
const table = providers.map((p) => `    ${p.name}  ${p.address}${p.name === 'a' ? '  (weight 2)' : ''}`).join('\n')
process.stderr.write(`
vigil demo is running (pid ${process.pid})
  send traffic:  curl http://127.0.0.1:${port}/          (answers "hello from a|b|c")
  status page:   http://127.0.0.1:${adminPort}/status?format=html   (json: /status, metrics: /metrics)
  providers (the status page lists them by address):
${table}

  break provider b:  curl 'http://${b.address}/_control?status=503'   (or ?delay=2000; repair with ?status=200&delay=0)
  then send traffic: for i in $(seq 10); do curl -s http://127.0.0.1:${port}/; done
    every answer is still 200: b's 503s are retried on a or c (x-vigil-attempts: 2 on those answers);
  watch on the status page, row ${b.address}:
    its failures count up and after 2 it is ejected (passive health) for 10 s;
    its checks of /healthz fail, and after 3 of them (about 6 s) its status turns down (active health);
    after the repair it passes 2 checks (about 4 s) and is up again.
  Ctrl-C (or kill ${process.pid}) stops everything.

`)

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (stopping) return
    stopping = true
    void Promise.all([stopProviders(), vigil.stop(2_000)]).then(() => process.exit(0))
  })
}
