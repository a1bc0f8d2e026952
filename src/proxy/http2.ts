// HTTP/2 from clients: h2 over TLS by ALPN (HTTP/1.1 clients keep working on the same listener) and h2c with prior
// knowledge, through Node's compatibility API, so every request takes the same path as an HTTP/1.1 one
// (listener -> route -> forward). Also the limits for hostile HTTP/2 clients, answered with GOAWAY.
import {
  constants,
  createSecureServer,
  createServer,
  Http2ServerRequest,
  Http2ServerResponse,
  type Http2Server,
  type Http2SecureServer,
  type Http2Session,
  type SecureServerOptions,
  type ServerHttp2Stream,
  type ServerOptions,
} from 'node:http2'
import type { OutgoingHttpHeader, OutgoingHttpHeaders } from 'node:http'
import type { ServerOpts } from 'node:net'
import type { SecureContextOptions } from 'node:tls'
import type { Logger } from 'pino'
import type { Http2Limits as Http2LimitsConfig } from '../config/schema.js'
import { ms } from '../config/duration.js'
import type { Exchange, VigilRequest, VigilResponse } from './forward.js'
import type { AccessRecord } from './access-log.js'
import type { RequestHead } from './headers.js'
import type { Limits } from './limits.js'

/** What a client may do to one HTTP/2 connection before it gets GOAWAY (listener `limits.http2`). */
export const HTTP2_LIMIT_DEFAULTS = {
  maxConcurrentStreams: 100,
  /** Streams the client cancels (RST_STREAM) per window: the rapid-reset attack (CVE-2023-44487) resets in a loop. */
  maxResets: 200,
  /** SETTINGS frames and PINGs a client may send per window. */
  maxSettings: 100,
  maxPings: 100,
  window: 10_000,
  /** nginx's send_timeout: a stream with response bytes waiting that gets none of them out for this long is reset. */
  sendTimeout: 60_000,
} as const

export interface Http2Limits {
  maxConcurrentStreams: number
  maxResets: number
  maxSettings: number
  maxPings: number
  /** The window the three counts above are taken over (ms). */
  window: number
  /** A stream whose response bytes wait this long without one going out (its flow-control window stays shut) is reset; 0 is off. */
  sendTimeout: number
}

export function resolveHttp2Limits(c: Http2LimitsConfig | undefined): Http2Limits {
  const d = HTTP2_LIMIT_DEFAULTS
  return {
    maxConcurrentStreams: c?.maxConcurrentStreams ?? d.maxConcurrentStreams,
    maxResets: c?.maxResets ?? d.maxResets,
    maxSettings: c?.maxSettings ?? d.maxSettings,
    maxPings: c?.maxPings ?? d.maxPings,
    window: ms(c?.window ?? d.window),
    sendTimeout: ms(c?.sendTimeout ?? d.sendTimeout),
  }
}

/**
 * The request class of HTTP/2 streams: the same fields as VigilRequest, so forward() treats both alike.
 * A stream's close is its client leaving (or its end): the response's 'close' reports it (see forward.ts).
 */
export class VigilH2Request extends Http2ServerRequest {
  exchange: Exchange | undefined = undefined
  head: RequestHead | undefined = undefined
  response: VigilResponse | undefined = undefined
}

/**
 * The response class of HTTP/2 streams. The head of a proxied response waits for its first body byte: a response
 * that ends without one (gRPC's trailers-only form, which carries grpc-status in its headers) must go out as one
 * HEADERS frame with END_STREAM, or a gRPC client reads no status at all.
 */
export class VigilH2Response extends Http2ServerResponse {
  exchange: Exchange | undefined = undefined
  access: AccessRecord | undefined = undefined
  /** Always false for HTTP/2 (there is no keep-alive to turn off); kept so the listener can set it for either. */
  shouldKeepAlive = true
  private heldStatus = 0
  private held: readonly string[] | undefined = undefined
  /** Body bytes handed to the stream, and how many of them had gone out at the send watch's last look. */
  private written = 0
  private sentBefore = -1
  private sendWatch: NodeJS.Timeout | undefined = undefined

  override writeHead(statusCode: number, a?: string | OutgoingHttpHeaders | OutgoingHttpHeader[], b?: OutgoingHttpHeaders | OutgoingHttpHeader[]): this {
    const headers = b ?? (typeof a === 'string' ? undefined : a)
    // HTTP/2 has no reason phrase: a statusText from the provider is dropped.
    if (Array.isArray(headers) && this.held === undefined && !this.headersSent) {
      this.heldStatus = statusCode
      this.held = headers as string[]
      return this
    }
    // Node's compatibility API takes a flat [name, value, ...] list too; its typings do not say so.
    return super.writeHead(statusCode, headers as OutgoingHttpHeaders)
  }

  override write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    this.release()
    this.counted(chunk)
    return super.write(chunk as Buffer, encoding as BufferEncoding, cb as () => void)
  }

  /**
   * Count body bytes; the first starts the send watch. Node's own stream timeout cannot see a stream whose window
   * stays shut: any frame the session sends (a PING's ACK, another stream's DATA) counts as progress for it.
   */
  private counted(chunk: unknown): void {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return
    this.written += typeof chunk === 'string' ? Buffer.byteLength(chunk) : (chunk as Uint8Array).byteLength
    if (this.sendWatch !== undefined) return
    const guard = (this.stream.session as GuardedSession | undefined)?.[GUARD]
    if (guard === undefined || guard.sendTimeout === 0) return
    this.sendWatch = setInterval(watchSend, guard.sendTimeout, this, guard)
    this.sendWatch.unref()
    this.stream.once('close', () => clearInterval(this.sendWatch))
  }

  /** The send watch's look, once per sendTimeout: bytes waiting and none gone out since the last one resets the stream. */
  checkSend(guard: SessionGuard): void {
    const stream = this.stream
    if (stream.destroyed || stream.closed) return clearInterval(this.sendWatch)
    const waiting = stream.bufferSize
    const sent = this.written - waiting
    if (waiting === 0 || sent !== this.sentBefore) {
      this.sentBefore = sent
      return
    }
    clearInterval(this.sendWatch)
    guard.stalled(stream, waiting)
  }

  override end(chunk?: unknown, encoding?: unknown, cb?: unknown): this {
    if (this.held !== undefined && (chunk === undefined || chunk === null || typeof chunk === 'function')) {
      // No body: the held head goes out with END_STREAM (compat sends it so once ending), trailers folded in.
      const held = this.held
      this.held = undefined
      this.statusCode = this.heldStatus
      for (let i = 0; i < held.length; i += 2) this.appendHeader(held[i] as string, held[i + 1] as string)
      const trailers = this.trailerList
      if (trailers !== undefined) for (const [name, value] of trailers) this.appendHeader(name, value)
      this.trailerList = undefined
    } else this.release()
    if (this.trailerList !== undefined) super.addTrailers(Object.fromEntries(this.trailerList))
    return super.end(chunk as Buffer, encoding as BufferEncoding, cb as () => void)
  }

  private trailerList: [string, string][] | undefined = undefined

  /** Held until end(): a response without a body folds them into its head (trailers-only). forward() passes pairs. */
  override addTrailers(headers: OutgoingHttpHeaders | readonly [string, string][]): void {
    this.trailerList = Array.isArray(headers) ? (headers as [string, string][]) : Object.entries(headers as Record<string, string>)
  }

  private release(): void {
    const held = this.held
    if (held === undefined) return
    this.held = undefined
    super.writeHead(this.heldStatus, held as unknown as OutgoingHttpHeaders)
  }
}

/** Options for Node's HTTP/2 servers from the listener's limits: Node's own guards where it has them. */
function http2Options(limits: Limits, h2: Http2Limits): ServerOptions & ServerOpts {
  return {
    // Node's HTTP/1.1 servers turn Nagle off on every connection; its HTTP/2 servers do not. With it on, a response
    // written in two pieces (head, then body) waits for the client's delayed ACK: ~40 ms for each request of an
    // HTTP/1.1 client on a TLS listener with http2 (nginx: tcp_nodelay on).
    noDelay: true,
    Http2ServerRequest: VigilH2Request,
    // Node's typings want the generic class; this one is it, bound to VigilH2Request.
    Http2ServerResponse: VigilH2Response as unknown as typeof Http2ServerResponse,
    settings: {
      maxConcurrentStreams: h2.maxConcurrentStreams,
      // The HTTP/1.1 limit on the request head, as HPACK's decoded size (RFC 9113 6.5.2).
      maxHeaderListSize: limits.maxHeaderSize,
      enablePush: false,
    },
    maxHeaderListPairs: limits.maxHeaders + 4,
    // A client opening streams past maxConcurrentStreams has each refused; this many refusals end the session.
    maxSessionRejectedStreams: 100,
    maxSessionInvalidFrames: 1000,
    maxOutstandingPings: 10,
    maxSettings: 32,
  }
}

export type Http2Listener = Http2Server | Http2SecureServer

/** An h2c server (HTTP/2 only: cleartext HTTP/1.1 has no ALPN to fall back by) or an h2 + HTTP/1.1 TLS server. */
export function createHttp2Server(
  limits: Limits,
  h2: Http2Limits,
  tls: SecureContextOptions | undefined,
  http1: { IncomingMessage: typeof VigilRequest; ServerResponse: typeof VigilResponse },
): Http2Listener {
  const options = http2Options(limits, h2)
  if (tls === undefined) return createServer(options)
  const secure: SecureServerOptions = {
    ...options,
    ...tls,
    allowHTTP1: true,
    ALPNProtocols: ['h2', 'http/1.1'],
    Http1IncomingMessage: http1.IncomingMessage,
    Http1ServerResponse: http1.ServerResponse as unknown as SecureServerOptions['Http1ServerResponse'],
  }
  return createSecureServer(secure)
}

const OVER_LIMIT = Symbol('vigil.h2OverLimit')
const GUARD = Symbol('vigil.h2Guard')

/** What a session's guard tells its streams' responses: the send timeout, and what to do at it. */
interface SessionGuard {
  sendTimeout: number
  stalled(stream: ServerHttp2Stream, waiting: number): void
}
type GuardedSession = Http2Session & { [GUARD]?: SessionGuard }

function watchSend(res: VigilH2Response, guard: SessionGuard): void {
  res.checkSend(guard)
}

/**
 * Whether a stream is not worth serving: its client already reset it, or its session went over a limit (the
 * frames of a burst that arrived with the one over the limit still become streams before GOAWAY is out).
 */
export function abandoned(stream: ServerHttp2Stream): boolean {
  return stream.destroyed || (stream.session as (Http2Session & { [OVER_LIMIT]?: true }) | undefined)?.[OVER_LIMIT] === true
}

/**
 * Per-session guards for what Node does not bound itself: streams reset in a loop (rapid reset), SETTINGS and
 * PING floods, and a stream whose window never opens (its timeout resets it). Each ends the session with GOAWAY
 * (ENHANCE_YOUR_CALM) and one warning, naming the client's address and port (behind a sidecar every client is
 * 127.0.0.1: the port is what tells its sessions apart); other sessions are untouched.
 */
export function guardSession(session: Http2Session, h2: Http2Limits, idleTimeout: number, log: Logger): void {
  const started = Date.now()
  let windowStart = started
  let resets = 0
  let settings = 0
  let pings = 0
  let ended = false
  const roll = (): void => {
    const now = Date.now()
    if (now - windowStart < h2.window) return
    windowStart = now
    resets = 0
    settings = 0
    pings = 0
  }
  const calm = (what: string, count: number): void => {
    if (ended) return
    ended = true
    ;(session as Http2Session & { [OVER_LIMIT]?: true })[OVER_LIMIT] = true
    log.warn({ client: session.socket?.remoteAddress, clientPort: session.socket?.remotePort, limit: what, count, windowMs: h2.window }, 'HTTP/2 client over a limit: GOAWAY')
    session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM)
    // Streams in flight are cut too: a client that floods is not owed their answers.
    setImmediate(() => session.destroy())
  }
  let stalls = 0
  ;(session as GuardedSession)[GUARD] = {
    sendTimeout: h2.sendTimeout,
    // A client that never opens its window (or stops reading one stream) holds that stream and its upstream: reset
    // it (the exchange sees its client leave and cancels the upstream). Said once per connection.
    stalled(stream, waiting) {
      if (stalls++ === 0) log.warn({ client: session.socket?.remoteAddress, clientPort: session.socket?.remotePort, limit: 'sendTimeout', sendTimeoutMs: h2.sendTimeout, waiting }, 'HTTP/2 client took no response bytes within sendTimeout: stream reset')
      stream.close(constants.NGHTTP2_CANCEL)
    },
  }
  session.on('stream', (stream: ServerHttp2Stream) => {
    // A stream silent both ways for idleTimeout is reset. (Node's stream timer does not fire while the session
    // sends anything at all, so a shut window is the send watch's: VigilH2Response.)
    if (idleTimeout > 0) stream.setTimeout(idleTimeout, () => stream.close(constants.NGHTTP2_CANCEL))
    stream.on('aborted', () => {
      roll()
      if (++resets > h2.maxResets) calm('maxResets', resets)
    })
  })
  session.on('remoteSettings', () => {
    roll()
    if (++settings > h2.maxSettings) calm('maxSettings', settings)
  })
  session.on('ping', () => {
    roll()
    if (++pings > h2.maxPings) calm('maxPings', pings)
  })
  // A session error (a protocol violation Node caught) is the client's; say nothing per session.
  session.on('error', () => {})
}
