// Streams to one HTTP/2 provider (h2c with prior knowledge, or h2 over TLS by ALPN) over a few multiplexed
// node:http2 sessions, behind the same dispatch(options, handler) interface as undici's Pool, so the forwarding
// path (src/proxy/forward.ts) is the same for every protocol. node:http2 and not undici's HTTP/2 client: undici 7
// fails every stream in flight when a provider sends a graceful GOAWAY (nodejs/undici#5089), where node:http2
// lets the streams the provider accepted finish and refuses only the others (REFUSED_STREAM: safe to retry).
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { tlsConnectOptions, type ClientTls } from './tls.js'

/** What the data path and the registry need of a peer's connection pool: undici's Pool and Http2Pool both have it. */
export interface UpstreamPool {
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean
  close(): Promise<void>
  destroy(): Promise<void>
  /** Requests waiting for a connection (or a free stream) of this pool. */
  readonly stats: { readonly queued: number }
  /** close() or destroy() was called. */
  readonly closed: boolean
  readonly destroyed: boolean
}

export interface Http2PoolOptions {
  /** `http://host:port` (h2c) or `https://host:port` (h2). */
  origin: string
  tls: ClientTls | undefined
  /** Sessions opened at most; a new one only when every open one is at its stream limit. */
  sessions: number
  /** Streams per session at most (lowered by the provider's SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxStreams: number
  connectTimeout: number
  /** Time to response headers, then longest silence between body chunks. */
  headersTimeout: number
  bodyTimeout: number
  /** A session with no stream for this long is closed. */
  idleTimeout: number
  maxResponseSize: number | undefined
  /** The provider sent GOAWAY: it is leaving (or rotating connections) and should be drained. */
  onGoaway?: ((code: number) => void) | undefined
  /** A session to the provider is up (after a GOAWAY: it takes new streams again). */
  onReady?: (() => void) | undefined
}

type Handler = Dispatcher.DispatchHandler

/** Reconnect backoff after a GOAWAY whose provider does not take a new connection. */
const REJOIN_MIN = 250
const REJOIN_MAX = 5_000

function coded(message: string, code: string, extra?: Record<string, unknown>): Error {
  return Object.assign(new Error(message), { code }, extra)
}

/** The provider refused the stream (RST_STREAM REFUSED_STREAM, or above a GOAWAY's last stream): it never saw it. */
export const REFUSED_STREAM_CODE = 'VIGIL_H2_REFUSED_STREAM'

/** Headers HTTP/2 forbids (RFC 9113 8.2.2), besides the hop-by-hop ones forward() already dropped. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host'])

/** undici's flat [name, value, ...] request headers as node:http2's object, with the pseudo-headers. */
function requestHeaders(options: Dispatcher.DispatchOptions, scheme: string, fallbackAuthority: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': options.method, ':path': options.path, ':scheme': scheme }
  let authority: string | undefined
  const list = options.headers as string[] | null | undefined
  if (list !== null && list !== undefined) {
    for (let i = 0; i < list.length; i += 2) {
      const name = (list[i] as string).toLowerCase()
      const value = list[i + 1] as string
      if (CONNECTION_SPECIFIC.has(name)) {
        if (name === 'host') authority ??= value
        continue
      }
      // TE is allowed in HTTP/2 only as "trailers", which gRPC requires.
      if (name === 'te' && value.trim().toLowerCase() !== 'trailers') continue
      const had = out[name]
      out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had as string, value]
    }
  }
  out[':authority'] = authority ?? fallbackAuthority
  return out
}

/** node:http2's header object as the flat string list the handlers take (pseudo-headers left out). */
function flatHeaders(headers: IncomingHttpHeaders): string[] {
  const out: string[] = []
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* : */) continue
    const v = headers[name]
    if (v === undefined) continue
    if (Array.isArray(v)) for (const one of v) out.push(name, one)
    else out.push(name, String(v))
  }
  return out
}

class Session {
  streams = 0
  ready = false
  /** Received GOAWAY, or closing: takes no new stream. */
  draining = false
  limit: number
  private idleTimer: NodeJS.Timeout | undefined = undefined

  constructor(
    readonly pool: Http2Pool,
    readonly h2: ClientHttp2Session,
    maxStreams: number,
  ) {
    this.limit = maxStreams
  }

  get hasRoom(): boolean {
    return this.ready && !this.draining && this.streams < this.limit && !this.h2.destroyed
  }

  opened(): void {
    this.streams++
    clearTimeout(this.idleTimer)
    this.idleTimer = undefined
  }

  finished(): void {
    this.streams--
    if (this.streams === 0 && !this.draining) {
      this.idleTimer = setTimeout(closeIdle, this.pool.options.idleTimeout, this)
      this.idleTimer.unref()
    }
    this.pool.admit()
  }

  stopTimers(): void {
    clearTimeout(this.idleTimer)
  }
}

function closeIdle(s: Session): void {
  if (s.streams === 0) {
    s.draining = true
    s.h2.close()
  }
}

/** One request on one stream: relays node:http2's events to the dispatch handler the way undici calls it. */
class Exchange2 {
  stream: ClientHttp2Stream | undefined = undefined
  session: Session | undefined = undefined
  private sessionOf: ClientHttp2Session | undefined = undefined
  private done = false
  private responded = false
  private received = 0
  private trailers: string[] | null = null
  private error: Error | undefined = undefined
  readonly abort: (err?: Error) => void
  readonly resume: () => void

  constructor(
    readonly pool: Http2Pool,
    readonly options: Dispatcher.DispatchOptions,
    readonly handler: Handler,
  ) {
    this.abort = (err?: Error) => this.cancel(err)
    this.resume = () => this.stream?.resume()
  }

  start(s: Session): void {
    const pool = this.pool
    let stream: ClientHttp2Stream
    const body = this.options.body as Buffer | Readable | null | undefined
    const empty = body === null || body === undefined
    try {
      stream = s.h2.request(requestHeaders(this.options, pool.scheme, pool.authority), { endStream: empty })
    } catch (err) {
      // The session went away between the check and the request (GOAWAY in between): another session takes it.
      s.draining = true
      pool.queue(this)
      return
    }
    s.opened()
    this.session = s
    this.stream = stream
    ;(stream as StreamWithExchange)[EXCHANGE] = this
    stream.setTimeout(pool.options.headersTimeout, onStreamTimeout)
    stream.on('response', onStreamResponse)
    stream.on('data', onStreamData)
    stream.on('trailers', onStreamTrailers)
    stream.on('end', onStreamEnd)
    stream.on('error', onStreamError)
    stream.on('close', onStreamClose)
    this.handler.onConnect?.(this.abort)
    if (this.done) return
    if (empty) return
    if (Buffer.isBuffer(body)) stream.end(body)
    else if (typeof (body as Readable).pipe === 'function') {
      ;(body as Readable).on('error', () => this.cancel())
      ;(body as Readable).pipe(stream)
    } else stream.end(Buffer.from(body as unknown as string))
  }

  response(headers: IncomingHttpHeaders): void {
    if (this.done) return
    this.responded = true
    const stream = this.stream as ClientHttp2Stream
    stream.setTimeout(this.pool.options.bodyTimeout, onStreamTimeout)
    const status = Number(headers[':status'])
    if (this.handler.onHeaders?.(status, flatHeaders(headers) as unknown as Buffer[], this.resume, '') === false) stream.pause()
  }

  data(chunk: Buffer): void {
    if (this.done) return
    const max = this.pool.options.maxResponseSize
    if (max !== undefined && (this.received += chunk.length) > max) {
      this.cancel(coded(`response larger than ${max} bytes`, 'UND_ERR_RES_EXCEEDED_MAX_SIZE'))
      return
    }
    if (this.handler.onData?.(chunk) === false) this.stream?.pause()
  }

  trailersIn(headers: IncomingHttpHeaders): void {
    this.trailers = flatHeaders(headers)
  }

  end(): void {
    if (this.done) return
    if (!this.responded) return this.fail(coded('HTTP/2 stream ended before a response', 'UND_ERR_SOCKET'))
    this.done = true
    this.handler.onComplete?.(this.trailers)
  }

  timeout(): void {
    const err = this.responded
      ? coded(`no response body data for ${this.pool.options.bodyTimeout} ms`, 'UND_ERR_BODY_TIMEOUT')
      : coded(`no response headers within ${this.pool.options.headersTimeout} ms`, 'UND_ERR_HEADERS_TIMEOUT')
    this.cancel(err)
  }

  streamError(err: Error): void {
    this.error ??= err
  }

  /** The stream is gone: whatever did not complete failed, with the most telling reason. */
  closed(): void {
    this.sessionOf = this.session?.h2
    this.session?.finished()
    this.session = undefined
    if (this.done) return
    const stream = this.stream as ClientHttp2Stream
    const rst = stream.rstCode
    if (rst === constants.NGHTTP2_REFUSED_STREAM) return this.fail(coded('the provider refused the stream (REFUSED_STREAM)', REFUSED_STREAM_CODE, { rstCode: rst }))
    const sessionError = this.pool.sessionError(this.sessionOf)
    this.fail(sessionError ?? this.error ?? coded(`HTTP/2 stream reset by the provider (code ${rst ?? 'none'})`, 'UND_ERR_SOCKET', { rstCode: rst }))
  }

  fail(err: Error): void {
    if (this.done) return
    this.done = true
    this.handler.onError?.(err)
    const s = this.stream
    if (s !== undefined && !s.closed) s.close(constants.NGHTTP2_CANCEL)
  }

  /** The handler gave up on it (abort): RST_STREAM(CANCEL); its onError still runs, as undici's abort does. */
  cancel(err?: Error): void {
    if (this.done) return
    if (this.stream === undefined) this.pool.unqueue(this)
    this.fail(err ?? coded('request aborted', 'UND_ERR_ABORTED'))
  }
}

const EXCHANGE = Symbol('vigil.h2exchange')
type StreamWithExchange = ClientHttp2Stream & { [EXCHANGE]: Exchange2 }
const exchangeOf = (s: ClientHttp2Stream): Exchange2 => (s as StreamWithExchange)[EXCHANGE]

function onStreamResponse(this: ClientHttp2Stream, headers: IncomingHttpHeaders): void {
  exchangeOf(this).response(headers)
}
function onStreamData(this: ClientHttp2Stream, chunk: Buffer): void {
  exchangeOf(this).data(chunk)
}
function onStreamTrailers(this: ClientHttp2Stream, headers: IncomingHttpHeaders): void {
  exchangeOf(this).trailersIn(headers)
}
function onStreamEnd(this: ClientHttp2Stream): void {
  exchangeOf(this).end()
}
function onStreamError(this: ClientHttp2Stream, err: Error): void {
  exchangeOf(this).streamError(err)
}
function onStreamClose(this: ClientHttp2Stream): void {
  exchangeOf(this).closed()
}
function onStreamTimeout(this: ClientHttp2Stream): void {
  exchangeOf(this).timeout()
}

export class Http2Pool implements UpstreamPool {
  readonly scheme: 'http' | 'https'
  readonly authority: string
  private readonly sessions: Session[] = []
  private connecting = 0
  private readonly pending: Exchange2[] = []
  private readonly errors = new WeakMap<ClientHttp2Session, Error>()
  private closing = false
  /** After a GOAWAY, until a new session is up: reconnecting, backing off while it fails. */
  private rejoining = false
  private rejoinDelay = 0
  private rejoinTimer: NodeJS.Timeout | undefined = undefined
  private closedResolve: (() => void) | undefined = undefined
  readonly stats = { queued: 0 }
  destroyed = false

  get closed(): boolean {
    return this.closing
  }

  constructor(readonly options: Http2PoolOptions) {
    const url = new URL(options.origin)
    this.scheme = url.protocol === 'https:' ? 'https' : 'http'
    this.authority = url.host
  }

  /** Streams open now over every session (the status page's "streams"). */
  get streams(): number {
    let n = 0
    for (const s of this.sessions) n += s.streams
    return n
  }

  get openSessions(): number {
    return this.sessions.length
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: Handler): boolean {
    const ex = new Exchange2(this, options, handler)
    if (this.closing) {
      handler.onError?.(coded('the pool is closed', 'UND_ERR_DESTROYED'))
      return false
    }
    const s = this.withRoom()
    if (s !== undefined) ex.start(s)
    else this.queue(ex)
    return true
  }

  queue(ex: Exchange2): void {
    this.pending.push(ex)
    this.stats.queued = this.pending.length
    this.grow()
  }

  unqueue(ex: Exchange2): void {
    const i = this.pending.indexOf(ex)
    if (i !== -1) this.pending.splice(i, 1)
    this.stats.queued = this.pending.length
  }

  /** The session with the fewest streams that can take one more. */
  private withRoom(): Session | undefined {
    let best: Session | undefined
    for (const s of this.sessions) if (s.hasRoom && (best === undefined || s.streams < best.streams)) best = s
    return best
  }

  /** Streams freed or a session came up: start what waits. */
  admit(): void {
    while (this.pending.length > 0) {
      const s = this.withRoom()
      if (s === undefined) break
      ;(this.pending.shift() as Exchange2).start(s)
    }
    this.stats.queued = this.pending.length
    if (this.pending.length > 0) this.grow()
    this.checkClosed()
  }

  private grow(): void {
    if (this.closing || this.connecting > 0) return
    let usable = 0
    for (const s of this.sessions) if (!s.draining) usable++
    if (usable >= this.options.sessions) return
    this.open()
  }

  private open(): void {
    const o = this.options
    this.connecting++
    const h2 = connect(o.origin, {
      ...(o.tls === undefined ? undefined : { ...tlsConnectOptions(o.tls), ALPNProtocols: ['h2'] }),
      // Room for the provider's response headers (64 KiB, like a generous nginx large_client_header_buffers).
      maxHeaderListPairs: 2000,
      settings: { enablePush: false },
    })
    const s = new Session(this, h2, o.maxStreams)
    this.sessions.push(s)
    const timer = setTimeout(() => {
      h2.destroy(coded(`connect timeout after ${o.connectTimeout} ms`, 'UND_ERR_CONNECT_TIMEOUT'))
    }, o.connectTimeout)
    timer.unref()
    h2.once('connect', () => {
      clearTimeout(timer)
      this.connecting--
      s.ready = true
      this.rejoining = false
      this.rejoinDelay = 0
      o.onReady?.()
      this.admit()
    })
    h2.on('remoteSettings', (settings) => {
      s.limit = Math.min(o.maxStreams, settings.maxConcurrentStreams ?? o.maxStreams)
      this.admit()
    })
    h2.on('goaway', (code: number) => {
      s.draining = true
      s.stopTimers()
      o.onGoaway?.(code)
      // New streams go to a new session; the ones the provider accepted finish on this one.
      this.rejoining = true
      this.admit()
      this.rejoin()
    })
    h2.on('error', (err: Error) => {
      this.errors.set(h2, err)
    })
    h2.on('close', () => {
      clearTimeout(timer)
      s.stopTimers()
      const i = this.sessions.indexOf(s)
      if (i !== -1) this.sessions.splice(i, 1)
      if (!s.ready) {
        this.connecting--
        // It never came up: what waits fails with the reason, unless another session can still take it.
        const err = this.errors.get(h2) ?? coded('HTTP/2 session closed before it was ready', 'UND_ERR_SOCKET')
        if (this.sessions.every((x) => x.draining)) for (const ex of this.pending.splice(0)) ex.fail(err)
        this.stats.queued = this.pending.length
        if (this.rejoining && !this.closing) {
          this.rejoinDelay = Math.min(REJOIN_MAX, Math.max(REJOIN_MIN, this.rejoinDelay * 2))
          this.rejoinTimer = setTimeout(() => this.rejoin(), this.rejoinDelay)
          this.rejoinTimer.unref()
        }
      }
      this.admit()
    })
  }

  /** A new session to a provider that sent GOAWAY, unless one is up or on its way: it is let back once that connects. */
  private rejoin(): void {
    if (this.closing || this.connecting > 0 || this.sessions.some((s) => s.hasRoom)) return
    this.open()
  }

  /** Why a session failed, when it did (a reset connection explains every stream it carried). */
  sessionError(h2: ClientHttp2Session | undefined): Error | undefined {
    return h2 === undefined ? undefined : this.errors.get(h2)
  }

  /** No new request; resolves once every stream in flight has finished and the sessions are closed. */
  close(): Promise<void> {
    this.closing = true
    clearTimeout(this.rejoinTimer)
    for (const ex of this.pending.splice(0)) ex.fail(coded('the pool is closed', 'UND_ERR_DESTROYED'))
    this.stats.queued = 0
    for (const s of this.sessions) {
      s.draining = true
      s.h2.close()
    }
    return new Promise((resolve) => {
      this.closedResolve = resolve
      this.checkClosed()
    })
  }

  destroy(): Promise<void> {
    this.closing = true
    this.destroyed = true
    clearTimeout(this.rejoinTimer)
    for (const ex of this.pending.splice(0)) ex.fail(coded('the pool was destroyed', 'UND_ERR_DESTROYED'))
    this.stats.queued = 0
    for (const s of this.sessions) s.h2.destroy()
    return new Promise((resolve) => {
      this.closedResolve = resolve
      this.checkClosed()
    })
  }

  private checkClosed(): void {
    if (this.closedResolve === undefined || this.sessions.length > 0 || this.pending.length > 0) return
    const resolve = this.closedResolve
    this.closedResolve = undefined
    resolve()
  }
}
