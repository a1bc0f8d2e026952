// The reference row of `npm run bench`: the least a forwarder built on undici can do, with no health logic, so
// vigil's own cost is what it spends beyond this. Raw headers in, hop-by-hop filtered, `dispatch`, raw headers
// out; round robin over the targets given as arguments (host:port ...). Prints {"port"} once it listens.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool, type Dispatcher } from 'undici'

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'])
const pools = process.argv.slice(2).map((a) => new Pool(`http://${a}`, { connections: 256, pipelining: 1 }))

class Relay implements Dispatcher.DispatchHandler {
  constructor(private readonly res: ServerResponse) {}
  onConnect(): void {}
  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    const headers: string[] = []
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as Buffer).toString('latin1')
      if (!HOP.has(name.toLowerCase())) headers.push(name, (raw[i + 1] as Buffer).toString('latin1'))
    }
    this.res.writeHead(status, headers)
    this.res.on('drain', resume)
    return true
  }
  onData(chunk: Buffer): boolean {
    return this.res.write(chunk)
  }
  onComplete(): void {
    this.res.end()
  }
  onError(): void {
    if (this.res.headersSent) this.res.destroy()
    else this.res.writeHead(502).end()
  }
}

let next = 0
const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  const raw = req.rawHeaders
  const headers: string[] = []
  let body: IncomingMessage | null = null
  for (let i = 0; i < raw.length; i += 2) {
    const lower = (raw[i] as string).toLowerCase()
    if (lower === 'content-length' || lower === 'transfer-encoding') body = req
    if (!HOP.has(lower)) headers.push(raw[i] as string, raw[i + 1] as string)
  }
  const pool = pools[next] as Pool
  next = (next + 1) % pools.length
  pool.dispatch({ path: req.url ?? '/', method: req.method as Dispatcher.HttpMethod, headers, body }, new Relay(res))
})
server.keepAliveTimeout = 65_000
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`))
process.on('SIGTERM', () => {
  server.close(() => process.exit(0))
  server.closeIdleConnections()
})
