// Peak-EWMA latency estimate of one peer (Finagle's PeakEwma, tower's load::PeakEwma): a slower response takes the
// estimate up at once (the peak), faster ones pull it down exponentially, and while no response arrives it decays
// toward zero, so a peer that was slow is tried again after a while instead of being shunned for ever.

/** Finagle and Linkerd decay over about ten seconds. */
export const DEFAULT_DECAY = 10_000
/** The estimate of a peer that has not answered yet, so a new peer is neither flooded nor starved. */
export const DEFAULT_RTT = 10

export class PeakEwma {
  private cost = DEFAULT_RTT
  /** Time of the last sample (performance.now() ms); -1 until the first. */
  private stamp = -1

  /** Writable: a reload that changes the group's `ewmaDecay` retunes every server's estimate, keeping its value. */
  constructor(public decay: number = DEFAULT_DECAY) {}

  /** Record one latency sample (ms) taken at `now`. */
  observe(rtt: number, now: number): void {
    if (this.stamp < 0) {
      this.cost = rtt
    } else {
      const w = Math.exp(-Math.max(0, now - this.stamp) / this.decay)
      this.cost = rtt > this.cost * w ? rtt : this.cost * w + rtt * (1 - w)
    }
    this.stamp = now
  }

  /** False until the first sample: the estimate is only the default so far. */
  get measured(): boolean {
    return this.stamp >= 0
  }

  /** The estimate at `now` (ms): the last value decayed by the time since. */
  estimate(now: number): number {
    return this.stamp < 0 ? this.cost : this.cost * Math.exp(-Math.max(0, now - this.stamp) / this.decay)
  }
}
