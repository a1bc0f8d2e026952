// Prometheus metrics (GET /metrics). The hot path only bumps numbers in a per-peer record; prom-client
// turns them and the health state into series when scraped, so a request costs no label objects.
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics, type Metric, type MetricObjectWithValues, type MetricValue } from 'prom-client'
import type { Peer } from '../upstream/peer.js'
import type { Upstream } from '../upstream/upstream.js'
import type { ActiveChecker } from '../health/active.js'
import type { PassiveHealthLink } from '../health/events.js'
import type { AttemptObserver } from '../health/monitor.js'

import { BUCKETS, CLASSES, type ResponseStats } from '../upstream/response-stats.js'
import { grpcCodeName } from '../proxy/grpc.js'

export interface MetricsSource {
  upstreams(): ReadonlyMap<string, Upstream>
  checker: ActiveChecker
  passive(): PassiveHealthLink
}

/** A peer's response stats, or undefined before its first finished attempt (it has no series yet). */
function statsOf(p: Peer): ResponseStats | undefined {
  return p.stats.count === 0 ? undefined : p.stats
}

type Labels = Record<string, string>
interface Sample {
  metricName: string
  labels: Labels
  value: number
}

/**
 * Which series a registry has. One process has all. In a cluster (src/workers/) the workers count the traffic they
 * forward and the primary the health state it decides; its /metrics adds them up (prom-client's aggregation).
 */
export type MetricsScope = 'all' | 'traffic' | 'health'

/** Every series of one registry, as prom-client's cluster aggregation takes them. */
export type RegistryJson = MetricObjectWithValues<MetricValue<string>>[]

export class VigilMetrics implements AttemptObserver {
  readonly registry = new Registry()
  private readonly ejections: Counter<'upstream' | 'server' | 'reason'>
  /** A cluster's primary: its workers' series, added to its own on every scrape. */
  workers: (() => Promise<RegistryJson[]>) | undefined = undefined

  constructor(
    private readonly source: MetricsSource,
    scope: MetricsScope = 'all',
  ) {
    const traffic = scope !== 'health'
    const health = scope !== 'traffic'
    const registers = [this.registry]
    // The event-loop lag histogram samples at 10 Hz, not prom-client's default 100 Hz: each sample wakes an idle
    // proxy (about 140 µs of CPU on a 2-core VM, 9 ms a second at 100 Hz), and the lag it reports is as long
    // either way.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 })
    // Series are built at scrape time from live state (prom-client calls collect() before reading).
    const each = this.eachPeer.bind(this)
    // A gauge or a counter per peer, rebuilt from live numbers at each scrape (reset, then add the value).
    const perPeerOf =
      (Metric: typeof Gauge | typeof Counter, own: boolean) =>
      (name: string, help: string, value: (p: Peer, u: Upstream) => number, aggregator: 'sum' | 'max' = 'sum'): void => {
        if (!own) return
        new Metric({
          name,
          help,
          labelNames: ['upstream', 'server'],
          registers,
          aggregator,
          collect(this: Gauge | Counter) {
            this.reset()
            each((p, u) => this.inc({ upstream: u.name, server: p.address }, value(p, u)))
          },
        })
      }
    const state = perPeerOf(Gauge, health)
    state('vigil_server_up', '1 unless the server is down by active check', (p) => (p.checkUp ? 1 : 0))
    state('vigil_server_eligible', '1 when the server may receive new requests', (p) => (p.eligible ? 1 : 0))
    state('vigil_server_standby', "1 while the server is outside this vigil's subset rotation (no traffic from it, checked only while down)", (p) => (p.standby ? 1 : 0))
    const perPeer = perPeerOf(Gauge, traffic)
    perPeer('vigil_server_inflight', 'requests sent to the server and not finished', (p) => p.inflight)
    perPeer('vigil_server_streams', 'HTTP/2 streams open to the server (protocol h2c, h2)', (p) => p.streams)
    perPeer('vigil_server_waiting', "requests waiting for a connection of the server's pool (every connection busy)", (p) => p.waiting)
    perPeer('vigil_server_oldest_wait_seconds', 'how long the oldest request waiting for a pooled connection has waited', (p) => p.oldestWait / 1000, 'max')
    const perPeerTotal = perPeerOf(Counter, traffic)
    perPeerTotal('vigil_requests_total', 'requests forwarded to the server', (p) => p.requests)
    perPeerTotal('vigil_goaways_total', 'GOAWAY frames the server sent (it was drained until a new connection to it was up)', (p) => p.goaways)
    perPeerTotal('vigil_pool_timeouts_total', 'requests that waited past timeouts.queue for a pooled connection', (p) => p.poolTimeouts)
    perPeerTotal('vigil_stuck_attempts_total', 'internal errors: attempts vigil ended because they outlived every timeout or their client', (p) => p.stuck)
    if (traffic) this.trafficSeries(registers)
    this.ejections = new Counter({ name: 'vigil_ejections_total', help: 'passive ejections by reason', labelNames: ['upstream', 'server', 'reason'], registers: health ? registers : [] })
    if (health) this.healthSeries(registers)
  }

  /** What the data path counts: responses, latency, retries (a cluster's workers). */
  private trafficSeries(registers: Registry[]): void {
    const source = this.source
    const each = this.eachPeer.bind(this)
    new Counter({
      name: 'vigil_responses_total',
      help: 'responses by class as the client saw them ("none": the request ended before a status)',
      labelNames: ['upstream', 'server', 'class'],
      registers,
      collect() {
        this.reset()
        each((p, u) => {
          const s = statsOf(p)
          if (s !== undefined) CLASSES.forEach((c, i) => this.inc({ upstream: u.name, server: p.address, class: c }, s.responses[i] as number))
        })
      },
    })
    new Counter({
      name: 'vigil_grpc_responses_total',
      help: 'gRPC calls by the grpc-status they ended with (trailers, or a trailers-only response)',
      labelNames: ['upstream', 'server', 'code'],
      registers,
      collect() {
        this.reset()
        each((p, u) => {
          const codes = p.stats.grpcCodes
          for (let c = 0; c < codes.length; c++) if ((codes[c] as number) > 0) this.inc({ upstream: u.name, server: p.address, code: grpcCodeName(c) }, codes[c] as number)
        })
      },
    })
    const perUpstream = (name: string, help: string, value: (u: Upstream) => number): void => {
      new Counter({
        name,
        help,
        labelNames: ['upstream'],
        registers,
        collect() {
          this.reset()
          for (const u of source.upstreams().values()) this.inc({ upstream: u.name }, value(u))
        },
      })
    }
    perUpstream('vigil_retries_total', 'attempts retried on another server', (u) => u.retry.retries)
    perUpstream('vigil_hedges_total', 'hedged attempts started while an earlier one was still waiting', (u) => u.retry.hedges)
    perUpstream('vigil_stall_redispatches_total', 'requests raced on another server because theirs was suspected of a stall', (u) => u.retry.redispatches)
    perUpstream('vigil_retry_budget_exhausted_total', 'retries refused because the retry budget was spent', (u) => u.retry.budgetExhausted)
    // A histogram fed from PeerStats; prom-client's registry only needs get() from it.
    const latency = {
      name: 'vigil_upstream_response_seconds',
      help: 'time from sending a request to the server until the response ended',
      type: 'histogram',
      aggregator: 'sum',
      collect() {},
      get: async () => ({ ...latency, values: this.latencySamples() }),
    }
    this.registry.registerMetric(latency as unknown as Metric)
  }

  /** What health decides: checks, stall suspicions (a cluster's primary). */
  private healthSeries(registers: Registry[]): void {
    const source = this.source
    const each = this.eachPeer.bind(this)
    const checker = source.checker
    new Counter({
      name: 'vigil_checks_total',
      help: 'active checks by result; inconclusive: timed out while vigil itself lagged',
      labelNames: ['server', 'type', 'result'],
      registers,
      collect() {
        this.reset()
        for (const t of checker.all) {
          const labels = { server: t.address, type: t.spec.type }
          this.inc({ ...labels, result: 'success' }, t.checks - t.failures - t.inconclusive)
          this.inc({ ...labels, result: 'failure' }, t.failures)
          this.inc({ ...labels, result: 'inconclusive' }, t.inconclusive)
        }
      },
    })
    new Counter({
      name: 'vigil_check_skips_total',
      help: 'due checks left out: traffic (real requests answered within active.trafficInterval), standby (outside the subset rotation)',
      labelNames: ['server', 'type', 'reason'],
      registers,
      collect() {
        this.reset()
        for (const t of checker.all) {
          this.inc({ server: t.address, type: t.spec.type, reason: 'traffic' }, t.skipped.traffic)
          this.inc({ server: t.address, type: t.spec.type, reason: 'standby' }, t.skipped.standby)
          this.inc({ server: t.address, type: t.spec.type, reason: 'shared' }, t.skipped.shared)
        }
      },
    })
    new Gauge({
      name: 'vigil_subset_servers',
      help: "servers of a group with subset in this vigil's rotation: members of its subset, and replacements for members that are out",
      labelNames: ['upstream', 'role'],
      registers,
      collect() {
        this.reset()
        for (const u of source.upstreams().values()) {
          if (u.subset === undefined) continue
          this.set({ upstream: u.name, role: 'member' }, u.subset.members.size)
          this.set({ upstream: u.name, role: 'replacement' }, u.subset.replacements)
        }
      },
    })
    new Counter({
      name: 'vigil_stall_suspicions_total',
      help: 'times a server was suspected of a stall (a request waited far longer than the group takes)',
      labelNames: ['upstream', 'server'],
      registers,
      collect() {
        this.reset()
        each((p, u) => this.inc({ upstream: u.name, server: p.address }, source.passive().snapshot(p)?.stalls ?? 0))
      },
    })
  }

  /** Hot path, once per finished attempt: status 0 when the request ended before a response status. */
  finished(peer: Peer, status: number, ms: number): void {
    peer.stats.record(status, ms)
  }

  /** A passive ejection (once per 'ejected' health event), by its named reason. */
  ejected(upstream: string, server: string, reason: string): void {
    this.ejections.inc({ upstream, server, reason })
  }

  async text(): Promise<string> {
    if (this.workers === undefined) return this.registry.metrics()
    const all = [await this.registry.getMetricsAsJSON(), ...(await this.workers())]
    return AggregatorRegistry.aggregate(all as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }

  private eachPeer(fn: (peer: Peer, upstream: Upstream) => void): void {
    for (const u of this.source.upstreams().values()) for (const p of u.peers) fn(p, u)
  }

  private latencySamples(): Sample[] {
    const out: Sample[] = []
    this.eachPeer((p, u) => {
      const s = statsOf(p)
      if (s === undefined) return
      const labels = { upstream: u.name, server: p.address }
      let cumulative = 0
      BUCKETS.forEach((le, i) => {
        cumulative += s.buckets[i] as number
        out.push({ metricName: 'vigil_upstream_response_seconds_bucket', labels: { ...labels, le: String(le) }, value: cumulative })
      })
      out.push({ metricName: 'vigil_upstream_response_seconds_bucket', labels: { ...labels, le: '+Inf' }, value: s.count })
      out.push({ metricName: 'vigil_upstream_response_seconds_sum', labels, value: s.sum })
      out.push({ metricName: 'vigil_upstream_response_seconds_count', labels, value: s.count })
    })
    return out
  }
}
