// Stall detection: a server whose oldest waiting request has waited far longer than the group usually takes
// (max(floor, factor × the group's recent p99)), with no response from it meanwhile, is suspected: it gets no
// new requests until it answers again. Requests waiting for response headers sit in an intrusive list per
// server (no allocation); a tick inspects the heads. A late tick means vigil's own loop lagged: inconclusive.
import type { PeerHealth, Role } from './ejection.js'

/** How often waiting requests are inspected for stalls. */
export const STALL_TICK = 100
/** Response times kept for the group's p99. */
const LATENCY_SAMPLES = 512

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
  private readonly timer: NodeJS.Timeout
  lastTick = Date.now()

  constructor(
    readonly settings: StallSettings,
    private readonly peers: () => readonly PeerHealth[],
  ) {
    this.timer = setInterval(tick, STALL_TICK, this)
    this.timer.unref()
  }

  /** Hot path: a response time sample (ms to response headers). */
  sample(ms: number): void {
    this.latencies[this.samples++ % LATENCY_SAMPLES] = ms
  }

  check(now: number): void {
    const peers = this.peers()
    const { floor, factor } = this.settings
    let oldest = 0
    for (const h of peers) oldest = Math.max(oldest, h.waits.silentFor(now))
    // The p99 costs a sort: only worth it when some peer is past the floor, or one is suspect already.
    if (oldest <= floor && !peers.some(isSuspect)) return
    const p99 = this.p99()
    const threshold = Math.max(floor, factor * p99)
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
      if (stalled === h.suspect) continue
      h.stallVerdict(stalled, { waiting: head === undefined ? 0 : now - head.started, threshold, p99 })
      // Suspected (the cap allowed it): every request already waiting on it may be raced elsewhere at once.
      if (h.suspect && redispatch) h.waits.notifyStalled(now, -1)
    }
  }

  private p99(): number {
    const n = Math.min(this.samples, LATENCY_SAMPLES)
    if (n === 0) return 0
    const view = this.sorted.subarray(0, n)
    view.set(this.latencies.subarray(0, n))
    view.sort()
    return view[Math.min(n - 1, Math.floor(n * 0.99))] as number
  }

  close(): void {
    clearInterval(this.timer)
  }
}

function isSuspect(h: PeerHealth): boolean {
  return h.suspect
}
