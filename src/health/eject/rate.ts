// Failure-rate ejection with opossum: one breaker per peer over a rolling window. The breaker's states are
// the passive states (open = ejected, half-open = the single trial request, closed = in rotation), so this
// detector does not answer "eject now" itself: it reports the breaker's transitions to its host.
import type { EventEmitter } from 'node:events'
import CircuitBreaker from 'opossum'
import type { Detector, Evidence } from './detector.js'

export interface BreakerHost {
  /** How long the coming ejection lasts; asked just before opossum starts its reset timer. */
  ejectDuration(): number
  breakerOpened(): void
  breakerHalfOpen(): void
  breakerClosed(): void
}

export interface RateOptions {
  /** Eject when more than this percentage of the window's requests failed. */
  failPercent: number
  minRequests: number
  window: number
  /** One emitter rotating the buckets of every breaker of a group, instead of one interval per breaker. */
  rotate: EventEmitter
}

export const RATE_BUCKETS = 10

const NO_ARGS: readonly unknown[] = []

/** A failure is fired as an action that throws, so opossum counts it and decides; one shared error. */
const FAILED = Object.assign(new Error('request failed'), { code: 'EVIGILFAILED' })

function throwFailure(): Promise<boolean> {
  throw FAILED
}

/** opossum rejects fire() while open and for failures; answering with a fallback keeps those rejections handled. */
function ignore(): boolean {
  return false
}

export class RateDetector implements Detector {
  readonly breaker: CircuitBreaker<[], boolean>
  /** opossum keeps and reads this very object, so the reset timeout can be set per ejection. */
  private readonly options: CircuitBreaker.Options<[]>

  constructor(host: BreakerHost, options: RateOptions) {
    this.options = {
      // The request has finished when its outcome is fired: no action timeout, no per-call timer.
      timeout: false,
      errorThresholdPercentage: options.failPercent,
      volumeThreshold: options.minRequests,
      rollingCountTimeout: options.window,
      rollingCountBuckets: RATE_BUCKETS,
      rotateBucketController: options.rotate,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      resetTimeout: options.window,
    }
    this.breaker = new CircuitBreaker(throwFailure, this.options)
    this.breaker.fallback(ignore)
    // opossum starts its reset timer from an 'open' listener of its own; ours must set the duration first.
    this.breaker.prependListener('open', () => (this.options.resetTimeout = host.ejectDuration()))
    this.breaker.on('open', () => host.breakerOpened())
    this.breaker.on('halfOpen', () => host.breakerHalfOpen())
    this.breaker.on('close', () => host.breakerClosed())
  }

  record(failed: boolean): boolean {
    // A failure goes through fire(), where opossum decides whether to open. A success only needs counting:
    // emitting the breaker's own events updates its window (and closes it when half-open) without the
    // promise chain fire() builds, which cost ~11 µs a request in bench/passive-cost.ts.
    if (failed) void this.breaker.fire()
    else {
      this.breaker.emit('fire', NO_ARGS)
      this.breaker.emit('success', true, 0)
    }
    return false
  }

  /** Put the peer back in rotation without a trial (the ejection cap refused the ejection). */
  reset(): void {
    this.breaker.close()
  }

  evidence(): Evidence {
    const s = this.breaker.stats
    return { failures: s.failures, requests: s.fires, span: this.options.rollingCountTimeout ?? 0 }
  }

  shutdown(): void {
    this.breaker.shutdown()
  }
}
