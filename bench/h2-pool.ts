// HTTP/2 to providers, measured side by side in one run: undici's Pool over HTTP/1.1, undici's own HTTP/2
// client (allowH2 + useH2c), and vigil's Http2Pool (node:http2 sessions), each sending the same requests to one
// provider process (HTTP/1.1 and h2c ports). Figures: requests/s and this process's CPU time per request.
// Run: npm run build && node dist/bench/h2-pool.js [requests] [concurrency]
import { spawn } from 'node:child_process'
import { createServer as h1Server } from 'node:http'
import { createServer as h2Server } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Client, Pool, type Dispatcher } from 'undici'
import { Http2Pool } from '../src/upstream/h2-pool.js'

const BODY = Buffer.alloc(256, 'x')

if (process.argv[2] === '--provider') {
  const a = h1Server((_req, res) => res.end(BODY)).listen(0, '127.0.0.1')
  const b = h2Server((_req, res) => res.end(BODY)).listen(0, '127.0.0.1')
  await Promise.all([new Promise((r) => a.once('listening', r)), new Promise((r) => b.once('listening', r))])
  process.stdout.write(`${JSON.stringify({ h1: (a.address() as AddressInfo).port, h2: (b.address() as AddressInfo).port })}\n`)
} else {
  const requests = Number(process.argv[2] ?? 20_000)
  const concurrency = Number(process.argv[3] ?? 50)
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--provider'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const ports = await new Promise<{ h1: number; h2: number }>((resolve) => createInterface({ input: child.stdout }).once('line', (l) => resolve(JSON.parse(l) as { h1: number; h2: number })))
  const one = (d: Pick<Dispatcher, 'dispatch'>): Promise<void> =>
    new Promise((resolve, reject) => {
      d.dispatch({ path: '/', method: 'GET', headers: ['host', 'bench'] }, {
        onConnect() {},
        onHeaders: () => true,
        onData: () => true,
        onComplete: () => resolve(),
        onError: reject,
      })
    })
  async function run(name: string, d: Pick<Dispatcher, 'dispatch'>): Promise<void> {
    for (let i = 0; i < 500; i++) await one(d)
    let left = requests
    const cpu = process.cpuUsage()
    const start = performance.now()
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await one(d)
    }))
    const ms = performance.now() - start
    const used = process.cpuUsage(cpu)
    console.log(`${name.padEnd(34)} ${Math.round((requests / ms) * 1000).toString().padStart(7)} req/s  ${((used.user + used.system) / requests).toFixed(1).padStart(6)} µs CPU/request`)
  }
  const undiciH1 = new Pool(`http://127.0.0.1:${ports.h1}`, { connections: 256, pipelining: 1 })
  const undiciH2 = new Client(`http://127.0.0.1:${ports.h2}`, { allowH2: true, useH2c: true, pipelining: 100, maxConcurrentStreams: 100 } as Client.Options)
  const vigilH2 = new Http2Pool({ origin: `http://127.0.0.1:${ports.h2}`, tls: undefined, sessions: 1, maxStreams: 100, connectTimeout: 2_000, headersTimeout: 30_000, bodyTimeout: 60_000, idleTimeout: 60_000, maxResponseSize: undefined })
  console.log(`${requests} GETs, ${concurrency} at once, one provider process; machine shared`)
  await run('undici Pool, HTTP/1.1', undiciH1)
  await run('undici Client, h2c (allowH2)', undiciH2)
  await run('vigil Http2Pool, h2c (node:http2)', vigilH2)
  await Promise.all([undiciH1.close(), undiciH2.close(), vigilH2.close()])
  child.kill('SIGKILL')
}
