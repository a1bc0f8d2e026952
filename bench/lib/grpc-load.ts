// gRPC load for the drills: unary calls from @grpc/grpc-js clients at a fixed rate (open loop: a call that hangs
// does not hold the next one back), reported like bench/lib/load.ts's autocannon load so the drill's recorders
// read both. A call that ends OK is a 200; one that fails with a gRPC status (UNAVAILABLE from a proxy that
// could not reach a provider, a provider's own error) is a non-2xx answer (503 for UNAVAILABLE, else 500); one
// that outlives `timeout` (DEADLINE_EXCEEDED) is a timeout, as autocannon reports it.
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js'
import { SAY_PATH, sayRequest } from './grpc-provider.js'
import type { LoadOptions, LoadSummary } from './load.js'
import { quantile } from './results.js'

/** autocannon's options (bench/lib/load.ts) less the URL and `spread` (calls go out evenly every few ms). */
export type GrpcLoadOptions = Omit<LoadOptions, 'url' | 'spread' | 'rate' | 'timeout'> & {
  /** host:port of the proxy (or provider); each of `connections` is a client channel with its own HTTP/2 connection. */
  target: string
  rate: number
  /** Seconds: each call's deadline. */
  timeout: number
}

const raw = (b: Buffer): Buffer => b
/** How often the scheduler sends the calls that are due. */
const TICK = 5

export async function runGrpcLoad(options: GrpcLoadOptions): Promise<LoadSummary & { codes: Record<string, number> }> {
  // A local subchannel pool per client: otherwise grpc-js shares one connection among clients with equal options.
  const request = sayRequest()
  const clients = Array.from({ length: options.connections }, () => new Client(options.target, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }))
  const latencies: number[] = []
  const codes: Record<string, number> = {}
  let sent = 0
  let non2xx = 0
  let errors = 0
  let timeouts = 0
  const call = (client: Client): Promise<void> =>
    new Promise((resolve) => {
      const start = performance.now()
      client.makeUnaryRequest(SAY_PATH, raw, raw, request, new Metadata(), { deadline: Date.now() + options.timeout * 1_000 }, (err: ServiceError | null) => {
        const latency = performance.now() - start
        const code = err === null ? 'OK' : (status[err.code] ?? String(err.code))
        codes[code] = (codes[code] ?? 0) + 1
        if (err === null) {
          latencies.push(latency)
          options.onResponse?.(200, latency)
        } else if (err.code === status.DEADLINE_EXCEEDED) {
          errors++
          timeouts++
          options.onError?.(new Error('request timed out'))
        } else {
          non2xx++
          latencies.push(latency)
          options.onResponse?.(err.code === status.UNAVAILABLE ? 503 : 500, latency)
        }
        resolve()
      })
    })
  const pending: Promise<void>[] = []
  const begin = performance.now()
  const end = begin + options.duration * 1_000
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = Math.min(performance.now(), end)
      const due = Math.floor(((now - begin) / 1_000) * options.rate)
      while (sent < due) pending.push(call(clients[sent++ % clients.length] as Client))
      if (now >= end) {
        clearInterval(timer)
        resolve()
      }
    }, TICK)
  })
  await Promise.all(pending)
  for (const c of clients) c.close()
  return {
    requests: sent,
    rps: sent / options.duration,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    non2xx,
    errors,
    timeouts,
    codes,
  }
}
