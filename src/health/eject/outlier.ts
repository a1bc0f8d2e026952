// Outlier ejection relative to the group (Envoy's outlier detection, also gRPC's design A50): every `interval`,
// the servers that served at least `requestVolume` requests in it, when at least `minimumHosts` did, are judged
// against each other. Success rate: eject those below mean − stdevFactor × stdev (population stdev, never taken
// below `stdevFloor` points: when every server fails alike, tiny differences are not outliers). Failure
// percentage: eject those failing more than `threshold`%. Counting and judging cannot tell "20% of one server
// fails" from "20% of everything fails" the way counting per server can't: that is why this mode exists.
import type { Detector, Evidence } from './detector.js'

export interface OutlierSettings {
  interval: number
  requestVolume: number
  minimumHosts: number
  stdevFactor: number
  /** Percentage points the stdev is never taken below (0: Envoy's exact rule). */
  stdevFloor: number
  /** Failure percentage above which a server is ejected whatever the others do; 0 turns the algorithm off. */
  threshold: number
  successRate: boolean
}

export const OUTLIER_DEFAULTS: OutlierSettings = {
  interval: 10_000,
  requestVolume: 100,
  minimumHosts: 5,
  stdevFactor: 1.9,
  stdevFloor: 1,
  threshold: 85,
  successRate: true,
}

export const OUTLIER_REASONS = { successRate: 'success_rate', failurePercentage: 'failure_percentage' } as const

export interface OutlierSample {
  requests: number
  failures: number
}

export interface OutlierVerdict {
  /** Index into the samples judged. */
  index: number
  reason: (typeof OUTLIER_REASONS)[keyof typeof OUTLIER_REASONS]
  /** The server's success rate, %, and the limit it fell below (success rate) or the failure threshold. */
  successRate: number
  limit: number
}

/** The servers to eject for one interval's samples, worst first (so the ejection cap keeps the least bad in). */
export function outlierVerdicts(samples: readonly OutlierSample[], s: OutlierSettings): OutlierVerdict[] {
  const judged: number[] = []
  for (let i = 0; i < samples.length; i++) if ((samples[i] as OutlierSample).requests >= s.requestVolume) judged.push(i)
  if (judged.length < s.minimumHosts) return []
  const rate = (i: number): number => {
    const x = samples[i] as OutlierSample
    return (100 * (x.requests - x.failures)) / x.requests
  }
  const out: OutlierVerdict[] = []
  if (s.successRate) {
    let sum = 0
    for (const i of judged) sum += rate(i)
    const mean = sum / judged.length
    let squares = 0
    for (const i of judged) squares += (rate(i) - mean) ** 2
    const limit = mean - s.stdevFactor * Math.max(Math.sqrt(squares / judged.length), s.stdevFloor)
    for (const i of judged) if (rate(i) < limit) out.push({ index: i, reason: OUTLIER_REASONS.successRate, successRate: rate(i), limit })
  }
  if (s.threshold > 0) {
    for (const i of judged) {
      if (100 - rate(i) > s.threshold && !out.some((v) => v.index === i)) {
        out.push({ index: i, reason: OUTLIER_REASONS.failurePercentage, successRate: rate(i), limit: s.threshold })
      }
    }
  }
  return out.sort((a, b) => a.successRate - b.successRate)
}

/** Per server: this interval's requests and failures; the group's sweep takes them and judges. */
export class OutlierDetector implements Detector {
  private requests = 0
  private failures = 0
  /** The last interval taken, and the verdict it got, for the ejection's evidence. */
  private last: OutlierSample = { requests: 0, failures: 0 }
  verdict: OutlierVerdict | undefined = undefined

  constructor(private readonly interval: number) {}

  record(failed: boolean): boolean {
    this.requests++
    if (failed) this.failures++
    // Never "eject now": the sweep decides, once per interval, against the group.
    return false
  }

  /** The interval is over: its counts, and a fresh interval. */
  take(): OutlierSample {
    this.last = { requests: this.requests, failures: this.failures }
    this.requests = this.failures = 0
    return this.last
  }

  reset(): void {
    this.requests = this.failures = 0
  }

  evidence(): Evidence {
    const v = this.verdict
    return {
      failures: this.last.failures,
      requests: this.last.requests,
      span: this.interval,
      ...(v === undefined ? {} : { successRate: round(v.successRate), limit: round(v.limit) }),
    }
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100
}
