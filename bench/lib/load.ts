// Load from autocannon, used programmatically, with the figures the bench and the drills report.
import autocannon from 'autocannon'

export interface LoadOptions {
  url: string
  connections: number
  /** Seconds. */
  duration: number
  /** Total requests per second across connections; unset means as fast as possible. */
  rate?: number
  /** Seconds before autocannon gives up on a response (counted as an error). */
  timeout?: number
  /** Every response, with autocannon's measured latency in ms. Leave unset for throughput runs. */
  onResponse?: (status: number, latency: number) => void
  /** Every socket error or timeout. */
  onError?: (err: Error) => void
  /**
   * With a rate, autocannon lets every connection send its share for the second at the start of each second,
   * so the load comes in one burst per second. `spread` runs that many instances, started 1/spread s apart,
   * each with 1/spread of the rate and the connections, which makes the load even at that resolution.
   */
  spread?: number
}

export interface LoadSummary {
  requests: number
  /** Mean requests per second over the run. */
  rps: number
  p50: number
  p99: number
  non2xx: number
  errors: number
  timeouts: number
}

export async function runLoad(options: LoadOptions): Promise<LoadSummary> {
  const spread = options.rate === undefined ? 1 : Math.max(1, Math.min(options.spread ?? 1, options.connections))
  if (spread === 1) return runOne(options)
  const parts: Promise<LoadSummary>[] = []
  const connections = Math.floor(options.connections / spread)
  for (let i = 0; i < spread; i++) {
    const part = { ...options, connections, rate: (options.rate as number) / spread }
    parts.push(new Promise((resolve) => setTimeout(resolve, (i * 1_000) / spread)).then(() => runOne(part)))
  }
  const all = await Promise.all(parts)
  const sum = (f: (s: LoadSummary) => number) => all.reduce((n, s) => n + f(s), 0)
  return {
    requests: sum((s) => s.requests),
    rps: sum((s) => s.rps),
    // Upper bounds: the figures of the worst part (the drills compute exact ones from every response).
    p50: Math.max(...all.map((s) => s.p50)),
    p99: Math.max(...all.map((s) => s.p99)),
    non2xx: sum((s) => s.non2xx),
    errors: sum((s) => s.errors),
    timeouts: sum((s) => s.timeouts),
  }
}

async function runOne(options: LoadOptions): Promise<LoadSummary> {
  const instance = autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.duration,
    overallRate: options.rate,
    timeout: options.timeout ?? 10,
  })
  // The instance emits (client, status, bytes, latency); @types/autocannon leaves the client out.
  const events = instance as unknown as NodeJS.EventEmitter
  const onResponse = options.onResponse
  if (onResponse !== undefined) events.on('response', (_client: unknown, status: number, _bytes: number, latency: number) => onResponse(status, latency))
  if (options.onError !== undefined) events.on('reqError', options.onError)
  const result = await instance
  return {
    requests: result.requests.total,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  }
}
