// What a client may send and how slowly, enforced mostly by Node's own HTTP parser and timers, configured here
// (listener `limits`). Everything over a limit gets a short 4xx with an x-vigil-error code, or a closed connection.
import type { IncomingMessage, ServerOptions } from 'node:http'
import { Http2ServerRequest } from 'node:http2'
import type { Duplex } from 'node:stream'
import type { ClientLimits as LimitsConfig } from '../config/schema.js'
import { ms } from '../config/duration.js'
import { sendRawError } from './respond.js'
import { readRequestHead, type RequestHead } from './headers.js'

/** Defaults; each is documented with its config key in README ("Client limits"). */
export const DEFAULT_LIMITS = {
  /** Slowloris: the request line and headers must all arrive within this time (Node answers 408). */
  headersTimeout: 20_000,
  /** The whole request, body included, must arrive within this time (408); 0 turns it off, for long uploads. */
  requestTimeout: 300_000,
  /** A connection with no traffic either way (a client that stopped reading or sending) is closed. */
  idleTimeout: 120_000,
  keepAliveTimeout: 65_000,
  maxHeaderSize: 16_384,
  maxHeaders: 200,
  allowTrace: false,
  allowUserinfo: false,
} as const

export interface Limits {
  headersTimeout: number
  requestTimeout: number
  idleTimeout: number
  keepAliveTimeout: number
  maxHeaderSize: number
  maxHeaders: number
  allowTrace: boolean
  allowUserinfo: boolean
}

export function resolveLimits(config: LimitsConfig | undefined): Limits {
  return {
    headersTimeout: ms(config?.headersTimeout ?? DEFAULT_LIMITS.headersTimeout),
    requestTimeout: ms(config?.requestTimeout ?? DEFAULT_LIMITS.requestTimeout),
    idleTimeout: ms(config?.idleTimeout ?? DEFAULT_LIMITS.idleTimeout),
    keepAliveTimeout: ms(config?.keepAliveTimeout ?? DEFAULT_LIMITS.keepAliveTimeout),
    maxHeaderSize: config?.maxHeaderSize ?? DEFAULT_LIMITS.maxHeaderSize,
    maxHeaders: config?.maxHeaders ?? DEFAULT_LIMITS.maxHeaders,
    allowTrace: config?.allowTrace ?? DEFAULT_LIMITS.allowTrace,
    allowUserinfo: config?.allowUserinfo ?? DEFAULT_LIMITS.allowUserinfo,
  }
}

/** Options for http.createServer / https.createServer. */
export function serverOptions(limits: Limits): ServerOptions {
  return {
    // Node's timers: headersTimeout must not exceed requestTimeout when both are on.
    headersTimeout: limits.requestTimeout === 0 ? limits.headersTimeout : Math.min(limits.headersTimeout, limits.requestTimeout),
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    maxHeaderSize: limits.maxHeaderSize,
    // Strict parsing is what stops request smuggling (CL+TE, duplicate CL, bare CR/LF): never relax it.
    insecureHTTPParser: false,
    // Node checks the two timeouts above only this often (30 s by default).
    connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(limits.headersTimeout / 4))),
    // Checked by rejectRequest instead, to answer with the same x-vigil-error form as every other rejection.
    requireHostHeader: false,
    joinDuplicateHeaders: false,
  }
}

/** Settings Node has only as server properties, not constructor options. */
export function applyServerLimits(server: { maxHeadersCount: number | null; timeout: number }, limits: Limits): void {
  // One more than allowed, so a request over the limit is visible (Node silently drops headers past the count).
  server.maxHeadersCount = limits.maxHeaders + 1
  server.timeout = limits.idleTimeout
}

export interface Rejection {
  status: 400 | 405 | 431 | 501 | 505
  code: string
  detail: string
}

const TOO_MANY: Rejection = { status: 431, code: 'too_many_headers', detail: 'too many request header fields' }
const TWO_HOSTS: Rejection = { status: 400, code: 'duplicate_host', detail: 'more than one Host header' }
const VERSION: Rejection = { status: 505, code: 'http_version', detail: 'only HTTP/1.0 and HTTP/1.1 are spoken here' }
const NO_HOST: Rejection = { status: 400, code: 'missing_host', detail: 'an HTTP/1.1 request needs a Host header' }
const BAD_HOST: Rejection = { status: 400, code: 'invalid_host', detail: 'the Host header is not a valid host[:port]' }
const TE_IN_10: Rejection = { status: 400, code: 'bad_framing', detail: 'Transfer-Encoding is not allowed in an HTTP/1.0 request' }
/** RFC 9112 6.3: a request whose last transfer coding is not chunked has no reliable length. */
const TE_NOT_CHUNKED: Rejection = { status: 400, code: 'bad_framing', detail: 'the last Transfer-Encoding of a request must be chunked' }
const TE_CODING: Rejection = { status: 501, code: 'unsupported_transfer_coding', detail: 'only Transfer-Encoding: chunked is supported' }
const TRACE: Rejection = { status: 405, code: 'method_not_allowed', detail: 'TRACE is not allowed (limits.allowTrace)' }
const USERINFO: Rejection = { status: 400, code: 'userinfo_in_target', detail: 'a request target with user:password@ is not allowed (limits.allowUserinfo)' }

/** RFC 9112 3.2 / RFC 3986 3.2.2: an IP literal or a reg-name, then an optional port; nothing else (no space, '/', '@'). */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$/
/** An absolute-form target whose authority carries userinfo. */
const USERINFO_TARGET = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*@/

/** What Node's parser accepts but a proxy must not pass on; undefined for a fine request. `head` is read from its raw headers. */
export function rejectRequest(req: IncomingMessage, limits: Limits, head: RequestHead = readRequestHead(req.rawHeaders)): Rejection | undefined {
  if (req.rawHeaders.length > limits.maxHeaders * 2) return TOO_MANY
  // "HTTP/2.0" in an HTTP/1 request line is no HTTP/2 stream: only a request that came in on an HTTP/2 session is one.
  if (req.httpVersionMajor !== 1 && !(req instanceof Http2ServerRequest)) return VERSION
  // RFC 9112 3.2: no Host in HTTP/1.1, or two Host headers, is a 400; Node keeps the first of two, a provider
  // might route on the second. An invalid one would reach X-Forwarded-Host and Forwarded.
  if (head.hosts > 1) return TWO_HOSTS
  if (head.hosts === 0 && req.httpVersionMinor === 1) return NO_HOST
  if (head.host !== undefined && !HOST.test(head.host)) return BAD_HOST
  if (head.chunked) {
    // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; a coding other than chunked cannot be
    // forwarded as is (undici re-frames the body as chunked), so it is refused rather than silently dropped.
    if (req.httpVersionMinor === 0) return TE_IN_10
    const te = (req.headers['transfer-encoding'] as string).trim().toLowerCase()
    if (te !== 'chunked') return /(^|,)[ \t]*chunked$/.test(te) ? TE_CODING : TE_NOT_CHUNKED
  }
  if (!limits.allowTrace && req.method === 'TRACE') return TRACE
  const url = req.url ?? ''
  if (!limits.allowUserinfo && url.charCodeAt(0) !== 47 /* / */ && USERINFO_TARGET.test(url)) return USERINFO
  return undefined
}

const CLIENT_ERRORS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'header_too_large', 'request line and headers are too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout', 'the request did not arrive in time'],
}
const BAD_REQUEST: [number, string, string] = [400, 'bad_request', 'malformed HTTP request']
const URI_TOO_LONG: [number, string, string] = [414, 'uri_too_long', 'the request target is too long']
/** A request line longer than this, in a head over maxHeaderSize, makes the answer 414 (nginx's 8k buffer) rather than 431. */
const LONG_REQUEST_LINE = 8_192

/** Over maxHeaderSize: 414 when the request line is what made it too large, else 431. */
function overflow(err: NodeJS.ErrnoException & { rawPacket?: Buffer }): [number, string, string] | undefined {
  if (err.code !== 'HPE_HEADER_OVERFLOW' || err.rawPacket === undefined) return undefined
  const line = err.rawPacket.indexOf('\r\n')
  return line === -1 || line > LONG_REQUEST_LINE ? URI_TOO_LONG : undefined
}

/**
 * The listener's 'clientError' handler: a request Node's parser rejected (malformed, a smuggling attempt, too large,
 * too slow). Answer like Node would, plus a body and an x-vigil-error code, and close the connection.
 */
export function onClientError(err: NodeJS.ErrnoException, socket: Duplex): { status: number; code: string } | undefined {
  // Bytes after a request that closes the connection (`Connection: close`, HTTP/1.0): ignored, like nginx. The
  // answer to that request is still on its way (Node closes the connection after it); an error now would replace it.
  if (err.code === 'HPE_CLOSED_CONNECTION') {
    if ((socket as Duplex & { _httpMessage?: unknown })._httpMessage == null) socket.destroy()
    return undefined
  }
  if (err.code === 'ECONNRESET' || (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true) {
    socket.destroy()
    return undefined
  }
  const [status, code, detail] = overflow(err) ?? CLIENT_ERRORS[err.code ?? ''] ?? BAD_REQUEST
  sendRawError(socket, status, code, detail)
  return { status, code }
}

const CONNECT_REFUSED = { status: 405, code: 'method_not_allowed' }

/** The listener's 'connect' handler: vigil is a reverse proxy, never a tunnel to wherever a client asks. */
export function onConnectMethod(_req: unknown, socket: Duplex): { status: number; code: string } {
  sendRawError(socket, 405, 'method_not_allowed', 'CONNECT is not supported: vigil is not a forward proxy')
  return CONNECT_REFUSED
}
