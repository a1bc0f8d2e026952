// The baseline for `npm run bench`: a plain node-http-proxy forwarder with a keep-alive agent, round robin over
// the targets given as arguments (host:port ...). Prints {"port"} on stdout once it listens.
import { createServer, Agent } from 'node:http'
import type { AddressInfo } from 'node:net'
import httpProxy from 'http-proxy'

const targets = process.argv.slice(2).map((a) => `http://${a}`)
const agent = new Agent({ keepAlive: true, maxSockets: 256 })
const proxy = httpProxy.createProxyServer({ agent, xfwd: true })
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' })
  res.end('bad gateway\n')
})
let next = 0
const server = createServer((req, res) => {
  proxy.web(req, res, { target: targets[next] })
  next = (next + 1) % targets.length
})
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`))
process.on('SIGTERM', () => {
  server.close(() => process.exit(0))
  server.closeIdleConnections()
})
