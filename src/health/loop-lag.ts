// The false-positive guard: how long vigil's own event loop stalled during a check's window.
// perf_hooks.monitorEventLoopDelay keeps a histogram that cannot answer "was there a stall since time T",
// so a light ticker records each stall with the time it ended (the histogram still feeds the process
// metrics through prom-client's default collectors). The ticker runs only while a check waits: a stall is asked
// about only for a check's window, and an idle proxy is not woken 40 times a second for nothing.
import { performance } from 'node:perf_hooks'

const TICK = 25
/** Stalls shorter than this are scheduling noise and are not recorded. */
const NOTABLE = 20
const KEEP = 64

export class LoopLag {
  private timer: NodeJS.Timeout | undefined
  private expected = 0
  /** Ring of recent stalls: when each ended (performance.now()) and how long it lasted. */
  private readonly ends = new Float64Array(KEEP)
  private readonly lengths = new Float64Array(KEEP)
  private next = 0
  /** Checks waiting now. */
  private holders = 0

  /** A check starts waiting: the ticker runs until the last waiting check is released. */
  hold(): void {
    if (this.holders++ > 0) return
    this.expected = performance.now() + TICK
    this.timer = setInterval(() => this.tick(), TICK)
    this.timer.unref()
  }

  get ticking(): boolean {
    return this.timer !== undefined
  }

  release(): void {
    if (--this.holders > 0) return
    this.holders = 0
    clearInterval(this.timer)
    this.timer = undefined
  }

  private tick(): void {
    const now = performance.now()
    const late = now - this.expected
    this.expected = now + TICK
    if (late >= NOTABLE) this.note(now, late)
  }

  /** Record a stall seen elsewhere, e.g. by a timer that fired late. */
  note(end: number, length: number): void {
    this.ends[this.next] = end
    this.lengths[this.next] = length
    this.next = (this.next + 1) % KEEP
  }

  /** The longest stall that ended after `since` (performance.now() time). */
  longestSince(since: number): number {
    let longest = 0
    for (let i = 0; i < KEEP; i++) {
      if ((this.ends[i] as number) > since && (this.lengths[i] as number) > longest) longest = this.lengths[i] as number
    }
    return longest
  }
}
