// The forwarding hot path: one request, one peer, streamed both ways through the peer's undici pool.
import { ServerResponse, type IncomingMessage } from 'node:http'
import type { Dispatcher } from 'undici'
import type { Logger } from 'pino'
import type { Peer } from '../upstream/peer.js'
import type { Upstream } from '../upstream/upstream.js'
import { classifyError, type Failure } from '../health/outcome.js'
import { requestHeaders, responseHeaders, trailerPairs } from './headers.js'
import { sendError } from './respond.js'
import type { TrustedProxies } from './trust.js'
import { enqueue } from './queue.js'

export interface ForwardHooks {
  log: Logger
  /** Access log destination, or undefined when access logging is off. */
  access: Logger | undefined
  /** Called once per finished request, for in-flight accounting (graceful shutdown). */
  done(): void
  /** Set per listener: it serves HTTPS, and which clients' forwarding headers are trusted. */
  tls?: boolean
  trust?: TrustedProxies | undefined
}

/** The response class of every listener, so a request's attempt is reachable from 'close' without a closure. */
export class VigilResponse extends ServerResponse<IncomingMessage> {
  attempt: Attempt | undefined = undefined
}

function onClientClose(this: VigilResponse): void {
  this.attempt?.clientClosed()
}

const NO_PEERS: readonly Peer[] = []

/** Interim (1xx) responses allowed before the final one; a provider sending them forever would defeat every timeout. */
const MAX_INTERIM = 16
const INTERIM_STORM = Object.assign(new Error(`more than ${MAX_INTERIM} interim (1xx) responses`), { code: 'VIGIL_INTERIM_STORM' })

/**
 * One attempt of one request on one peer, written as an undici dispatch handler (the callback form: it hands
 * over raw header buffers and a resume function, which keeps the path free of header objects and closures).
 */
export class Attempt implements Dispatcher.DispatchHandler {
  private abortUpstream: ((err?: Error) => void) | undefined = undefined
  private resumeUpstream: (() => void) | undefined = undefined
  private status = 0
  /** performance.now() at dispatch and at the response headers, for the peer's latency estimate. */
  private readonly sentAt = performance.now()
  private headersAt = 0
  private finished = false
  private clientGone = false
  private interim = 0

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: VigilResponse,
    private readonly upstream: Upstream,
    private readonly peer: Peer,
    private readonly hooks: ForwardHooks,
    private readonly started: number,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    if (this.clientGone) abort()
    else this.abortUpstream = abort
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    // 1xx: Node answers the client's Expect itself and 103 hints are optional; wait for the final response.
    if (statusCode < 200) {
      if (++this.interim > MAX_INTERIM) this.abortUpstream?.(INTERIM_STORM)
      return true
    }
    this.headersAt = performance.now()
    this.status = statusCode
    this.resumeUpstream = resume
    this.res.writeHead(statusCode, statusText === '' ? undefined : statusText, responseHeaders(rawHeaders))
    return true
  }

  onData(chunk: Buffer): boolean {
    if (this.res.write(chunk)) return true
    this.res.once('drain', this.resumeUpstream as () => void)
    return false
  }

  onComplete(trailers: string[] | null): void {
    if (trailers !== null && trailers.length > 0 && !this.res.hasHeader('content-length')) this.res.addTrailers(trailerPairs(trailers))
    this.res.end()
    this.finish(undefined)
  }

  onError(err: Error): void {
    if (this.finished) return
    if (this.clientGone) {
      this.finish(undefined)
      return
    }
    const failure = classifyError(err)
    if (this.status === 0) {
      sendError(this.res, failure.status, failure.code, describe(failure, this.upstream.name))
      this.status = failure.status
    } else {
      // The status line is out: the only honest signal left is to cut the client connection.
      this.res.destroy()
    }
    this.hooks.log.warn(
      { upstream: this.upstream.name, peer: this.peer.address, reason: failure.code, err: err.message, midBody: this.status !== failure.status },
      'upstream request failed',
    )
    this.finish(failure)
  }

  clientClosed(): void {
    if (this.finished || this.res.writableFinished) return
    this.clientGone = true
    this.abortUpstream?.()
  }

  private finish(failure: Failure | undefined): void {
    if (this.finished) return
    this.finished = true
    this.res.attempt = undefined
    const peer = this.peer
    peer.inflight--
    peer.requests++
    if (failure !== undefined) peer.failures++
    // Time to headers; an attempt that timed out waited at least that long, while a fast failure says nothing.
    if (this.headersAt !== 0 || failure?.kind === 'timeout') peer.recordLatency((this.headersAt || performance.now()) - this.sentAt)
    this.hooks.access?.info({
      method: this.req.method,
      url: this.req.url,
      status: this.status,
      upstream: this.upstream.name,
      peer: peer.address,
      ms: Date.now() - this.started,
      aborted: this.clientGone || undefined,
    })
    this.upstream.admitWaiting()
    this.hooks.done()
  }
}

function describe(f: Failure, upstream: string): string {
  switch (f.code) {
    case 'connect_refused':
      return `upstream "${upstream}" refused the connection`
    case 'connect_timeout':
      return `upstream "${upstream}" timed out while connecting`
    case 'response_timeout':
      return `upstream "${upstream}" timed out before sending a response`
    case 'invalid_response':
      return `upstream "${upstream}" sent an invalid response`
    default:
      return `upstream "${upstream}" failed (${f.code})`
  }
}

export interface Target {
  /** Origin-form path and query sent to the provider. */
  path: string
  /** Host used for routing: the Host header, or the authority of an absolute-form target. */
  host: string | undefined
}

/**
 * The request target only chooses the route: an absolute-form target (`GET http://elsewhere/ HTTP/1.1`)
 * is reduced to its path, so vigil can never be used as an open proxy.
 */
export function parseTarget(url: string, hostHeader: string | undefined): Target | undefined {
  if (url.charCodeAt(0) === 47 /* / */) return { path: url, host: hostHeader }
  const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)([^#]*)/.exec(url)
  if (m === null) return undefined
  const authority = (m[1] as string).replace(/^.*@/, '')
  const rest = m[2] as string
  return { path: rest === '' ? '/' : rest.startsWith('/') ? rest : `/${rest}`, host: authority === '' ? hostHeader : authority }
}

/** Forward one routed request. The caller has already chosen the upstream. */
export function forward(req: IncomingMessage, res: VigilResponse, upstream: Upstream, target: Target, hooks: ForwardHooks): void {
  const peer = upstream.select(NO_PEERS, req)
  if (peer === undefined) {
    const refusal = upstream.refusal()
    if (refusal.code === 'max_conns' && enqueue(forward, req, res, upstream, target, hooks)) return
    sendError(res, 503, refusal.code, refusal.detail)
    hooks.done()
    return
  }
  peer.inflight++
  const attempt = new Attempt(req, res, upstream, peer, hooks, Date.now())
  res.attempt = attempt
  res.on('close', onClientClose)
  const headers = req.headers
  const hasBody = headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0')
  peer.pool.dispatch(
    {
      path: target.path,
      method: req.method as Dispatcher.HttpMethod,
      headers: requestHeaders(req.rawHeaders, headers.connection, {
        clientAddress: req.socket.remoteAddress ?? '',
        proto: hooks.tls === true ? 'https' : 'http',
        trusted: hooks.trust?.has(req.socket.remoteAddress) === true,
        host: upstream.hostHeader ?? target.host,
        originalHost: target.host,
      }),
      body: hasBody ? req : null,
    },
    attempt,
  )
}
