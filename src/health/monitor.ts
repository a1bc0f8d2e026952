// The one interface the data path reports to. Every attempt on a server (a forwarded request, a retry, a hedge,
// an upgrade) is dispatched, maybe answered (response headers), and settled exactly once; the monitor turns
// that into the server's counters and latency estimate, passive health (ejection, stall), and whatever
// subscribed (metrics). Envoy feeds its outlier detector the same way: result, status, response time.
// It holds no state of its own beyond its subscribers and lives as long as its group (group-state.ts), reporting to
// the passive health of the live generation.
import type { Peer } from '../upstream/peer.js'
import type { GroupState } from '../upstream/group-state.js'
import { grpcFailure, httpFailure, type Failure } from './outcome.js'
import type { Waiting } from './stall.js'

/** An attempt as the monitor sees it: the data path's Attempt and Tunnel implement it. */
export interface Attempted extends Waiting {
  readonly peer: Peer
  /** performance.now() at dispatch and at response headers (0 until then): the server's latency sample. */
  readonly sentAt: number
  headersAt: number
  /** The response status; 0 while there is none. */
  status: number
}

/** Subscribers to settled attempts (metrics). Called on the hot path: no allocation, no throwing. */
export interface AttemptObserver {
  /**
   * `status` is 0 when the attempt ended before a response status; `ms` is the attempt's duration; `failure` what
   * passive health counts it as (a status or grpc-status in failOn, an error), undefined for none.
   */
  finished(peer: Peer, status: number, ms: number, failure: Failure | undefined): void
}

const NONE: readonly AttemptObserver[] = []

export class Monitor {
  /** Replaced, never mutated: a subscriber added while outcomes are being reported cannot be lost or doubled. */
  private observers: readonly AttemptObserver[] = NONE

  constructor(private readonly group: GroupState) {}

  subscribe(o: AttemptObserver): void {
    if (!this.observers.includes(o)) this.observers = [...this.observers, o]
  }

  unsubscribe(o: AttemptObserver): void {
    this.observers = this.observers.filter((x) => x !== o)
  }

  /** The attempt is being sent: it is load on its server, and passive health gives it its role (trial...). */
  dispatched(a: Attempted, now: number): void {
    a.peer.inflight++
    this.group.live.passive.dispatched(a.peer, a, now)
  }

  /** Response headers arrived with `status`; returns the failure that status counts as for passive health, if any. */
  responded(a: Attempted, status: number, now: number): Failure | undefined {
    a.headersAt = performance.now()
    const passive = this.group.live.passive
    passive.responded(a, now)
    return passive.failOn.hasStatus(status) ? httpFailure(status) : undefined
  }

  /** A gRPC call ended with `grpcStatus` (trailers, or a trailers-only head): the failure it counts as, if any. */
  grpcEnded(peer: Peer, grpcStatus: number): Failure | undefined {
    peer.stats.grpc(grpcStatus)
    return this.group.live.passive.failOn.hasGrpc(grpcStatus) ? grpcFailure(grpcStatus) : undefined
  }

  /** The attempt is over, counted once. `conclusive` false (the client left, a hedge lost young) says nothing. */
  settled(a: Attempted, failure: Failure | undefined, conclusive: boolean, now: number): void {
    const peer = a.peer
    peer.requests++
    if (failure !== undefined && conclusive) peer.failures++
    else if (failure === undefined && a.status !== 0) peer.lastAnswered = now
    // Time to headers; an attempt that timed out waited at least that long, while a fast failure says nothing.
    if (a.headersAt !== 0 || failure?.kind === 'timeout') {
      // The headers time is also the sample's clock reading: no second read.
      const at = a.headersAt || performance.now()
      peer.recordLatency(at - a.sentAt, at)
    }
    const ms = now - a.started
    for (const o of this.observers) o.finished(peer, a.status, ms, failure)
    this.group.live.passive.settled(peer, a, failure, conclusive, now)
  }

  /** The attempt no longer loads its server (settled, or its tunnel closed): queued requests may go. */
  released(peer: Peer): void {
    peer.inflight--
    this.group.live.admitWaiting()
  }
}
