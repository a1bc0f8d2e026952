// A small provider for the demo, the tests and the drills: answers every request, and its behaviour
// (status, latency) can be changed at run time through /_control so faults can be scripted.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { realpathSync } from 'node:fs'
import { ServedCounter } from './served-counter.js'

export interface Behaviour {
  status: number
  delay: number
  /** Extra random latency, uniform in [0, jitter) ms, on top of `delay`. */
  jitter: number
  /** This share of requests (%, spread evenly: 20 fails every fifth) is answered 503 instead of `status`. */
  failPercent: number
}

export interface ProviderOptions {
  name: string
  port?: number
  host?: string
  /** Listen backlog; a tiny one lets tests fill the accept queue of a frozen provider. */
  backlog?: number
  /** Per-interval served counts for the drills; see ServedCounter. */
  counter?: ServedCounter
}

export function createProvider(options: ProviderOptions) {
  const behaviour: Behaviour = { status: 200, delay: 0, jitter: 0, failPercent: 0 }
  let served = 0
  /** Requests to /healthz, so tests can count the checks a provider received. */
  let healthz = 0
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/'
    if (url.startsWith('/_control')) {
      const q = new URL(url, 'http://x').searchParams
      if (q.has('status')) behaviour.status = Number(q.get('status'))
      if (q.has('delay')) behaviour.delay = Number(q.get('delay'))
      if (q.has('jitter')) behaviour.jitter = Number(q.get('jitter'))
      if (q.has('failPercent')) behaviour.failPercent = Number(q.get('failPercent'))
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(`${JSON.stringify({ name: options.name, served, healthz, ...behaviour })}\n`)
      return
    }
    if (url === '/healthz') {
      healthz++
      res.writeHead(behaviour.status === 200 ? 200 : 503, { 'content-type': 'text/plain' })
      res.end(behaviour.status === 200 ? 'ok\n' : 'unhealthy\n')
      return
    }
    served++
    options.counter?.record(Date.now())
    // `?bytes=N` asks for a large body (soak and bench runs); otherwise a one-line greeting.
    const bytes = Number(/[?&]bytes=([0-9]+)/.exec(url)?.[1] ?? 0)
    const p = behaviour.failPercent
    const status = p > 0 && Math.floor((served * p) / 100) !== Math.floor(((served - 1) * p) / 100) ? 503 : behaviour.status
    const reply = (): void => {
      const body = bytes > 0 ? Buffer.alloc(bytes, 0x61) : `hello from ${options.name}\n`
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'x-provider': options.name })
      res.end(body)
    }
    // Drain the request body first so uploads do not stall the connection.
    req.resume()
    const delay = behaviour.jitter > 0 ? behaviour.delay + Math.floor(Math.random() * behaviour.jitter) : behaviour.delay
    req.on('end', () => (delay > 0 ? setTimeout(reply, delay) : reply()))
  })
  return {
    server,
    behaviour,
    served: () => served,
    listen: () =>
      new Promise<AddressInfo>((resolve) =>
        server.listen({ port: options.port ?? 0, host: options.host ?? '127.0.0.1', backlog: options.backlog ?? 511 }, () => resolve(server.address() as AddressInfo)),
      ),
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  const { values } = parseArgs({
    options: {
      name: { type: 'string', default: 'provider' },
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      backlog: { type: 'string', default: '511' },
      // --count MS: write {"t","n"} JSON lines to stdout, one per interval of MS milliseconds with traffic.
      count: { type: 'string' },
      // Exit when stdin closes: the parent that started this provider is gone, even if it was SIGKILLed.
      'exit-with-parent': { type: 'boolean', default: false },
    },
  })
  const interval = values.count === undefined ? 0 : Number(values.count)
  const counter = interval > 0 ? new ServedCounter(interval, Date.now(), (b) => process.stdout.write(`${JSON.stringify(b)}\n`)) : undefined
  const provider = createProvider({ name: values.name, port: Number(values.port), host: values.host, backlog: Number(values.backlog), counter })
  const address = await provider.listen()
  // One JSON line on stdout tells the parent where this provider listens.
  process.stdout.write(`${JSON.stringify({ name: values.name, port: address.port, pid: process.pid })}\n`)
  if (counter !== undefined) setInterval(() => counter.roll(Date.now()), interval).unref()
  if (values['exit-with-parent']) {
    process.stdin.on('end', () => process.exit(0))
    process.stdin.resume()
  }
  process.on('SIGTERM', () => {
    counter?.flush()
    provider.server.close(() => process.exit(0))
    provider.server.closeIdleConnections()
  })
}
