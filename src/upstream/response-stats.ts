// Per-peer response counts and the response-time histogram behind /metrics: plain numbers on the peer, bumped
// once per finished attempt, so the hot path does no lookup and builds no label objects (admin/metrics.ts turns
// them into series when scraped).

/** Upper bounds in seconds (prom-client's defaults). */
export const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const
/** Response classes by index: a request that ended before any status (client gone), then 1xx..5xx. */
export const CLASSES = ['none', '1xx', '2xx', '3xx', '4xx', '5xx'] as const

export class ResponseStats {
  readonly responses = new Float64Array(CLASSES.length)
  /** Non-cumulative counts per bucket; the last slot is +Inf. */
  readonly buckets = new Float64Array(BUCKETS.length + 1)
  sum = 0
  count = 0
  /** gRPC calls by the status they ended with (0 OK .. 16 UNAUTHENTICATED). */
  readonly grpcCodes = new Float64Array(17)

  grpc(code: number): void {
    if (code >= 0 && code <= 16) (this.grpcCodes[code] as number)++
  }

  /** `status` 0 when the request ended before a response status; `ms` the attempt's duration. */
  record(status: number, ms: number): void {
    ;(this.responses[status < 100 || status > 599 ? 0 : (status / 100) | 0] as number)++
    const seconds = ms / 1000
    let i = 0
    while (i < BUCKETS.length && seconds > (BUCKETS[i] as number)) i++
    ;(this.buckets[i] as number)++
    this.sum += seconds
    this.count++
  }
}
