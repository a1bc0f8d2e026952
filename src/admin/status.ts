// GET /status: every server's state, in Tengine's check_status formats (html, json, csv, prometheus) plus
// vigil's own fields. `status` is "up" when the server may receive new requests.
import type { Upstream } from '../upstream/upstream.js'
import type { Peer } from '../upstream/peer.js'
import type { ActiveChecker, LastCheck } from '../health/active.js'
import type { PassiveHealthLink } from '../health/events.js'
import type { LastReload } from '../update/reloader.js'
import type { SourceStatus } from '../discovery/registries.js'
import type { PeerPassiveSnapshot } from '../health/ejection.js'
import type { WorkersStatus } from '../workers/primary.js'
import type { FleetStatus } from '../fleet/fleet.js'
import type { SubsetRole } from '../upstream/subset-rotation.js'

export interface StatusSource {
  upstreams(): ReadonlyMap<string, Upstream>
  generation(): number
  checker: ActiveChecker
  passive(): PassiveHealthLink
  /** With `fleet`: registration and shared observations (src/fleet/). */
  fleet?: (() => FleetStatus) | undefined
}

export interface ServerStatus {
  // Tengine's fields, in its order. rise and fall are the current consecutive counts, as in Tengine.
  index: number
  upstream: string
  name: string
  status: 'up' | 'down'
  rise: number
  fall: number
  type: string
  port: number
  // vigil's fields.
  weight: number
  /** The weight balancers use now: less than `weight` while slow start ramps the server up. */
  effectiveWeight: number
  /** null when unlimited. */
  maxConns: number | null
  backup: boolean
  operator: Peer['operator']
  eligible: boolean
  /** Active check state: "unknown" until the first check concludes, "none" without a check. */
  check: 'up' | 'down' | 'unknown' | 'none'
  /** Passive state: "trial" while the single trial request is due or running; "suspect" while a stall is suspected. */
  passive: PassiveStatus
  /** The named reason of the current ejection (as in vigil_ejections_total) and the failure that caused it. */
  ejectionReason: string | null
  ejectionFailure: string | null
  ejectedUntil: string | null
  /** Passive ejections and stall suspicions so far. */
  ejections: number
  stalls: number
  inflight: number
  /** How vigil speaks to it (upstream `protocol`): http1, h2c, h2. */
  protocol: string
  /** HTTP/2 streams open to it now (every request in flight to an HTTP/2 server is one), and GOAWAYs it sent. */
  streams: number
  goaways: number
  /** gRPC calls it ended, by class: ok (OK), error (any other status); counts by name in /metrics. */
  grpc: { ok: number; error: number }
  /** Requests waiting for a connection of the server's pool (every connection busy), and the oldest wait in ms. */
  waiting: number
  oldestWaitMs: number
  /** Requests that waited past timeouts.queue for a connection (503 pool_timeout or retried elsewhere). */
  poolTimeouts: number
  /** Attempts vigil ended because they outlived every timeout or their client: an internal error, also logged. */
  stuck: number
  /** Learned time to response headers (peak EWMA), null until the server has answered. */
  latencyMs: number | null
  requests: number
  failures: number
  checks: number
  checkFailures: number
  inconclusive: number
  /** The last concluded check, `at` as an ISO time. */
  lastCheck: (Omit<LastCheck, 'at'> & { at: string }) | null
  lastChange: string | null
  /** Checks of it this vigil started per second, over about the last minute (0 without a check). */
  probeRate: number
  /** Due checks left out: "traffic" (real requests answered within active.trafficInterval), "standby" (outside the subset rotation). */
  checksSkipped: { traffic: number; standby: number; shared: number }
  /**
   * With `subset`: "member" of this vigil's subset, "replacement" for members that are out, or "standby" (no
   * traffic from this vigil); null without a subset, and for backups and servers down in the config.
   */
  subset: SubsetRole | null
  /** With `fleet`: other vigils reporting the server failing within the window, and what this vigil did about it. */
  fleetObservers?: number
  fleetDecision?: string
}

/** A group's subset as this vigil computed it: the consumer's place, and how many servers are in rotation. */
export interface SubsetStatus {
  upstream: string
  size: number
  /** This vigil's consumer id (its fleet registration id, or `id` set by hand), its place among the consumers, and their number. */
  consumer: string
  index: number
  count: number
  members: number
  replacements: number
  /** Members that must stay in rotation (the subset less what the ejection cap lets out): replacements fill up to it. */
  floor: number
}

export function subsetRows(upstreams: ReadonlyMap<string, Upstream>): SubsetStatus[] {
  const out: SubsetStatus[] = []
  for (const u of upstreams.values()) {
    const s = u.subset
    if (s === undefined) continue
    out.push({ upstream: u.name, size: s.size, consumer: s.consumer.id, index: s.index, count: s.count, members: s.members.size, replacements: s.replacements, floor: s.floor })
  }
  return out
}

/** A group's stall yardstick: its recent p99 and the wait that makes a server suspect (in a cluster, the proxy's). */
export interface StallStatus {
  upstream: string
  p99Ms: number
  thresholdMs: number
  samples: number
}

export function stallRows(upstreams: ReadonlyMap<string, Upstream>): StallStatus[] {
  const out: StallStatus[] = []
  for (const u of upstreams.values()) {
    const y = u.passive.stall?.yardstick()
    if (y !== undefined) out.push({ upstream: u.name, p99Ms: y.p99, thresholdMs: y.threshold, samples: y.samples })
  }
  return out
}

export type PassiveStatus = 'ok' | 'ejected' | 'trial' | 'suspect'

function passiveStatus(s: PeerPassiveSnapshot | undefined): PassiveStatus {
  if (s === undefined || s.state === 'ok') return s?.suspect === true ? 'suspect' : 'ok'
  return s.state === 'ejected' ? 'ejected' : 'trial'
}

export const FORMATS = ['json', 'html', 'csv', 'prometheus'] as const
export type Format = (typeof FORMATS)[number]

const iso = (t: number | undefined): string | null => (t === undefined ? null : new Date(t).toISOString())

export function statusRows(source: StatusSource): ServerStatus[] {
  const rows: ServerStatus[] = []
  const passive = source.passive()
  const fleet = source.fleet?.().upstreams
  for (const u of source.upstreams().values()) {
    const shared = new Map((fleet?.[u.name] ?? []).map((f) => [f.server, f]))
    for (const p of u.peers) {
      const t = source.checker.stateOf(p)
      const s = passive.snapshot(p)
      rows.push({
        index: rows.length,
        upstream: u.name,
        name: p.address,
        status: p.eligible ? 'up' : 'down',
        rise: t?.state.riseCount ?? 0,
        fall: t?.state.fallCount ?? 0,
        type: t?.spec.type ?? 'none',
        port: t?.spec.port ?? 0,
        weight: p.weight,
        effectiveWeight: p.effectiveWeight,
        maxConns: p.maxConns === Infinity ? null : p.maxConns,
        backup: p.backup,
        operator: p.operator,
        eligible: p.eligible,
        check: t === undefined ? 'none' : !t.state.checked && !t.state.down ? 'unknown' : t.state.down ? 'down' : 'up',
        passive: passiveStatus(s),
        ejectionReason: s?.ejectionReason ?? null,
        ejectionFailure: s?.ejectionFailure ?? null,
        ejectedUntil: iso(s?.ejectedUntil),
        ejections: s?.ejections ?? 0,
        stalls: s?.stalls ?? 0,
        inflight: p.inflight,
        protocol: p.protocol,
        streams: p.streams,
        goaways: p.goaways,
        grpc: grpcClasses(p.stats.grpcCodes),
        waiting: p.waiting,
        oldestWaitMs: p.oldestWait,
        poolTimeouts: p.poolTimeouts,
        stuck: p.stuck,
        latencyMs: p.rtt.measured ? Math.round(p.latency * 10) / 10 : null,
        requests: p.requests,
        failures: p.failures,
        checks: t?.checks ?? 0,
        checkFailures: t?.failures ?? 0,
        inconclusive: t?.inconclusive ?? 0,
        lastCheck: t?.last === undefined ? null : { ...t.last, at: new Date(t.last.at).toISOString() },
        lastChange: iso(t?.lastChange),
        probeRate: t === undefined ? 0 : Math.round(t.rate.perSecond() * 1000) / 1000,
        checksSkipped: { ...(t?.skipped ?? { traffic: 0, standby: 0, shared: 0 }) },
        subset: u.subset?.role(p) ?? null,
        ...(fleet === undefined ? {} : { fleetObservers: shared.get(p.address)?.reporting ?? 0, fleetDecision: shared.get(p.address)?.decision ?? 'none' }),
      })
    }
  }
  return rows
}

/** Tengine's shape; `reload` (the last reload's result, beside `servers`) once there was one. */
export function renderJson(
  rows: readonly ServerStatus[],
  generation: number,
  reload?: LastReload,
  discovery: readonly SourceStatus[] = [],
  subsets: readonly SubsetStatus[] = [],
  fleet?: FleetStatus,
  workers?: WorkersStatus,
  stall: readonly StallStatus[] = [],
): string {
  // `discovery` (one entry per registry source), `subsets` and `stall` only when there are any, `fleet` only with
  // one, `workers` only in a cluster, so the Tengine shape stays as it was.
  const extra = {
    discovery: discovery.length === 0 ? undefined : discovery,
    subsets: subsets.length === 0 ? undefined : subsets,
    stall: stall.length === 0 ? undefined : stall,
    fleet,
    workers,
  }
  return `${JSON.stringify({ servers: { total: rows.length, generation, server: rows }, reload, ...extra })}\n`
}

/** Flat columns for csv: Tengine's first, then vigil's. (The html page is status-page.ts.) */
const COLUMNS: readonly [string, (r: ServerStatus) => unknown][] = [
  ['index', (r) => r.index],
  ['upstream', (r) => r.upstream],
  ['name', (r) => r.name],
  ['status', (r) => r.status],
  ['rise', (r) => r.rise],
  ['fall', (r) => r.fall],
  ['type', (r) => r.type],
  ['port', (r) => r.port],
  ['weight', (r) => r.weight],
  ['effective_weight', (r) => r.effectiveWeight],
  ['max_conns', (r) => r.maxConns ?? ''],
  ['backup', (r) => r.backup],
  ['operator', (r) => r.operator],
  ['check', (r) => r.check],
  ['passive', (r) => r.passive],
  ['ejection_reason', (r) => r.ejectionReason ?? ''],
  ['ejection_failure', (r) => r.ejectionFailure ?? ''],
  ['ejected_until', (r) => r.ejectedUntil ?? ''],
  ['ejections', (r) => r.ejections],
  ['stalls', (r) => r.stalls],
  ['inflight', (r) => r.inflight],
  ['protocol', (r) => r.protocol],
  ['streams', (r) => r.streams],
  ['goaways', (r) => r.goaways],
  ['grpc_ok', (r) => r.grpc.ok],
  ['grpc_error', (r) => r.grpc.error],
  ['waiting', (r) => r.waiting],
  ['oldest_wait_ms', (r) => r.oldestWaitMs],
  ['pool_timeouts', (r) => r.poolTimeouts],
  ['stuck', (r) => r.stuck],
  ['latency_ms', (r) => r.latencyMs ?? ''],
  ['requests', (r) => r.requests],
  ['failures', (r) => r.failures],
  ['checks', (r) => r.checks],
  ['check_failures', (r) => r.checkFailures],
  ['inconclusive', (r) => r.inconclusive],
  ['last_check', (r) => (r.lastCheck === null ? '' : `${r.lastCheck.result} ${r.lastCheck.reason}`)],
  ['last_check_ms', (r) => r.lastCheck?.latencyMs ?? ''],
  ['last_change', (r) => r.lastChange ?? ''],
  ['probe_rate', (r) => r.probeRate],
  ['checks_skipped_traffic', (r) => r.checksSkipped.traffic],
  ['checks_skipped_standby', (r) => r.checksSkipped.standby],
  ['checks_skipped_shared', (r) => r.checksSkipped.shared],
  ['subset', (r) => r.subset ?? ''],
]

function csvField(v: unknown): string {
  const s = String(v)
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

/** A header line, then one line per server. */
export function renderCsv(rows: readonly ServerStatus[]): string {
  const lines = [COLUMNS.map(([name]) => name).join(',')]
  for (const r of rows) lines.push(COLUMNS.map(([, get]) => csvField(get(r))).join(','))
  return `${lines.join('\n')}\n`
}

function promLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

/** Tengine's `check_status prometheus` series, named vigil_*. */
export function renderPrometheus(rows: readonly ServerStatus[], generation: number): string {
  const up = rows.filter((r) => r.status === 'up').length
  const out = [
    '# HELP vigil_upstream_count_total number of servers',
    '# TYPE vigil_upstream_count_total gauge',
    `vigil_upstream_count_total ${rows.length}`,
    '# HELP vigil_upstream_count_up number of servers up',
    '# TYPE vigil_upstream_count_up gauge',
    `vigil_upstream_count_up ${up}`,
    '# HELP vigil_upstream_count_down number of servers down',
    '# TYPE vigil_upstream_count_down gauge',
    `vigil_upstream_count_down ${rows.length - up}`,
    '# HELP vigil_upstream_count_generation configuration generation',
    '# TYPE vigil_upstream_count_generation gauge',
    `vigil_upstream_count_generation ${generation}`,
  ]
  const series: [string, string, (r: ServerStatus) => number][] = [
    ['rise', 'consecutive passing checks', (r) => r.rise],
    ['fall', 'consecutive failing checks', (r) => r.fall],
    ['active', '1 when the server may receive new requests', (r) => (r.status === 'up' ? 1 : 0)],
    ['ejected', '1 while ejected by passive health, until its trial request succeeds', (r) => (r.passive === 'ejected' || r.passive === 'trial' ? 1 : 0)],
    ['suspect', '1 while suspected of a stall', (r) => (r.passive === 'suspect' ? 1 : 0)],
    ['ejections', 'passive ejections so far', (r) => r.ejections],
    ['effective_weight', 'weight used by the balancer now (slow start ramps it up)', (r) => r.effectiveWeight],
  ]
  for (const [name, help, value] of series) {
    out.push(`# HELP vigil_upstream_server_${name} ${help}`, `# TYPE vigil_upstream_server_${name} gauge`)
    for (const r of rows) {
      const labels = `index="${r.index}",upstream_type="${r.type}",upstream="${promLabel(r.upstream)}",name="${promLabel(r.name)}",status="${r.status}",port="${r.port}"`
      out.push(`vigil_upstream_server_${name}{${labels}} ${value(r)}`)
    }
  }
  return `${out.join('\n')}\n`
}

/** gRPC calls by class: OK, and every other status. */
function grpcClasses(codes: Float64Array): { ok: number; error: number } {
  let all = 0
  for (const n of codes) all += n
  return { ok: codes[0] as number, error: all - (codes[0] as number) }
}
