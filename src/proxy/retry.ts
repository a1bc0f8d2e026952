// Retry policy of one upstream group: nginx's proxy_next_upstream rules, a retry budget so retries never
// multiply an overload, and the per-try timeout that either abandons a slow attempt or hedges it.
import type { Retry } from '../config/schema.js'
import { ms } from '../config/duration.js'
import { FailureSet, type Failure } from '../health/outcome.js'

export const RETRY_DEFAULTS = {
  on: ['error', 'timeout'],
  tries: 3,
  /** 0: no limit on the time in which another try may start (nginx's proxy_next_upstream_timeout 0). */
  timeout: 0,
  /** Finagle's RetryBudget defaults: 20% of requests over 10 s, and at least 10 retries a second. */
  budgetPercent: 20,
  budgetMinPerSecond: 10,
} as const

/**
 * Request bodies up to this size (with a Content-Length) are read before the first attempt so they can be
 * sent again; larger or chunked bodies stream and are retried only if no byte of them was read yet.
 * nginx buffers every request body by default (proxy_request_buffering on); this bounds the cost.
 */
export const BODY_BUFFER_LIMIT = 64 * 1024

/** The budget window is two halves; the older half is dropped as a whole (a cheap sliding window). */
const BUDGET_HALF = 5_000

/** Methods nginx never retries once the request was sent (proxy_next_upstream non_idempotent). */
export function idempotent(method: string | undefined): boolean {
  return method !== 'POST' && method !== 'PATCH' && method !== 'LOCK'
}

/** At most `percent` of requests over the last ~10 s may be retries or hedges, but always `minPerSecond`. */
export class RetryBudget {
  private halfStart = 0
  private requests = 0
  private retries = 0
  private prevRequests = 0
  private prevRetries = 0

  constructor(
    private readonly percent: number,
    private readonly minPerSecond: number,
  ) {}

  private roll(now: number): void {
    if (now - this.halfStart < BUDGET_HALF) return
    const stale = now - this.halfStart >= 2 * BUDGET_HALF
    this.prevRequests = stale ? 0 : this.requests
    this.prevRetries = stale ? 0 : this.retries
    this.requests = 0
    this.retries = 0
    this.halfStart = now
  }

  /** A client request arrived (deposit). */
  request(now: number): void {
    this.roll(now)
    this.requests++
  }

  /** Take one retry from the budget; false when it is spent. */
  withdraw(now: number): boolean {
    this.roll(now)
    const allowed = Math.max((this.minPerSecond * 2 * BUDGET_HALF) / 1000, ((this.requests + this.prevRequests) * this.percent) / 100)
    if (this.retries + this.prevRetries >= allowed) return false
    this.retries++
    return true
  }
}

export class RetryPolicy {
  readonly on: FailureSet
  readonly tries: number
  /** ms after the request started in which another try may still start; 0 is no limit. */
  readonly timeout: number
  readonly nonIdempotent: boolean
  /** 0 when off. */
  readonly perTryTimeout: number
  readonly hedge: boolean
  readonly budget: RetryBudget
  /** Counters for metrics. */
  retries = 0
  hedges = 0
  /** Requests raced on another server because the one they waited on was suspected of a stall. */
  redispatches = 0
  budgetExhausted = 0

  constructor(c: Retry | undefined) {
    const d = RETRY_DEFAULTS
    this.on = new FailureSet(c?.on ?? d.on, false)
    this.tries = c?.tries ?? d.tries
    this.timeout = ms(c?.timeout ?? d.timeout)
    this.nonIdempotent = c?.nonIdempotent ?? false
    this.perTryTimeout = ms(c?.perTryTimeout ?? 0)
    this.hedge = this.perTryTimeout > 0 && c?.hedge === true
    this.budget = new RetryBudget(c?.budget?.percent ?? d.budgetPercent, c?.budget?.minPerSecond ?? d.budgetMinPerSecond)
  }

  /**
   * nginx's rules for moving a failed attempt to another peer, before a peer is picked: the failure is listed
   * (a refused stream always is), tries and time are left, and a non-idempotent request never reached the
   * provider (unless allowed). `grpc`: a gRPC call, which gRPC lets be retried until it is committed (response
   * headers forwarded: the data path never retries after that) whatever its method (every call is a POST).
   */
  allows(f: Failure, method: string | undefined, attempts: number, started: number, now: number, grpc = false): boolean {
    return (
      (f.refused === true || this.on.has(f)) &&
      attempts < this.tries &&
      (this.timeout === 0 || now - started < this.timeout) &&
      (f.beforeSend || this.nonIdempotent || grpc || idempotent(method))
    )
  }

  /** Charge one retry or hedge to the budget; false (and counted) when the budget is spent. */
  charge(now: number): boolean {
    if (this.budget.withdraw(now)) return true
    this.budgetExhausted++
    return false
  }

  /** May a hedge start now? Only for idempotent requests, within tries and time. */
  mayHedge(method: string | undefined, attempts: number, started: number, now: number, grpc = false): boolean {
    return this.hedge && (grpc || idempotent(method)) && this.mayRace(attempts, started, now)
  }

  /**
   * May a request waiting on a server just suspected of a stall race on another one (passive.stall.redispatch)?
   * The methods a retry after sending may repeat (idempotent ones, or all with nonIdempotent), within tries and time.
   */
  mayRedispatch(method: string | undefined, attempts: number, started: number, now: number, grpc = false): boolean {
    return (this.nonIdempotent || grpc || idempotent(method)) && this.mayRace(attempts, started, now)
  }

  private mayRace(attempts: number, started: number, now: number): boolean {
    return attempts < this.tries && (this.timeout === 0 || now - started < this.timeout)
  }
}
