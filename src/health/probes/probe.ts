// What every kind of check implements. The checker owns the timeout: it aborts `signal`, and the probe
// then settles at once, releasing its socket.

export interface ProbeResult {
  ok: boolean
  /** 'ok', 'timeout', an error code from the one classification (health/outcome.ts), or what did not match. */
  reason: string
  detail?: string
}

export interface Probe {
  check(signal: AbortSignal): Promise<ProbeResult>
  close(): Promise<void>
}

export const PASSED: ProbeResult = { ok: true, reason: 'ok' }
export const TIMED_OUT: ProbeResult = { ok: false, reason: 'timeout' }
