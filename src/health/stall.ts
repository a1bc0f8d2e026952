// Stall detection: a server whose oldest waiting request has waited far longer than the group usually takes
// (max(floor, factor × the group's recent p99)), with no response from it meanwhile, is suspected: it gets no
// new requests until it answers again. Requests waiting for response headers sit in an intrusive list per
// server (no allocation); a tick inspects the heads. A late tick means vigil's own loop lagged: inconclusive.
// In a cluster the group's p99 is the proxy's, not one worker's: each worker sends its response times to the
// primary (src/workers/outcomes.ts), whose watch holds the last LATENCY_SAMPLES of them all, and every worker
// judges by the p99 the primary sends back (adopt()), as one process judges by its own.
import type { PeerHealth, Role } from './ejection.js'

/** How often waiting requests are inspected for stalls. */
export const STALL_TICK = 100
/** Response times kept for the group's p99. */
export const LATENCY_SAMPLES = 512

/** A request waiting for response headers; the data path's attempts implement it (an intrusive list). */
export interface Waiting {
  readonly started: number
  role: Role
  prevWaiting: Waiting | undefined
  nextWaiting: Waiting | undefined
  waitingOn: WaitList | undefined
  /** The server it waits on is suspected of a stall (stall re-dispatch may race it elsewhere); told once or more. */
  stalled(now: number): void
}

export interface StallEvidence {
  /** Age of the oldest request still waiting for response headers, ms. */
  waiting: number
  threshold: number
  p99: number
}

/** The yardstick a group's stall watch judges by (the status page shows it). */
export interface StallYardstick {
  p99: number
  threshold: number
  /** Response times the p99 is taken from (at most LATENCY_SAMPLES); in a cluster's primary, every worker's. */
  samples: number
}

export interface StallSettings {
  factor: number
  floor: number
  /** Race the idempotent requests waiting on a suspect server on another one (passive.stall.redispatch). */
  redispatch: boolean
}

/** One server's requests waiting for response headers, oldest first, and when it last answered anything. */
export class WaitList {
  constructor(readonly owner: PeerHealth) {}

  head: Waiting | undefined = undefined
  tail: Waiting | undefined = undefined
  lastResponse = 0

  link(w: Waiting): void {
    w.waitingOn = this
    w.prevWaiting = this.tail
    if (this.tail === undefined) this.head = w
    else this.tail.nextWaiting = w
    this.tail = w
  }

  unlink(w: Waiting): void {
    if (w.prevWaiting === undefined) this.head = w.nextWaiting
    else w.prevWaiting.nextWaiting = w.nextWaiting
    if (w.nextWaiting === undefined) this.tail = w.prevWaiting
    else w.nextWaiting.prevWaiting = w.prevWaiting
    w.prevWaiting = w.nextWaiting = w.waitingOn = undefined
  }

  /** How long the oldest waiting request has waited with no response from this server meanwhile; 0 when none waits. */
  silentFor(now: number): number {
    const head = this.head
    return head === undefined ? 0 : now - Math.max(head.started, this.lastResponse)
  }

  /** Tell the requests that have waited longer than `age` ms (oldest first) that their server stalled. */
  notifyStalled(now: number, age: number): void {
    for (let w = this.head; w !== undefined && now - w.started > age; ) {
      // Racing may settle this request and unlink it: take the next one first.
      const next = w.nextWaiting
      w.stalled(now)
      w = next
    }
  }
}

/**
 * Whether this process judges stalls. A cluster's primary holds no request (its workers do, judge them and report
 * their suspicions): judging its own empty wait lists, it would clear every suspicion for "nothing waiting".
 */
let judgedHere = true

export function leaveStallJudgementToWorkers(): void {
  judgedHere = false
}

/**
 * Whether this process's watch clears a suspicion it no longer sees. A cluster's worker does not: it sees its own
 * requests only, and the suspicion may rest on another worker's, whose requests may still wait. An answer still
 * clears it at once (answered()); short of one, its primary clears it once no worker has a request waiting there.
 */
let clearedHere = true

export function leaveClearingSuspicionsToPrimary(): void {
  clearedHere = false
}

function tick(s: StallWatch): void {
  const now = Date.now()
  // A tick that comes late means vigil's own event loop lagged: responses may be sitting unread, so
  // the ages say nothing about the providers this time (inconclusive, like a lagged active check).
  const lagged = now - s.lastTick > 2 * STALL_TICK
  s.lastTick = now
  if (!lagged) s.check(now)
}

/** The stall detector of one group: the group's recent response times, and the tick that judges each server. */
export class StallWatch {
  private readonly latencies = new Float64Array(LATENCY_SAMPLES)
  private readonly sorted = new Float64Array(LATENCY_SAMPLES)
  private samples = 0
  /** The p99 last computed, and the sample count it was computed at (a sort only when samples came since). */
  private sortedAt = 0
  private cachedP99 = 0
  /** The samples already handed on by taken(). */
  private takenAt = 0
  /** The proxy's p99, from a cluster's primary; undefined in one process (it judges by its own). */
  private adoptedP99: number | undefined = undefined
  private readonly timer: NodeJS.Timeout | undefined
  lastTick = Date.now()

  constructor(
    readonly settings: StallSettings,
    private readonly peers: () => readonly PeerHealth[],
  ) {
    this.timer = judgedHere ? setInterval(tick, STALL_TICK, this).unref() : undefined
  }

  /** Hot path: a response time sample (ms to response headers); a cluster's primary takes its workers' here too. */
  sample(ms: number): void {
    this.latencies[this.samples++ % LATENCY_SAMPLES] = ms
  }

  check(now: number): void {
    const peers = this.peers()
    const floor = this.settings.floor
    let oldest = 0
    for (const h of peers) oldest = Math.max(oldest, h.waits.silentFor(now))
    // The p99 costs a sort: only worth it when some peer is past the floor, or one is suspect already.
    if (oldest <= floor && !peers.some(isSuspect)) return
    const p99 = this.p99()
    const threshold = this.threshold(p99)
    const redispatch = this.settings.redispatch
    for (const h of peers) {
      const head = h.waits.head
      const stalled = h.waits.silentFor(now) > threshold
      if (h.suspect && redispatch) {
        // Its waiting requests were raced elsewhere: only an answer clears it (answered()); meanwhile those that
        // outwait the threshold are raced too, and with none left one request may go to find out.
        if (head === undefined) h.maybeStallTrial(now)
        else h.waits.notifyStalled(now, threshold)
        continue
      }
      if (stalled === h.suspect || (!stalled && !clearedHere)) continue
      h.stallVerdict(stalled, { waiting: head === undefined ? 0 : now - head.started, threshold, p99 })
      // Suspected (the cap allowed it): every request already waiting on it may be raced elsewhere at once.
      if (h.suspect && redispatch) h.waits.notifyStalled(now, -1)
    }
  }

  private threshold(p99: number): number {
    return Math.max(this.settings.floor, this.settings.factor * p99)
  }

  /** The group's recent p99: the proxy's when a primary sent one, else this process's own. */
  p99(): number {
    return this.adoptedP99 ?? this.ownP99()
  }

  /** The p99 of the response times this process holds (in a cluster's primary: every worker's). */
  ownP99(): number {
    if (this.sortedAt === this.samples) return this.cachedP99
    this.sortedAt = this.samples
    const n = Math.min(this.samples, LATENCY_SAMPLES)
    if (n === 0) return (this.cachedP99 = 0)
    const view = this.sorted.subarray(0, n)
    view.set(this.latencies.subarray(0, n))
    view.sort()
    return (this.cachedP99 = view[Math.min(n - 1, Math.floor(n * 0.99))] as number)
  }

  /** How many response times this process holds (at most LATENCY_SAMPLES). */
  get held(): number {
    return Math.min(this.samples, LATENCY_SAMPLES)
  }

  yardstick(): StallYardstick {
    const p99 = this.p99()
    return { p99, threshold: this.threshold(p99), samples: this.held }
  }

  /**
   * A cluster worker: judge by the proxy's p99 (every worker's samples, merged at the primary, at most a batch
   * old) from now on, instead of this worker's share of them.
   */
  adopt(p99: number): void {
    this.adoptedP99 = p99
  }

  /** The response times sampled since the last call (the newest LATENCY_SAMPLES at most), oldest first. */
  taken(): number[] {
    const from = Math.max(this.takenAt, this.samples - LATENCY_SAMPLES)
    const out = new Array<number>(this.samples - from)
    for (let i = from; i < this.samples; i++) out[i - from] = this.latencies[i % LATENCY_SAMPLES] as number
    this.takenAt = this.samples
    return out
  }

  close(): void {
    clearInterval(this.timer)
  }
}

function isSuspect(h: PeerHealth): boolean {
  return h.suspect
}
