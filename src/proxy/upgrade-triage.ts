// Which Upgrade requests vigil tunnels: only a WebSocket handshake (a GET without a body, RFC 6455 4.1). Any other
// protocol (h2c, TLS/1.2, ...) is served as the plain request it also is, with the Upgrade ignored (what nginx
// does, and what RFC 9110 7.8 allows); a WebSocket handshake that carries a body is refused, not forwarded without it.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'

export type Triage = 'tunnel' | 'plain' | 'refuse'

export function triageUpgrade(req: IncomingMessage): Triage {
  if (req.headers.upgrade?.trim().toLowerCase() !== 'websocket') return 'plain'
  const length = req.headers['content-length']
  const body = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
  return req.method === 'GET' && !body ? 'tunnel' : 'refuse'
}

/** Header fields that only mean something for the upgrade the server declines. */
const UPGRADE_ONLY = new Set(['upgrade', 'http2-settings', 'connection'])

/**
 * Hand the connection back to the HTTP server as if the request had arrived without its upgrade: Node has already
 * parsed it and detached the socket, so the request head is written out again (minus Upgrade, HTTP2-Settings and
 * the Connection tokens naming them) in front of the bytes that followed it, and the server adopts the socket anew.
 */
export function serveWithoutUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, adopt: (socket: Duplex) => void): void {
  const raw = req.rawHeaders
  let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`
  for (let i = 0; i < raw.length; i += 2) {
    if (!UPGRADE_ONLY.has((raw[i] as string).toLowerCase())) text += `${raw[i]}: ${raw[i + 1]}\r\n`
  }
  const tokens = (req.headers.connection ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '' && !UPGRADE_ONLY.has(t.toLowerCase()))
  if (tokens.length > 0) text += `Connection: ${tokens.join(', ')}\r\n`
  if (head.length > 0) socket.unshift(head)
  socket.unshift(Buffer.from(`${text}\r\n`, 'latin1'))
  adopt(socket)
}
