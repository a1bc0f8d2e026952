// The reference row of `npm run bench`: the least a forwarder built on undici can do, with no health logic, so
// vigil's own cost is what it spends beyond this. Raw headers in, hop-by-hop filtered, `dispatch`, raw headers
// out; round robin over the targets given as arguments (host:port ...). Prints {"port"} once it listens.
// `--like-vigil FRAGMENT.json` (an upstream fragment such as peers/vigil-throughput.json): the same forwarder with
// the settings vigil would run that fragment with (its listener limits and timeouts, its undici pool options) and
// the four forwarding headers vigil adds, so what vigil spends beyond it is its own logic, not its settings.
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { Pool, type Dispatcher } from 'undici'
import type { Upstream as UpstreamConfig } from '../../src/config/schema.js'

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

interface LikeVigil {
  pool: Pool.Options
  server: ServerOptions
  apply(server: Server): void
}

/** vigil's settings for the fragment in `file`; loaded only for --like-vigil, so the plain forwarder loads nothing of vigil's. */
async function likeVigil(file: string): Promise<LikeVigil> {
  const [{ applyServerLimits, resolveLimits, serverOptions }, { connections }, { http1PoolOptions }] = await Promise.all([
    import('../../src/proxy/limits.js'),
    import('../../src/upstream/upstream.js'),
    import('../../src/upstream/peer.js'),
  ])
  const limits = resolveLimits(undefined)
  const fragment = JSON.parse(readFileSync(file, 'utf8')) as UpstreamConfig
  return { pool: http1PoolOptions(connections(fragment).pool), server: serverOptions(limits), apply: (s) => applyServerLimits(s, limits) }
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { 'like-vigil': { type: 'string' } } })
const like = values['like-vigil'] === undefined ? undefined : await likeVigil(values['like-vigil'])
const pools = positionals.map((a) => new Pool(`http://${a}`, like?.pool ?? { connections: 256, pipelining: 1 }))

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
const server = createServer(like?.server ?? {}, (req: IncomingMessage, res: ServerResponse) => {
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
like?.apply(server)
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`))
process.on('SIGTERM', () => {
  server.close(() => process.exit(0))
  server.closeIdleConnections()
})
