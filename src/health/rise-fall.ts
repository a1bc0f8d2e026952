// Tengine's rise/fall hysteresis (ngx_http_upstream_check_status_update), kept exactly:
// a success increments rise_count and zeroes fall_count, a down server comes up once rise_count >= rise;
// a failure does the reverse, an up server goes down once fall_count >= fall.

export type Verdict = 'up' | 'down'

export class RiseFall {
  riseCount = 0
  fallCount = 0
  /** True once a check has concluded (before that, the state is the configured default). */
  checked = false
  down: boolean

  constructor(
    readonly rise: number,
    readonly fall: number,
    defaultDown: boolean,
  ) {
    this.down = defaultDown
  }

  /** Count one conclusive check; returns the new state when this check flipped it, else undefined. */
  record(success: boolean): Verdict | undefined {
    this.checked = true
    if (success) {
      this.riseCount++
      this.fallCount = 0
      if (this.down && this.riseCount >= this.rise) {
        this.down = false
        return 'up'
      }
    } else {
      this.riseCount = 0
      this.fallCount++
      if (!this.down && this.fallCount >= this.fall) {
        this.down = true
        return 'down'
      }
    }
    return undefined
  }

  /** Some evidence is counted against the current state but has not flipped it yet (HAProxy's transitional state). */
  get changing(): boolean {
    return !this.checked || (this.down ? this.riseCount > 0 : this.fallCount > 0)
  }
}
