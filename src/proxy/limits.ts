// What a client may send and how slowly, enforced mostly by Node's own HTTP parser and timers, configured here
// (listener `limits`). Everything over a limit gets a short 4xx with an x-vigil-error code, or a closed connection.
import type { IncomingMessage, ServerOptions } from 'node:http'
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
} as const

export interface Limits {
  headersTimeout: number
  requestTimeout: number
  idleTimeout: number
  keepAliveTimeout: number
  maxHeaderSize: number
  maxHeaders: number
}

export function resolveLimits(config: LimitsConfig | undefined): Limits {
  return {
    headersTimeout: ms(config?.headersTimeout ?? DEFAULT_LIMITS.headersTimeout),
    requestTimeout: ms(config?.requestTimeout ?? DEFAULT_LIMITS.requestTimeout),
    idleTimeout: ms(config?.idleTimeout ?? DEFAULT_LIMITS.idleTimeout),
    keepAliveTimeout: ms(config?.keepAliveTimeout ?? DEFAULT_LIMITS.keepAliveTimeout),
    maxHeaderSize: config?.maxHeaderSize ?? DEFAULT_LIMITS.maxHeaderSize,
    maxHeaders: config?.maxHeaders ?? DEFAULT_LIMITS.maxHeaders,
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
  status: 400 | 431 | 505
  code: string
  detail: string
}

const TOO_MANY: Rejection = { status: 431, code: 'too_many_headers', detail: 'too many request header fields' }
const TWO_HOSTS: Rejection = { status: 400, code: 'duplicate_host', detail: 'more than one Host header' }
const VERSION: Rejection = { status: 505, code: 'http_version', detail: 'only HTTP/1.0 and HTTP/1.1 are spoken here' }
const NO_HOST: Rejection = { status: 400, code: 'missing_host', detail: 'an HTTP/1.1 request needs a Host header' }

/** What Node's parser accepts but a proxy must not pass on; undefined for a fine request. `head` is read from its raw headers. */
export function rejectRequest(req: IncomingMessage, maxHeaders: number, head: RequestHead = readRequestHead(req.rawHeaders)): Rejection | undefined {
  if (req.rawHeaders.length > maxHeaders * 2) return TOO_MANY
  if (req.httpVersionMajor !== 1) return VERSION
  // RFC 9112 3.2: no Host in HTTP/1.1, or two Host headers, is a 400; Node keeps the first of two, a provider
  // might route on the second.
  if (head.hosts > 1) return TWO_HOSTS
  return head.hosts === 0 && req.httpVersionMinor === 1 ? NO_HOST : undefined
}

const CLIENT_ERRORS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'header_too_large', 'request line and headers are too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout', 'the request did not arrive in time'],
}
const BAD_REQUEST: [number, string, string] = [400, 'bad_request', 'malformed HTTP request']

/**
 * The listener's 'clientError' handler: a request Node's parser rejected (malformed, a smuggling attempt, too large,
 * too slow). Answer like Node would, plus a body and an x-vigil-error code, and close the connection.
 */
export function onClientError(err: NodeJS.ErrnoException, socket: Duplex): { status: number; code: string } | undefined {
  if (err.code === 'ECONNRESET' || (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true) {
    socket.destroy()
    return undefined
  }
  const [status, code, detail] = CLIENT_ERRORS[err.code ?? ''] ?? BAD_REQUEST
  sendRawError(socket, status, code, detail)
  return { status, code }
}

const CONNECT_REFUSED = { status: 405, code: 'method_not_allowed' }

/** The listener's 'connect' handler: vigil is a reverse proxy, never a tunnel to wherever a client asks. */
export function onConnectMethod(_req: unknown, socket: Duplex): { status: number; code: string } {
  sendRawError(socket, 405, 'method_not_allowed', 'CONNECT is not supported: vigil is not a forward proxy')
  return CONNECT_REFUSED
}
