// Active checks alone against a frozen and a killed provider, under steady client traffic: client-visible
// errors, requests slower than 1 s, time until the faulty provider was taken out and until it was back.
// (The fault-drill harness compares active, passive and both; this isolates the checker.)
//   npm run build && node dist/bench/active-detection.js
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import { Agent, request } from 'undici'
import { Vigil, type Config } from '../src/index.js'

const providerScript = fileURLToPath(new URL('../src/demo/provider.js', import.meta.url))
const RATE = 100
const check = { type: 'http' as const, interval: '1s', timeout: '1s', rise: 2, fall: 3, http: { path: '/healthz' } }

async function provider(name: string, port = 0): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [providerScript, '--name', name, '--port', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', resolve))
  return { child, port: (JSON.parse(line) as { port: number }).port }
}

interface Outcome {
  ok: boolean
  ms: number
}

async function scenario(fault: 'freeze' | 'kill'): Promise<void> {
  const ps = await Promise.all(['a', 'b', 'c'].map((n) => provider(n)))
  const config: Config = {
    listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
    upstreams: { api: { servers: ps.map((p) => ({ address: `127.0.0.1:${p.port}` })), active: check, timeouts: { response: '10s' } } },
  }
  const vigil = await new Vigil(config, { logger: pino({ level: 'silent' }), admin: false }).start()
  const url = `http://127.0.0.1:${vigil.listenerAddresses[0]?.port}/`
  const faulty = `127.0.0.1:${ps[1]?.port}`
  const marks: Record<string, number> = {}
  const t0 = performance.now()
  vigil.events.on('health', (e) => {
    if (e.server === faulty) marks[e.event] ??= performance.now()
  })
  // Enough client connections that requests hung on the frozen provider never hold up the others.
  const agent = new Agent({ connections: 2_000 })
  const outcomes: Promise<Outcome>[] = []
  let sending = true
  const load = (async () => {
    for (let next = performance.now(); sending; next += 1000 / RATE) {
      const start = performance.now()
      outcomes.push(
        request(url, { dispatcher: agent })
          .then(async (r) => ({ ok: r.statusCode === 200 && (await r.body.text()) !== '', ms: performance.now() - start }))
          .catch(() => ({ ok: false, ms: performance.now() - start })),
      )
      await sleep(Math.max(0, next + 1000 / RATE - performance.now()))
    }
  })()
  await sleep(3_000)
  const faultAt = performance.now()
  let healedAt = 0
  if (fault === 'freeze') {
    ps[1]?.child.kill('SIGSTOP')
    await sleep(10_000)
    ps[1]?.child.kill('SIGCONT')
    healedAt = performance.now()
  } else {
    ps[1]?.child.kill('SIGKILL')
    await sleep(7_000)
    const again = await provider('b', ps[1]?.port)
    ps[1] = again
    healedAt = performance.now()
  }
  await sleep(8_000)
  sending = false
  await load
  const done = await Promise.all(outcomes)
  const s = (t: number | undefined): string => (t === undefined ? 'never' : `${((t - (t > healedAt ? healedAt : faultAt)) / 1000).toFixed(1)} s`)
  console.log(
    `${fault.padEnd(6)}: ${done.length} requests, ${done.filter((o) => !o.ok).length} errors, ${done.filter((o) => o.ms > 1_000).length} slower than 1 s; ` +
      `out after ${s(marks['down'])}, back ${s(marks['up'])} after the fault ended; run ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  )
  await agent.close()
  await vigil.stop(0)
  for (const p of ps) p.child.kill('SIGKILL')
}

console.log(`active checks only: ${RATE} req/s over 3 providers, check ${JSON.stringify(check)}`)
await scenario('freeze')
await scenario('kill')
