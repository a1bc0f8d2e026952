// Slow start (HAProxy `slowstart`, Envoy slow_start_config): a peer that becomes eligible again gets 10% of its
// weight at first and ramps linearly to all of it over the window, so a cold provider is not hit by its full share.
import type { Peer } from '../upstream/peer.js'

/** Envoy's min_weight_percent default. */
export const MIN_WEIGHT_SHARE = 0.1
/** Ramp steps per window: effective weights are recomputed on a timer, never per request. */
const STEPS = 20

export class SlowStart {
  /** Peers still ramping, with the time their ramp began. */
  private readonly ramping = new Map<Peer, number>()
  private timer: NodeJS.Timeout | undefined
  /** Called after the timer changed effective weights, so balancer tables follow (set by the Upstream). */
  onWeights: (() => void) | undefined = undefined

  constructor(
    readonly window: number,
    readonly clock: () => number = Date.now,
  ) {}

  /** Start (or restart) the ramp of a peer that just became eligible. No-op when slow start is off. */
  begin(peer: Peer): void {
    if (this.window <= 0) return
    this.resume(peer, this.clock())
    peer.effectiveWeight = peer.weight * MIN_WEIGHT_SHARE
  }

  /** Recompute the effective weight of every ramping peer at `now`; the timer stops once all are at full weight. */
  update(now: number): void {
    for (const [peer, since] of this.ramping) {
      const share = (now - since) / this.window
      if (share >= 1) {
        peer.effectiveWeight = peer.weight
        this.ramping.delete(peer)
      } else {
        peer.effectiveWeight = peer.weight * Math.max(MIN_WEIGHT_SHARE, share)
      }
    }
    if (this.ramping.size === 0) this.stop()
    this.onWeights?.()
  }

  /**
   * A reload replaced the window: the ramps running now continue under `next` from the time they began (a
   * shorter window finishes them sooner, no window ends them at once), so no peer is left at a partial weight.
   */
  handOver(next: SlowStart): void {
    this.stop()
    const now = next.clock()
    for (const [peer, since] of this.ramping) {
      if (next.window <= 0) peer.effectiveWeight = peer.weight
      else next.resume(peer, since)
    }
    this.ramping.clear()
    if (next.ramping.size > 0) next.update(now)
  }

  private resume(peer: Peer, since: number): void {
    this.ramping.set(peer, since)
    this.timer ??= setInterval(() => this.update(this.clock()), Math.max(10, this.window / STEPS)).unref()
  }

  /** Is `peer` still ramping up? (Whoever else lowers its weight leaves it to the ramp then.) */
  ramps(peer: Peer): boolean {
    return this.ramping.has(peer)
  }

  get active(): number {
    return this.ramping.size
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }
}
