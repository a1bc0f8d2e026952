// The primary's view of its workers' traffic per server (requests, failures, in flight, waiting, latency, the last
// real answer; HTTP/2 streams, GOAWAYs and gRPC statuses): each worker's last numbers, added up onto the primary's
// peers for the status page and its checks. The counters of a worker that exited are kept, so a total never goes
// back when a worker is replaced.
import { GRPC_CODES } from '../config/schema.js'
import type { Upstream } from '../upstream/upstream.js'
import type { Traffic } from './protocol.js'

const key = (upstream: string, address: string): string => `${upstream}\u0000${address}`

/** Requests, failures, pool timeouts, stuck, GOAWAYs and gRPC statuses: counters that outlive their worker. */
interface Counters {
  requests: number
  failures: number
  poolTimeouts: number
  stuck: number
  goaways: number
  grpc: number[]
}

/** Adds a worker's gRPC counts (none from an HTTP/1.1 server) to `into`. */
function addGrpc(into: Float64Array | number[], counts: readonly number[]): void {
  for (let i = 0; i < counts.length && i < GRPC_CODES.length; i++) into[i] = (into[i] as number) + (counts[i] as number)
}

export class ClusterTraffic {
  private readonly byWorker = new Map<number, Map<string, Traffic>>()
  private readonly retired = new Map<string, Counters>()
  /** When each live worker last reported (Date.now()). */
  private readonly reportedAt = new Map<number, number>()

  constructor(private readonly upstreams: () => ReadonlyMap<string, Upstream>) {}

  /** Worker `id`'s numbers now; the servers it lists get their new totals. */
  report(id: number, rows: readonly Traffic[]): void {
    let mine = this.byWorker.get(id)
    if (mine === undefined) this.byWorker.set(id, (mine = new Map()))
    this.reportedAt.set(id, Date.now())
    for (const r of rows) {
      mine.set(key(r[0], r[1]), r)
      const peer = this.upstreams().get(r[0])?.find(r[1])
      if (peer !== undefined) {
        // Each worker's estimate is one sample of the server's latency.
        if (r[9] >= 0) peer.recordLatency(r[9])
        // The checks run here: active.trafficInterval skips a server the workers' real requests answered lately.
        if (r[10] > peer.lastAnswered) peer.lastAnswered = r[10]
      }
      this.total(r[0], r[1])
    }
  }

  /** Worker `id` exited: its counters stay in the totals, its in-flight requests are gone. */
  left(id: number): void {
    const mine = this.byWorker.get(id)
    if (mine === undefined) return
    this.byWorker.delete(id)
    this.reportedAt.delete(id)
    for (const [k, r] of mine) {
      const c = this.retired.get(k) ?? { requests: 0, failures: 0, poolTimeouts: 0, stuck: 0, goaways: 0, grpc: new Array<number>(GRPC_CODES.length).fill(0) }
      c.requests += r[2]
      c.failures += r[3]
      c.poolTimeouts += r[7]
      c.stuck += r[8]
      c.goaways += r[12]
      addGrpc(c.grpc, r[13])
      this.retired.set(k, c)
    }
    for (const r of mine.values()) this.total(r[0], r[1])
  }

  /** Every live worker has reported at or after `t` (Date.now()), so the totals are no older than that. */
  allReportedSince(t: number): boolean {
    for (const at of this.reportedAt.values()) if (at < t) return false
    return true
  }

  /** Requests worker `id` has forwarded (its last report), for the status page. */
  requestsOf(id: number): number {
    let n = 0
    for (const r of this.byWorker.get(id)?.values() ?? []) n += r[2]
    return n
  }

  private total(upstream: string, address: string): void {
    const peer = this.upstreams().get(upstream)?.find(address)
    if (peer === undefined) return
    const k = key(upstream, address)
    const c = this.retired.get(k)
    let requests = c?.requests ?? 0
    let failures = c?.failures ?? 0
    let poolTimeouts = c?.poolTimeouts ?? 0
    let stuck = c?.stuck ?? 0
    let goaways = c?.goaways ?? 0
    let inflight = 0
    let waiting = 0
    let oldestWait = 0
    let streams = 0
    const grpc = peer.stats.grpcCodes
    grpc.fill(0)
    if (c !== undefined) addGrpc(grpc, c.grpc)
    for (const mine of this.byWorker.values()) {
      const r = mine.get(k)
      if (r === undefined) continue
      requests += r[2]
      failures += r[3]
      inflight += r[4]
      waiting += r[5]
      oldestWait = Math.max(oldestWait, r[6])
      poolTimeouts += r[7]
      stuck += r[8]
      streams += r[11]
      goaways += r[12]
      addGrpc(grpc, r[13])
    }
    peer.requests = requests
    peer.failures = failures
    peer.inflight = inflight
    peer.waiting = waiting
    peer.oldestWait = oldestWait
    peer.poolTimeouts = poolTimeouts
    peer.stuck = stuck
    peer.workerStreams = streams
    peer.goaways = goaways
  }
}
