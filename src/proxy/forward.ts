// The forwarding hot path: one client request (an Exchange) becomes one or more attempts, each on one peer,
// streamed both ways through the peer's undici pool. Retry rules live in retry.ts, health in health/.
import { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Dispatcher } from 'undici'
import type { Logger } from 'pino'
import type { Peer } from '../upstream/peer.js'
import type { Upstream, UpstreamTimeouts } from '../upstream/upstream.js'
import type { InFlightEntry } from '../upstream/inflight.js'
import { classifyError, grpcFailure, httpFailure, PER_TRY_TIMEOUT, POOL_TIMEOUT, STUCK, type Failure } from '../health/outcome.js'
import { endStartedCall, GRPC_DEADLINE_EXCEEDED, grpcStatusIn, grpcTimeout, grpcTimeoutIndex, grpcTimeoutValue, sendGrpcStatus } from './grpc.js'
import { ReplayBody } from './replay.js'
import { Role } from '../health/ejection.js'
import type { WaitList, Waiting } from '../health/stall.js'
import type { Attempted } from '../health/monitor.js'
import { BODY_BUFFER_LIMIT } from './retry.js'
import { ClientHop, forwardHeaders, readRequestHead, responseHeaders, trailerPairs, type RequestHead } from './headers.js'
import { sendError } from './respond.js'
import type { TrustedProxies } from './trust.js'
import { enqueue } from './queue.js'
import type { AccessLog, AccessRecord } from './access-log.js'

export interface ForwardHooks {
  log: Logger
  /** The access log (kept across reloads; `enabled` says whether it writes). */
  access: AccessLog
  /** Called once per client request as it arrives, before anything can answer it; done() follows once it ends. */
  arrived(): void
  /** Called once per finished request, for in-flight accounting (graceful shutdown). */
  done(): void
  /** Set per listener: it serves HTTPS, which clients' forwarding headers are trusted, and whether it adds its own. */
  tls?: boolean
  trust?: TrustedProxies | undefined
  forwardedHeaders?: boolean
}

/** The request class of every listener, so a body being buffered reaches its exchange without a closure. */
export class VigilRequest extends IncomingMessage {
  exchange: Exchange | undefined = undefined
  /** Its raw headers read once (by the listener), so nothing builds Node's `headers` object on the way. */
  head: RequestHead | undefined = undefined
  /** Its response, set by forward(): 'close' on the request is the one client-gone signal every pipelined request gets. */
  response: VigilResponse | undefined = undefined
}

const HOP = Symbol('vigil.clientHop')

/** The connection's forwarding facts, made at its first request. */
function clientHop(socket: Socket & { [HOP]?: ClientHop }, hooks: ForwardHooks): ClientHop {
  return (socket[HOP] ??= new ClientHop(socket.remoteAddress ?? '', hooks.tls === true ? 'https' : 'http', hooks.trust?.has(socket.remoteAddress) === true, hooks.forwardedHeaders))
}

/** The response class of every listener, so a request's exchange is reachable from 'close' without a closure. */
export class VigilResponse extends ServerResponse<VigilRequest> {
  exchange: Exchange | undefined = undefined
  /** Set while the access log is on: the request's tries, written when the response closes. */
  access: AccessRecord | undefined = undefined
}

function onClientClose(this: VigilResponse): void {
  this.exchange?.clientClosed()
}

/**
 * Node 20 emits 'close' only on the response that owns the socket: a pipelined response still queued behind it
 * never gets one when the client disconnects, but its request does (the server destroys every pending request).
 * A request also closes normally once its response is done, when the socket is still open: that is no ending.
 */
function onRequestClose(this: VigilRequest): void {
  if (this.socket.destroyed) this.response?.exchange?.clientClosed()
}

/**
 * Registered at most once per response, at its first backpressure: no wrapper per 'drain'. The upstream body
 * resumes on the next tick, never inside this 'drain': Node emits it synchronously from another response's write
 * (a pipelined response becomes the socket's owner when the one before it ends, inside that attempt's undici
 * parser callback), and undici's parsers must not be re-entered (it asserts `currentParser === null`).
 */
function onClientDrain(this: VigilResponse): void {
  if (this.exchange !== undefined) process.nextTick(resumeExchange, this.exchange)
}

function resumeExchange(ex: Exchange): void {
  ex.resumeUpstream()
}

function onBodyData(this: VigilRequest, chunk: Buffer): void {
  this.exchange?.bodyChunk(chunk)
}

function onBodyEnd(this: VigilRequest): void {
  this.exchange?.bodyEnd()
}

function onPerTryTimeout(ex: Exchange): void {
  ex.perTryTimeout()
}

function onDeadline(ex: Exchange): void {
  ex.deadlineExceeded()
}

/** The wait queue admits a request: its exchange, parked on the request, picks its first peer now. */
function admitQueued(req: IncomingMessage, res: VigilResponse): void {
  const ex = (req as VigilRequest).exchange as Exchange
  ;(req as VigilRequest).exchange = undefined
  res.exchange = ex
  ex.begin()
}

const NO_PEERS: readonly Peer[] = []

/** Interim (1xx) responses allowed before the final one; a provider sending them forever would defeat every timeout. */
const MAX_INTERIM = 16
const INTERIM_STORM = Object.assign(new Error(`more than ${MAX_INTERIM} interim (1xx) responses`), { code: 'VIGIL_INTERIM_STORM' })

/**
 * One attempt of one request on one peer, written as an undici dispatch handler (the callback form: it hands
 * over raw header buffers and a resume function, which keeps the path free of header objects and closures).
 * It only relays undici's callbacks to its exchange; it is also what the monitor is told about (health/monitor.ts).
 */
export class Attempt implements Dispatcher.DispatchHandler, Attempted, InFlightEntry {
  private abortUpstream: ((err?: Error) => void) | undefined = undefined
  resumeUpstream: (() => void) | undefined = undefined
  /** Settled: counted, unlinked, and any later callback from undici is ignored. */
  settled = false
  /** The response status this attempt streams; 0 until it won. */
  status = 0
  /** Set when the answered status is itself a failure (failOn), so completion reports it. */
  failure: Failure | undefined = undefined
  role = Role.Normal
  prevWaiting: Waiting | undefined = undefined
  nextWaiting: Waiting | undefined = undefined
  waitingOn: WaitList | undefined = undefined
  /** Next attempt of the same exchange still running (hedging runs several). */
  nextLive: Attempt | undefined = undefined
  /** Its place in the peer's in-flight list (the watchdog's). */
  prevInPeer: InFlightEntry | undefined = undefined
  nextInPeer: InFlightEntry | undefined = undefined
  /** Set by the watchdog when it finds the client gone; still in flight at its next sweep means stuck. */
  orphaned = false
  /** performance.now() at dispatch and at the response headers, for the peer's latency estimate. */
  readonly sentAt = performance.now()
  headersAt = 0
  /** Stall re-dispatch already raced this attempt on another server. */
  private raced = false
  /** The grpc-status the call ended with, once known; -1 before (or for a plain HTTP request). */
  grpcStatus = -1
  /** Interim (1xx) responses seen: a provider that never stops sending them is cut off. */
  private interim = 0

  constructor(
    readonly exchange: Exchange,
    readonly peer: Peer,
    readonly started: number,
    /** Its group's timeouts when it was sent (the watchdog measures it against them). */
    readonly timeouts: UpstreamTimeouts,
  ) {}

  /** undici gave it a connection (it calls onConnect just before writing the request). */
  get connected(): boolean {
    return this.abortUpstream !== undefined
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.settled) abort()
    else this.abortUpstream = abort
  }

  /** `rawHeaders`: buffers from undici, strings from the HTTP/2 pool (src/upstream/h2-pool.ts). */
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    // 1xx: Node answers the client's Expect itself and 103 hints are optional; wait for the final response.
    if (statusCode < 200) {
      if (++this.interim > MAX_INTERIM) this.abortUpstream?.(INTERIM_STORM)
      return true
    }
    return this.exchange.headers(this, statusCode, rawHeaders, resume, statusText)
  }

  onData(chunk: Buffer): boolean {
    const ex = this.exchange
    if (ex.res.write(chunk)) return true
    ex.awaitDrain()
    return false
  }

  onComplete(trailers: string[] | null): void {
    this.exchange.complete(this, trailers)
  }

  onError(err: Error): void {
    if (!this.settled) this.exchange.error(this, err)
  }

  /** Its server is suspected of a stall while this attempt waits on it: race it elsewhere, once. */
  stalled(now: number): void {
    if (this.settled || this.raced) return
    this.raced = true
    this.exchange.stalled(now)
  }

  /** Stop the upstream request; the caller settled it first, so undici's onError is ignored. */
  abort(): void {
    this.abortUpstream?.()
  }
}

/** One client request: its attempts, retries and hedges, and the single answer the client gets. */
export class Exchange {
  private readonly started: number
  private readonly method: string | undefined
  private readonly head: RequestHead
  private readonly headerList: string[]
  private body: Buffer | IncomingMessage | null = null
  /** An HTTP/2 request body (no length up front), streamed to each attempt while its start is kept for a retry. */
  private replay: ReplayBody | undefined = undefined
  /** A gRPC call: retried until committed whatever its method; judged by grpc-status. */
  private readonly grpc: boolean
  /** Date.now() by which a gRPC call's grpc-timeout runs out: the call ends then (DEADLINE_EXCEEDED); 0 for none. */
  private readonly deadline: number
  /** Where grpc-timeout's value is in headerList: each try forwards the time left in it. */
  private readonly deadlineAt: number = -1
  private deadlineTimer: NodeJS.Timeout | undefined = undefined
  private chunks: Buffer[] | undefined = undefined
  /** Bytes of a buffered body still to come. */
  private bodyLeft = 0
  private attempts = 0
  private firstPeer: Peer | undefined = undefined
  private tried: Peer[] | undefined = undefined
  private live: Attempt | undefined = undefined
  private winner: Attempt | undefined = undefined
  private lastFailure: Failure | undefined = undefined
  private timer: NodeJS.Timeout | undefined = undefined
  private clientGone = false
  private finished = false
  private drainWatched = false

  constructor(
    readonly req: VigilRequest,
    readonly res: VigilResponse,
    private readonly upstream: Upstream,
    private readonly target: Target,
    private readonly hooks: ForwardHooks,
  ) {
    this.started = Date.now()
    this.method = req.method
    const head = (this.head = req.head ?? readRequestHead(req.rawHeaders))
    const hop = clientHop(req.socket, hooks)
    const te = upstream.connections.pool.protocol !== undefined && upstream.connections.pool.protocol !== 'http1'
    const fwd = { clientAddress: hop.clientAddress, proto: hop.proto, trusted: hop.trusted, host: upstream.hostHeader ?? target.host, originalHost: target.host, te, addHop: hop.addHop }
    this.headerList = forwardHeaders(head, fwd, head.connection, hop.elementFor(target.host))
    this.grpc = head.grpc
    const timeout = head.grpc ? grpcTimeout(head.grpcTimeout) : undefined
    this.deadline = timeout === undefined ? 0 : this.started + timeout
    if (timeout !== undefined) this.deadlineAt = grpcTimeoutIndex(this.headerList)
  }

  start(): void {
    this.armDeadline()
    const length = this.head.contentLength
    const chunked = this.head.chunked || this.head.streamed
    if (!chunked && (length === undefined || length === '0')) return this.first(this.started)
    // A small body is read first so it can be sent again on a retry; anything else streams.
    if (!chunked && this.upstream.retry.tries > 1 && Number(length) <= BODY_BUFFER_LIMIT) {
      this.chunks = []
      this.bodyLeft = Number(length)
      this.req.exchange = this
      this.req.on('data', onBodyData)
      this.req.on('end', onBodyEnd)
      return
    }
    if (this.head.streamed && this.upstream.retry.tries > 1) this.replay = new ReplayBody(this.req, BODY_BUFFER_LIMIT)
    else this.body = this.req
    this.first(this.started)
  }

  /** The client socket is full: undici stays paused until it drains. */
  awaitDrain(): void {
    if (this.drainWatched) return
    this.drainWatched = true
    this.res.on('drain', onClientDrain)
  }

  resumeUpstream(): void {
    const w = this.winner
    if (w !== undefined && !w.settled) w.resumeUpstream?.()
  }

  /**
   * Its last byte sends the request at once, inside the parser's 'data': 'end' comes a tick later, after Node has
   * already emitted a request pipelined behind this one, which would otherwise reach the provider first.
   */
  bodyChunk(chunk: Buffer): void {
    ;(this.chunks as Buffer[]).push(chunk)
    this.bodyLeft -= chunk.length
    if (this.bodyLeft <= 0) this.bodyEnd()
  }

  bodyEnd(): void {
    this.req.exchange = undefined
    this.body = Buffer.concat(this.chunks as Buffer[])
    this.chunks = undefined
    if (!this.finished) this.first(Date.now())
  }

  private first(now: number): void {
    this.upstream.retry.budget.request(now)
    this.begin(now)
  }

  /** Send the first attempt; or wait in the queue while every eligible peer is at maxConns; or answer 503. */
  begin(now = Date.now()): void {
    const up = this.upstream
    const peer = up.select(NO_PEERS, this.req)
    if (peer === undefined) {
      const refusal = up.refusal()
      if (refusal.code === 'max_conns' && enqueue(admitQueued, this.req, this.res, up, this.target, this.hooks, this.deadline)) {
        // While queued, the queue owns the request (its timeout, the call's deadline, the client leaving);
        // admitQueued hands it back.
        this.res.exchange = undefined
        this.req.exchange = this
        clearTimeout(this.deadlineTimer)
        this.deadlineTimer = undefined
        return
      }
      sendError(this.res, 503, refusal.code, refusal.detail)
      this.finish()
      return
    }
    this.firstPeer = peer
    this.armDeadline()
    this.launch(peer, now)
  }

  /** The call's deadline ends it, wherever it is (reading its body, trying, streaming the answer); not while queued. */
  private armDeadline(): void {
    if (this.deadline > 0 && this.deadlineTimer === undefined) this.deadlineTimer = setTimeout(onDeadline, Math.max(0, this.deadline - Date.now()), this)
  }

  private launch(peer: Peer, now: number): void {
    this.attempts++
    const a = new Attempt(this, peer, now, this.upstream.timeouts)
    a.nextLive = this.live
    this.live = a
    peer.attempts.add(a)
    this.upstream.monitor.dispatched(a, now)
    const perTry = this.upstream.retry.perTryTimeout
    if (perTry > 0) {
      clearTimeout(this.timer)
      this.timer = setTimeout(onPerTryTimeout, perTry, this)
    }
    const body = this.replay === undefined ? this.body : this.replay.open()
    peer.pool.dispatch({ path: this.target.path, method: this.method as Dispatcher.HttpMethod, headers: this.deadlineAt < 0 ? this.headerList : this.timeLeft(now), body }, a)
  }

  /**
   * The headers for a try of a call with a deadline: grpc-timeout says the time left, as gRPC clients compute it
   * for each attempt, so a provider never works on a call after vigil has ended it. A copy after the first try:
   * a try still queued in an HTTP/2 pool reads its list only when it starts.
   */
  private timeLeft(now: number): string[] {
    const list = this.attempts === 1 ? this.headerList : this.headerList.slice()
    list[this.deadlineAt] = grpcTimeoutValue(Math.max(1, this.deadline - now))
    return list
  }

  /** A peer this request has not used yet, or undefined. */
  private nextPeer(): Peer | undefined {
    const tried = (this.tried ??= [this.firstPeer as Peer])
    const peer = this.upstream.select(tried, this.req)
    if (peer !== undefined) tried.push(peer)
    return peer
  }

  /** Whether the body can be sent again: none, buffered, or a stream nothing has read from yet. */
  private replayable(): boolean {
    if (this.replay !== undefined) return this.replay.replayable
    const b = this.body
    return b === null || Buffer.isBuffer(b) || (!b.readableDidRead && !b.destroyed)
  }

  /**
   * What every new try (retry, hedge, stall re-dispatch) needs besides its policy: a gRPC call's deadline has not
   * passed, and the body can be sent again.
   */
  private mayTryAgain(now: number): boolean {
    return (this.deadline === 0 || now < this.deadline) && this.replayable()
  }

  /** The peer to try `f` again on, if the rules, a free peer and the budget allow it (the budget is charged). */
  private retryPeer(f: Failure, now: number): Peer | undefined {
    const policy = this.upstream.retry
    if (this.clientGone || !policy.allows(f, this.method, this.attempts, this.started, now, this.grpc) || !this.mayTryAgain(now)) return undefined
    const peer = this.nextPeer()
    if (peer === undefined) return undefined
    if (!policy.charge(now)) return undefined
    policy.retries++
    return peer
  }

  headers(a: Attempt, status: number, raw: Buffer[], resume: () => void, statusText: string): boolean {
    if (a.settled || this.winner !== undefined) return false
    const now = Date.now()
    const up = this.upstream
    let counted = up.monitor.responded(a, status, now)
    // A trailers-only gRPC answer carries its grpc-status in this head: the call's outcome is known now.
    const grpcStatus = this.grpc ? grpcStatusIn(raw) : -1
    if (grpcStatus >= 0) {
      a.grpcStatus = grpcStatus
      counted ??= up.monitor.grpcEnded(a.peer, grpcStatus)
    }
    if (up.retry.on.hasStatus(status) || up.retry.on.hasGrpc(grpcStatus)) {
      // A retryable status is answered only when no other peer is racing or can be tried.
      const f = grpcStatus >= 0 && up.retry.on.hasGrpc(grpcStatus) ? grpcFailure(grpcStatus) : httpFailure(status)
      const alone = this.live === a && a.nextLive === undefined
      const next = alone ? this.retryPeer(f, now) : undefined
      if (!alone || next !== undefined) {
        this.settle(a, f, true, now)
        a.abort()
        this.lastFailure = f
        if (next !== undefined) this.launch(next, now)
        return false
      }
    }
    a.failure = counted
    this.winner = a
    this.cancelOthers(a, now)
    a.status = status
    a.resumeUpstream = resume
    const headers = responseHeaders(raw)
    if (this.attempts > 1) headers.push('x-vigil-attempts', String(this.attempts))
    this.res.writeHead(status, statusText === '' ? undefined : statusText, headers)
    return true
  }

  complete(a: Attempt, trailers: string[] | null): void {
    if (a.settled) return
    if (this.grpc && a.grpcStatus < 0) {
      const grpcStatus = grpcStatusIn(trailers)
      a.grpcStatus = grpcStatus
      if (grpcStatus >= 0) a.failure ??= this.upstream.monitor.grpcEnded(a.peer, grpcStatus)
    }
    if (trailers !== null && trailers.length > 0 && !this.res.hasHeader('content-length')) this.res.addTrailers(trailerPairs(trailers))
    this.res.end()
    this.settle(a, a.failure, true, Date.now())
    this.finish()
  }

  error(a: Attempt, err: Error): void {
    const now = Date.now()
    // The client's socket is gone (its 'close' may not have run yet): whatever failed, the provider is not to blame.
    if (this.clientGone || this.req.socket.destroyed) {
      this.settle(a, undefined, false, now)
      this.clientClosed()
      return
    }
    const failure = classifyError(err)
    // A refused stream (REFUSED_STREAM, or past a GOAWAY's last stream) was never processed: no evidence.
    this.settle(a, failure, failure.refused !== true, now)
    const midBody = a === this.winner
    this.hooks.log.warn({ upstream: this.upstream.name, peer: a.peer.address, reason: failure.code, err: err.message, attempt: this.attempts, midBody }, 'upstream request failed')
    if (midBody) {
      // The status line is out: the only honest signal left is to cut the client connection.
      this.res.destroy()
      this.finish()
      return
    }
    this.lastFailure = failure
    this.retryOrFail(failure, now)
  }

  perTryTimeout(): void {
    this.timer = undefined
    const a = this.live
    if (a === undefined || this.winner !== undefined || this.finished) return
    const now = Date.now()
    const policy = this.upstream.retry
    if (policy.hedge) {
      if (!policy.mayHedge(this.method, this.attempts, this.started, now, this.grpc) || !this.mayTryAgain(now)) return
      const peer = this.nextPeer()
      if (peer === undefined || !policy.charge(now)) return
      policy.hedges++
      this.launch(peer, now)
      return
    }
    // Without hedging the slow attempt is abandoned as a timeout, and maybe retried.
    this.settle(a, PER_TRY_TIMEOUT, true, now)
    a.abort()
    this.lastFailure = PER_TRY_TIMEOUT
    this.retryOrFail(PER_TRY_TIMEOUT, now)
  }

  /**
   * Stall re-dispatch: the server an attempt waits on was just suspected of a stall. Race the request on another
   * server at once, keeping the original (first answer wins, the loser is cancelled): a hedge fired by evidence
   * instead of a perTryTimeout guess, charged to the retry budget like one.
   */
  stalled(now: number): void {
    if (this.winner !== undefined || this.finished || this.clientGone) return
    const policy = this.upstream.retry
    if (!policy.mayRedispatch(this.method, this.attempts, this.started, now, this.grpc) || !this.mayTryAgain(now)) return
    const peer = this.nextPeer()
    if (peer === undefined || !policy.charge(now)) return
    policy.redispatches++
    this.launch(peer, now)
  }

  /**
   * The call's grpc-timeout ran out: every try is cancelled (RST_STREAM CANCEL) and the client gets
   * DEADLINE_EXCEEDED from vigil, as Envoy and grpc-go end it. The deadline is the client's budget, not evidence
   * against the provider: it counts as a failure only where passive.failOn lists grpc_DEADLINE_EXCEEDED.
   */
  deadlineExceeded(): void {
    this.deadlineTimer = undefined
    if (this.finished || this.res.writableEnded) return
    const now = Date.now()
    const monitor = this.upstream.monitor
    for (let a = this.live; a !== undefined; a = this.live) {
      a.grpcStatus = GRPC_DEADLINE_EXCEEDED
      const counted = monitor.grpcEnded(a.peer, GRPC_DEADLINE_EXCEEDED)
      this.settle(a, counted, counted !== undefined, now)
      a.abort()
    }
    const detail = `deadline exceeded: upstream "${this.upstream.name}" did not finish the call within its grpc-timeout (${this.deadline - this.started} ms)`
    if (this.winner === undefined) sendGrpcStatus(this.res, GRPC_DEADLINE_EXCEEDED, 'deadline_exceeded', detail, this.attempts === 0 ? undefined : this.attempts)
    else endStartedCall(this.res, GRPC_DEADLINE_EXCEEDED, 'deadline_exceeded', detail)
    this.finish()
  }

  clientClosed(): void {
    // writableEnded, not writableFinished: an HTTP/2 stream the client reset counts as finished writing.
    if (this.finished || this.res.writableEnded) return
    this.clientGone = true
    const now = Date.now()
    // Aborted because the client went away: not the provider's failure.
    for (let a = this.live; a !== undefined; a = this.live) {
      this.settle(a, undefined, false, now)
      a.abort()
    }
    this.finish()
  }

  /**
   * The watchdog: `a` waited for a pool connection longer than timeouts.queue (every connection of the peer busy).
   * vigil's own limit, so it says nothing about the provider; another peer may be tried, else 503 pool_timeout.
   */
  poolTimeout(a: Attempt, now: number): void {
    a.peer.poolTimeouts++
    this.settle(a, POOL_TIMEOUT, false, now)
    this.hooks.log.warn({ upstream: this.upstream.name, peer: a.peer.address, reason: POOL_TIMEOUT.code, waitedMs: now - a.started, inflight: a.peer.inflight }, 'request waited too long for a pooled connection')
    this.lastFailure = POOL_TIMEOUT
    this.retryOrFail(POOL_TIMEOUT, now)
  }

  /** The watchdog: `a` outlived every timeout meant to end it. End it (the watchdog reports it) so it cannot hold the pool. */
  stuck(a: Attempt, now: number): void {
    this.settle(a, STUCK, false, now)
    a.abort()
    if (this.clientGone || this.req.socket.destroyed) return this.clientClosed()
    if (a === this.winner) {
      this.res.destroy()
      this.finish()
      return
    }
    this.lastFailure = STUCK
    if (this.live === undefined) this.fail()
  }

  /** After a failed attempt: wait for a hedge still racing, or try another peer, or answer the failure. */
  private retryOrFail(f: Failure, now: number): void {
    if (this.live !== undefined) return
    const next = this.retryPeer(f, now)
    if (next === undefined) this.fail()
    else this.launch(next, now)
  }

  /** Report an attempt exactly once to the monitor, which counts it everywhere it counts. */
  private settle(a: Attempt, failure: Failure | undefined, conclusive: boolean, now: number): void {
    if (a.settled) return
    a.settled = true
    this.unlink(a)
    a.peer.attempts.remove(a)
    const monitor = this.upstream.monitor
    monitor.settled(a, failure, conclusive, now)
    monitor.released(a.peer)
    // The provider's status, or why there was none (connect_refused, ...; "-" when abandoned for another try).
    this.res.access?.attempt(a.peer.address, a.status || (failure === undefined ? '-' : failure.kind === 'http' ? failure.status : failure.code), now - a.started)
  }

  private unlink(a: Attempt): void {
    if (this.live === a) this.live = a.nextLive
    else for (let p = this.live; p !== undefined; p = p.nextLive) if (p.nextLive === a) p.nextLive = a.nextLive
    a.nextLive = undefined
  }

  /**
   * The first attempt with a response wins; the others are cancelled. A loser that had already outlived
   * perTryTimeout failed it (that is why it was hedged); a younger one says nothing about its peer, nor does
   * one raced by stall re-dispatch (the stall suspicion already keeps new requests away from its server).
   */
  private cancelOthers(winner: Attempt, now: number): void {
    clearTimeout(this.timer)
    this.timer = undefined
    const perTry = this.upstream.retry.perTryTimeout
    for (let a = this.live; a !== undefined; ) {
      const next = a.nextLive
      if (a !== winner) {
        const late = perTry > 0 && now - a.started >= perTry
        this.settle(a, late ? PER_TRY_TIMEOUT : undefined, late, now)
        a.abort()
      }
      a = next
    }
  }

  /** Every try failed and no other is possible: answer with the last failure, saying how many were made. */
  private fail(): void {
    const f = this.lastFailure as Failure
    sendError(this.res, f.status, f.code, describe(f, this.upstream.name), this.attempts)
    this.finish()
  }

  private finish(): void {
    if (this.finished) return
    this.finished = true
    clearTimeout(this.timer)
    clearTimeout(this.deadlineTimer)
    this.res.exchange = undefined
    this.req.exchange = undefined
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
    case 'per_try_timeout':
      return `upstream "${upstream}" timed out before sending a response`
    case 'pool_timeout':
      return `no connection to a server of "${upstream}" became free within timeouts.queue`
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
export function forward(req: VigilRequest, res: VigilResponse, upstream: Upstream, target: Target, hooks: ForwardHooks): void {
  const ex = new Exchange(req, res, upstream, target, hooks)
  res.exchange = ex
  req.response = res
  res.on('close', onClientClose)
  req.on('close', onRequestClose)
  ex.start()
}
