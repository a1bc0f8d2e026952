// The reference row of `npm run bench`: the least a forwarder built on undici can do, with no health logic, so
// vigil's own cost is what it spends beyond this. Raw headers in, hop-by-hop filtered, `dispatch`, raw headers
// out; round robin over the targets given as arguments (host:port ...). Prints {"port"} once it listens.
// `--like-vigil FRAGMENT.json` (an upstream fragment such as peers/vigil-throughput.json): the same forwarder with
// the settings vigil would run that fragment with (its listener limits and timeouts, its undici pool options) and
// the four forwarding headers vigil adds, so what vigil spends beyond it is its own logic, not its settings.
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { Pool, type Dispatcher } from 'undici'
import { applyServerLimits, resolveLimits, serverOptions } from '../../src/proxy/limits.js'
import { connections } from '../../src/upstream/upstream.js'
import { http1PoolOptions } from '../../src/upstream/peer.js'
import type { Upstream as UpstreamConfig } from '../../src/config/schema.js'

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'])
const { values, positionals } = parseArgs({ allowPositionals: true, options: { 'like-vigil': { type: 'string' } } })
const like = values['like-vigil'] === undefined ? undefined : (JSON.parse(readFileSync(values['like-vigil'], 'utf8')) as UpstreamConfig)
const poolOptions: Pool.Options = like === undefined ? { connections: 256, pipelining: 1 } : http1PoolOptions(connections(like).pool)
const pools = positionals.map((a) => new Pool(`http://${a}`, poolOptions))
const limits = resolveLimits(undefined)

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
const server = createServer(like === undefined ? {} : serverOptions(limits), (req: IncomingMessage, res: ServerResponse) => {
  const raw = req.rawHeaders
  const headers: string[] = []
  let body: IncomingMessage | null = null
  let host: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const lower = (raw[i] as string).toLowerCase()
    if (lower === 'content-length' || lower === 'transfer-encoding') body = req
    if (!HOP.has(lower)) headers.push(raw[i] as string, raw[i + 1] as string)
    if (like !== undefined && lower === 'host') host = raw[i + 1] as string
  }
  if (like !== undefined) {
    const client = req.socket.remoteAddress ?? ''
    headers.push('x-forwarded-for', client, 'x-forwarded-proto', 'http')
    if (host !== undefined) headers.push('x-forwarded-host', host)
    headers.push('forwarded', `for=${client};proto=http${host === undefined ? '' : `;host="${host}"`}`)
  }
  const pool = pools[next] as Pool
  next = (next + 1) % pools.length
  pool.dispatch({ path: req.url ?? '/', method: req.method as Dispatcher.HttpMethod, headers, body }, new Relay(res))
})
server.keepAliveTimeout = 65_000
if (like !== undefined) applyServerLimits(server, limits)
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`))
process.on('SIGTERM', () => {
  server.close(() => process.exit(0))
  server.closeIdleConnections()
})
