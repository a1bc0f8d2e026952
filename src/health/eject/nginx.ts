// nginx's max_fails / fail_timeout (ngx_http_upstream_round_robin.c): not a window. Failures add up until a
// success that comes more than fail_timeout after the last failure; at max_fails the peer is out.
import type { Detector, Evidence } from './detector.js'

export class NginxDetector implements Detector {
  private fails = 0
  private firstFailure = 0
  private lastFailure = 0

  constructor(
    private readonly maxFails: number,
    private readonly failTimeout: number,
  ) {}

  record(failed: boolean, now: number): boolean {
    if (!failed) {
      // nginx clears `fails` only when the peer was picked after fail_timeout had passed since it was last checked.
      if (this.fails !== 0 && now - this.lastFailure > this.failTimeout) this.fails = 0
      return false
    }
    if (this.fails === 0) this.firstFailure = now
    this.fails++
    this.lastFailure = now
    return this.fails >= this.maxFails
  }

  reset(): void {
    this.fails = 0
  }

  evidence(): Evidence {
    return { failures: this.fails, requests: this.fails, span: this.lastFailure - this.firstFailure }
  }
}
