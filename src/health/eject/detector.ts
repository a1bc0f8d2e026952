// What every ejection mode shares: it is fed the outcome of each request a provider served and says when to eject.

/** The failures that led to an ejection, for the log line and the status page. */
export interface Evidence {
  /** Failures counted by the mode at the moment it decided. */
  failures: number
  /** Requests the decision looked at (rate mode), or failures for the counting modes. */
  requests: number
  /** The span the evidence covers, ms (the window, or since the first counted failure). */
  span: number
  /** Outlier mode: the server's success rate and the limit it fell below (or the failure threshold it passed), %. */
  successRate?: number
  limit?: number
}

/**
 * A per-peer failure accountant. `record` is on the hot path (once per finished request): it must not
 * allocate. Counting modes answer synchronously; the rate mode calls its host back (see RateDetector).
 */
export interface Detector {
  /** Feed one outcome; true when the peer should be ejected now. */
  record(failed: boolean, now: number): boolean
  /** Forget everything (after a restore). */
  reset(): void
  evidence(now: number): Evidence
}
