// The in-flight watchdog: a few times a second it walks every peer's in-flight attempts (oldest first). A request
// still waiting for a pooled connection after timeouts.queue fails visibly (503 pool_timeout, or another peer),
// instead of waiting inside undici where no timeout applies. An attempt that outlived every timeout meant to end
// it, or whose client left without ending it, is a vigil bug: it is ended, counted and logged as an internal error,
// never left to hold the pool while the status page says all is well. It also keeps each peer's waiting figures.
// Servers a reload removed are swept too, while they finish their attempts. It sleeps while nothing is in flight
// (an idle proxy is not woken four times a second) and a client request wakes it.
import type { Logger } from 'pino'
import type { Upstream } from '../upstream/upstream.js'
import type { Peer } from '../upstream/peer.js'
import type { Attempt } from './forward.js'

/** Servers that left every generation but still have attempts in flight, with their group's name. */
export type Departed = () => Iterable<[upstream: string, peer: Peer]>

export const WATCHDOG_PERIOD = 250

export class Watchdog {
  private timer: NodeJS.Timeout | undefined = undefined
  private running = false

  constructor(
    private readonly upstreams: () => ReadonlyMap<string, Upstream>,
    private readonly departed: Departed,
    private readonly log: Logger,
    /** Client requests are open: one may still launch an attempt, so the watchdog stays awake. */
    private readonly busy: () => boolean,
  ) {}

  start(): void {
    this.running = true
    this.wake()
  }

  /** A client request arrived: sweep until a sweep finds no attempt in flight and no request open. */
  wake(): void {
    if (!this.running || this.timer !== undefined) return
    this.timer = setInterval(() => this.sweep(Date.now()), WATCHDOG_PERIOD)
    this.timer.unref()
  }

  /** Sweeping now (the status page's figures are current); asleep while nothing is in flight. */
  get awake(): boolean {
    return this.timer !== undefined
  }

  stop(): void {
    this.running = false
    this.sleep()
  }

  private sleep(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  sweep(now: number): void {
    let inFlight = false
    for (const u of this.upstreams().values()) for (const p of u.peers) inFlight = this.sweepPeer(u.name, p, now) || inFlight
    for (const [upstream, p] of this.departed()) inFlight = this.sweepPeer(upstream, p, now) || inFlight
    if (!inFlight && !this.busy()) this.sleep()
  }

  /** Whether the peer had attempts in flight. */
  private sweepPeer(upstream: string, peer: Peer, now: number): boolean {
    const inFlight = peer.attempts.head !== undefined
    let waiting = 0
    let oldestWait = 0
    let stuck = 0
    // Only requests queued in the pool itself wait for a connection; one already handed to a connecting client is
    // under the connect timeout, which says something about the provider.
    const poolFull = inFlight && peer.pool.stats.queued > 0
    for (let e = peer.attempts.head; e !== undefined; ) {
      const a = e as Attempt
      e = a.nextInPeer
      const age = now - a.started
      if (a.orphaned || (a.headersAt === 0 && age > a.timeouts.stuck)) {
        stuck++
        a.exchange.stuck(a, now)
        continue
      }
      // The client's 'close' runs on a later tick than its socket's end: only a second sweep proves it was missed.
      if (a.exchange.req.socket.destroyed) a.orphaned = true
      if (a.connected) continue
      if (poolFull && age > a.timeouts.queue) a.exchange.poolTimeout(a, now)
      else {
        waiting++
        oldestWait = Math.max(oldestWait, age)
      }
    }
    peer.waiting = waiting
    peer.oldestWait = oldestWait
    if (stuck === 0) return inFlight
    peer.stuck += stuck
    this.log.error({ upstream, peer: peer.address, stuck, inflight: peer.inflight }, 'internal error: attempts outlived their timeouts or their client; ended')
    return inFlight
  }
}
