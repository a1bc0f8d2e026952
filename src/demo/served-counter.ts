// Per-interval counts of the requests a provider served, for the drills: a provider that is SIGKILLed loses
// at most its current interval, because every finished interval has already been written out.

export interface ServedBucket {
  /** Start of the interval, epoch milliseconds (a multiple of the interval length). */
  t: number
  /** Requests that arrived in the interval. */
  n: number
}

export class ServedCounter {
  private start: number
  private count = 0

  constructor(
    readonly interval: number,
    now: number,
    private readonly emit: (bucket: ServedBucket) => void,
  ) {
    this.start = now - (now % interval)
  }

  record(now: number): void {
    this.roll(now)
    this.count++
  }

  /** Close the current interval if `now` is past it; empty intervals are not written (zeros are implied). */
  roll(now: number): void {
    const start = now - (now % this.interval)
    if (start === this.start) return
    if (this.count > 0) this.emit({ t: this.start, n: this.count })
    this.start = start
    this.count = 0
  }

  /** Write the current interval even though it is not over (on a graceful exit). */
  flush(): void {
    if (this.count > 0) this.emit({ t: this.start, n: this.count })
    this.count = 0
  }
}
