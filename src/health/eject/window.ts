// N failures within a true sliding window: the times of the last N failures in a ring; eject when the
// oldest of them is still inside the window. Successes do not erase failures, time does.
import type { Detector, Evidence } from './detector.js'

export class WindowDetector implements Detector {
  private readonly times: Float64Array
  private next = 0
  private count = 0

  constructor(
    private readonly limit: number,
    private readonly window: number,
  ) {
    this.times = new Float64Array(limit)
  }

  record(failed: boolean, now: number): boolean {
    if (!failed) return false
    this.times[this.next] = now
    this.next = (this.next + 1) % this.limit
    if (this.count < this.limit) this.count++
    // With the ring full, `next` points at the oldest of the last `limit` failures.
    return this.count === this.limit && now - (this.times[this.next] as number) <= this.window
  }

  reset(): void {
    this.count = 0
    this.next = 0
  }

  evidence(now: number): Evidence {
    let failures = 0
    let oldest = now
    for (let i = 0; i < this.count; i++) {
      const t = this.times[i] as number
      if (now - t > this.window) continue
      failures++
      if (t < oldest) oldest = t
    }
    return { failures, requests: failures, span: now - oldest }
  }
}
