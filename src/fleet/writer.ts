// This vigil's writes to the registry, without a storm: a token bucket (`writeRate` writes per second, a burst of
// the same size), a random wait of up to `writeJitter` before a burst, and coalescing: only the newest state of
// a record waits to be written, so a mass failure costs at most `writeRate` writes per second per vigil, however
// many servers fail and however often they flap. A write may also carry the question whether it is still worth
// making (`needed`, asked when its turn comes, after the jitter): across the fleet, N vigils each writing once is
// the storm the per-vigil rate cannot stop, and by the time a write's turn comes others may have said it all.
import type { Logger } from 'pino'
import type { RawRecord } from '../discovery/formats.js'
import type { Subscription } from '../discovery/subscription.js'

export interface WriterSettings {
  /** Writes per second, and the burst. */
  rate: number
  /** The longest random wait before a burst, ms. */
  jitter: number
}

export interface WriterStatus {
  pending: number
  written: number
  failed: number
  /** States replaced by a newer one before they were written. */
  superseded: number
  /** Writes skipped when their turn came: not worth making (`needed` said so: enough has been said). */
  suppressed: number
}

/** What waits to be written: a record's data, or undefined to delete it. */
type Pending = { subscription: Subscription<RawRecord>; name: string; value: string | undefined; needed: (() => boolean) | undefined }

export class RecordWriter {
  private readonly pending = new Map<string, Pending>()
  private tokens: number
  private refilled = Date.now()
  private timer: NodeJS.Timeout | undefined
  private closed = false
  written = 0
  failed = 0
  superseded = 0
  suppressed = 0

  constructor(
    private readonly settings: WriterSettings,
    private readonly log: Logger,
    private readonly random: () => number = Math.random,
  ) {
    this.tokens = settings.rate
  }

  /**
   * Write `value` under `name` (undefined: delete it) when the rate allows; a newer call for the name replaces this
   * one. `needed`, when given, is asked when its turn comes: false skips the write (counted as suppressed, no token
   * spent).
   */
  put(subscription: Subscription<RawRecord>, name: string, value: string | undefined, needed?: () => boolean): void {
    if (this.closed) return
    const key = `${subscription.path}\u0000${name}`
    if (this.pending.delete(key)) this.superseded++
    this.pending.set(key, { subscription, name, value, needed })
    if (this.timer === undefined) this.arm(this.random() * this.settings.jitter)
  }

  status(): WriterStatus {
    return { pending: this.pending.size, written: this.written, failed: this.failed, superseded: this.superseded, suppressed: this.suppressed }
  }

  close(): void {
    this.closed = true
    clearTimeout(this.timer)
    this.pending.clear()
  }

  private arm(delay: number): void {
    this.timer = setTimeout(() => this.drain(), delay)
    this.timer.unref()
  }

  private drain(): void {
    this.timer = undefined
    const now = Date.now()
    const rate = this.settings.rate
    this.tokens = Math.min(rate, this.tokens + ((now - this.refilled) / 1000) * rate)
    this.refilled = now
    // Oldest first: a Map iterates in insertion order, and a superseded record moved to the end.
    for (const [key, p] of this.pending) {
      if (this.tokens < 1) break
      this.pending.delete(key)
      if (p.needed?.() === false) {
        this.suppressed++
        continue
      }
      this.tokens--
      const write = p.value === undefined ? p.subscription.withdraw(p.name) : p.subscription.publish(p.name, p.value)
      write.then(
        () => this.written++,
        (err: Error) => {
          this.failed++
          // The subscription keeps a published record and writes it again on its next read.
          this.log.debug({ source: p.subscription.source, record: p.name, err: err.message }, 'fleet record not written')
        },
      )
    }
    if (this.pending.size > 0) this.arm(Math.ceil(((1 - this.tokens) / rate) * 1000))
  }
}
