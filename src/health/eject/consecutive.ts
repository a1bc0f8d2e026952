// Envoy's consecutive_5xx: N failures in a row eject; any success starts the count again.
import type { Detector, Evidence } from './detector.js'

export class ConsecutiveDetector implements Detector {
  private run = 0
  private runStart = 0

  constructor(private readonly limit: number) {}

  record(failed: boolean, now: number): boolean {
    if (!failed) {
      this.run = 0
      return false
    }
    if (this.run === 0) this.runStart = now
    return ++this.run >= this.limit
  }

  reset(): void {
    this.run = 0
  }

  evidence(now: number): Evidence {
    return { failures: this.run, requests: this.run, span: now - this.runStart }
  }
}
