// HTTP check: a request on the check's own undici Client (never the proxied traffic's pool, so a check is
// never queued behind requests), passing on an expected status and, optionally, a body matching a regex.
// Over HTTP/1.1 or, for HTTP/2-only providers, HTTP/2: cleartext with prior knowledge (undici's H2CClient) or
// over TLS by ALPN (`allowH2`); either way one connection, which the check's close() destroys. Over HTTP/2 an
// aborted request only resets its stream, so a check that timed out replaces the client: as with the gRPC
// check, a frozen or half-dead session is never reused (over HTTP/1.1 undici closes the socket itself).
//
// Sent with undici's callback `dispatch` and a small handler, not `request()`: checks are most of an idle
// proxy's CPU, and the promise API adds a body stream, an async resource and signal plumbing to every one.
import { Client, H2CClient, type Dispatcher } from 'undici'
import type { HttpCheck } from '../check-spec.js'
import { classifyError } from '../outcome.js'
import { PASSED, TIMED_OUT, type Probe, type ProbeResult } from './probe.js'
import type { ProbeTls } from './tls.js'

/** Bodies are matched on their first 64 KiB. */
const MAX_BODY = 64 * 1024
/**
 * A body nobody reads is still drained, so the keep-alive connection serves the next check; past this much
 * (undici's `dump()` default) the request is aborted, closing the connection, so an endless body ends the check.
 */
const DRAIN_LIMIT = 128 * 1024

/** Which status codes pass: "2xx" is a class, "204" one code. */
export function statusTable(expect: readonly string[]): boolean[] {
  const table = new Array<boolean>(600).fill(false)
  for (const e of expect) {
    if (e.endsWith('xx')) table.fill(true, Number(e[0]) * 100, Number(e[0]) * 100 + 100)
    else table[Number(e)] = true
  }
  return table
}

export class HttpProbe implements Probe {
  private client: Dispatcher
  private readonly connect: () => Dispatcher
  private readonly h2: boolean
  /** The same for every check: undici only reads it. */
  private readonly request: Dispatcher.DispatchOptions
  /** Read by each check's CheckRequest: which statuses pass, and the body's regex. */
  readonly passes: boolean[]
  readonly body: RegExp | undefined

  constructor(
    origin: string,
    hostHeader: string,
    spec: HttpCheck,
    tls: ProbeTls | undefined,
    h2: boolean,
  ) {
    this.h2 = h2
    this.connect = () => (h2 && tls === undefined ? new H2CClient(origin, { pipelining: 1 }) : new Client(origin, { pipelining: 1, connect: tls, allowH2: h2 }))
    this.client = this.connect()
    this.passes = statusTable(spec.expectStatus)
    this.body = spec.expectBody === undefined ? undefined : new RegExp(spec.expectBody)
    const headers = { 'user-agent': 'vigil-check', ...spec.headers, host: spec.host ?? hostHeader }
    this.request = { method: spec.method, path: spec.path, headers: Object.entries(headers).flat() }
  }

  check(signal: AbortSignal): Promise<ProbeResult> {
    return new Promise((resolve) => {
      const check = new CheckRequest(this, signal, resolve)
      if (signal.aborted) return check.handleEvent()
      signal.addEventListener('abort', check)
      this.client.dispatch(this.request, check)
    })
  }

  /** The check's timeout ran out before it had its answer. */
  timedOut(): void {
    if (!this.h2) return
    void this.client.destroy()
    this.client = this.connect()
  }

  close(): Promise<void> {
    return this.client.destroy()
  }
}

/**
 * One check's request: undici's legacy handler callbacks (as the proxy's Attempt), and the listener on the check's
 * signal (an EventListener object, so a check allocates no closure for it). It settles exactly once.
 */
class CheckRequest implements Dispatcher.DispatchHandler, EventListenerObject {
  private abortUpstream: ((err?: Error) => void) | undefined = undefined
  private settled = false
  /** The check's answer once the status (or the matched body) gave it; undefined before. */
  private verdict: ProbeResult | undefined = undefined
  /** The body so far, kept only while it is to be matched. */
  private chunks: Buffer[] | undefined = undefined
  private bytes = 0

  constructor(
    private readonly probe: HttpProbe,
    private readonly signal: AbortSignal,
    private readonly resolve: (result: ProbeResult) => void,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    // The check ended while the request waited for its connection: undici has not written it yet.
    if (this.settled) abort()
    else this.abortUpstream = abort
  }

  /** `rawHeaders` are strings over HTTP/2; only the status is read. */
  onHeaders(statusCode: number): boolean {
    // 1xx: wait for the final response.
    if (statusCode < 200) return true
    if (this.probe.passes[statusCode] !== true) this.verdict = { ok: false, reason: `status_${statusCode}` }
    else if (this.probe.body === undefined) this.verdict = PASSED
    else this.chunks = []
    return true
  }

  onData(chunk: Buffer): boolean {
    this.bytes += chunk.length
    if (this.chunks !== undefined) {
      this.chunks.push(chunk)
      if (this.bytes < MAX_BODY) return true
      // The verdict is in; the rest is drained like a body nobody reads.
      this.verdict = this.matched()
      this.chunks = undefined
    }
    if (this.bytes > DRAIN_LIMIT) this.end(this.verdict as ProbeResult)
    return true
  }

  onComplete(): void {
    this.settle(this.verdict ?? this.matched())
  }

  onError(err: Error): void {
    // Once the answer is in, a body cut short only costs the connection.
    this.settle(this.verdict ?? { ok: false, reason: classifyError(err).code, detail: err.message })
  }

  /** The signal aborted: the check's timeout. */
  handleEvent(): void {
    // An abort while the rest of the body drains keeps the answer (as `dump()` did under `request()`).
    if (this.verdict !== undefined) return this.end(this.verdict)
    this.end(TIMED_OUT)
    this.probe.timedOut()
  }

  /** Settle, and stop the request (a no-op once it completed; before onConnect, onConnect aborts it). */
  private end(result: ProbeResult): void {
    this.settle(result)
    this.abortUpstream?.()
  }

  private settle(result: ProbeResult): void {
    if (this.settled) return
    this.settled = true
    this.signal.removeEventListener('abort', this)
    this.resolve(result)
  }

  /** The body's first MAX_BODY bytes, decoded whole (a character split across chunks is joined first). */
  private matched(): ProbeResult {
    const text = Buffer.concat(this.chunks ?? [], Math.min(this.bytes, MAX_BODY)).toString('utf8')
    return (this.probe.body as RegExp).test(text) ? PASSED : { ok: false, reason: 'body_mismatch', detail: text.slice(0, 80) }
  }
}
