// A small provider for the demo, the tests and the drills: answers every request, and its behaviour
// (status, latency) can be changed at run time through /_control so faults can be scripted.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { realpathSync } from 'node:fs'

export interface Behaviour {
  status: number
  delay: number
}

export interface ProviderOptions {
  name: string
  port?: number
  host?: string
  /** Listen backlog; a tiny one lets tests fill the accept queue of a frozen provider. */
  backlog?: number
}

export function createProvider(options: ProviderOptions) {
  const behaviour: Behaviour = { status: 200, delay: 0 }
  let served = 0
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/'
    if (url.startsWith('/_control')) {
      const q = new URL(url, 'http://x').searchParams
      if (q.has('status')) behaviour.status = Number(q.get('status'))
      if (q.has('delay')) behaviour.delay = Number(q.get('delay'))
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(`${JSON.stringify({ name: options.name, served, ...behaviour })}\n`)
      return
    }
    if (url === '/healthz') {
      res.writeHead(behaviour.status === 200 ? 200 : 503, { 'content-type': 'text/plain' })
      res.end(behaviour.status === 200 ? 'ok\n' : 'unhealthy\n')
      return
    }
    served++
    const reply = (): void => {
      const body = `hello from ${options.name}\n`
      res.writeHead(behaviour.status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'x-provider': options.name })
      res.end(body)
    }
    // Drain the request body first so uploads do not stall the connection.
    req.resume()
    req.on('end', () => (behaviour.delay > 0 ? setTimeout(reply, behaviour.delay) : reply()))
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
    },
  })
  const provider = createProvider({ name: values.name, port: Number(values.port), host: values.host, backlog: Number(values.backlog) })
  const address = await provider.listen()
  // One JSON line on stdout tells the parent where this provider listens.
  process.stdout.write(`${JSON.stringify({ name: values.name, port: address.port, pid: process.pid })}\n`)
  process.on('SIGTERM', () => provider.server.close(() => process.exit(0)))
}
