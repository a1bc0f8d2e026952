// `npm run demo`: three demo providers on loopback and vigil in front of them.
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Vigil, type Config } from '../index.js'

const providerScript = fileURLToPath(new URL('./provider.js', import.meta.url))

function startProvider(name: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [providerScript, '--name', name], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`provider ${name} exited with ${code}`)))
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', (line) => resolve({ child, port: (JSON.parse(line) as { port: number }).port }))
  })
}

const port = process.env['VIGIL_DEMO_PORT'] ?? '8080'
const adminPort = process.env['VIGIL_DEMO_ADMIN_PORT'] ?? '9901'
const providers = await Promise.all(['a', 'b', 'c'].map(startProvider))
const config: Config = {
  listeners: [{ address: `127.0.0.1:${port}`, upstream: 'demo' }],
  admin: { address: `127.0.0.1:${adminPort}` },
  log: { level: 'info' },
  upstreams: {
    demo: {
      balance: 'round_robin',
      servers: providers.map((p, i) => ({ address: `127.0.0.1:${p.port}`, weight: i === 0 ? 2 : 1 })),
      active: { type: 'http', interval: '2s', rise: 2, fall: 3, http: { path: '/healthz' } },
    },
  },
}
const vigil = new Vigil(config)
const stopAll = (): void => {
  for (const p of providers) p.child.kill('SIGTERM')
}
try {
  await vigil.start()
} catch (err) {
  stopAll()
  console.error(`demo: could not start vigil (${(err as Error).message}); set VIGIL_DEMO_PORT / VIGIL_DEMO_ADMIN_PORT to free ports`)
  process.exit(1)
}
const controls = providers.map((p, i) => `    ${'abc'[i]}: curl 'http://127.0.0.1:${p.port}/_control?status=503'   (or ?delay=500, ?status=200)`).join('\n')
process.stderr.write(`
vigil demo is running
  send traffic:  curl http://127.0.0.1:${port}/
  status page:   http://127.0.0.1:${adminPort}/status?format=html   (json: /status)
  break a provider:
${controls}
  Ctrl-C stops everything.

`)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    stopAll()
    void vigil.stop(2_000).then(() => process.exit(0))
  })
}
