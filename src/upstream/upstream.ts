// An Upstream is a named group of peers plus the snapshot of which of them may receive traffic now.
import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { GroupConfig, Upstream as UpstreamConfig } from '../config/schema.js'
import { serverSpec } from '../config/diff.js'
import { ms } from '../config/duration.js'
import { createBalancer, type Balancer, type PickRequest } from '../balance/index.js'
import { SlowStart } from '../balance/slow-start.js'
import type { Peer, PoolOptions } from './peer.js'
import { Hosts } from './hosts.js'
import { loadClientTls } from './tls.js'
import { resolveCheck, type CheckSpec } from '../health/check-spec.js'
import { DEFAULT_QUEUE_TIMEOUT, WaitQueue, type Waiter } from './wait-queue.js'
import { PassiveHealth } from '../health/passive.js'
import type { HealthEvent } from '../health/passive-events.js'
import { Monitor } from '../health/monitor.js'
import { RetryPolicy } from '../proxy/retry.js'

/** HTTP/2 to providers: one multiplexed session per provider, 100 streams on it (a Node or grpc-go server's own limit). */
export const HTTP2_DEFAULTS = { connections: 1, maxConcurrentStreams: 100 } as const

export const DEFAULT_TIMEOUTS = { connect: 2_000, response: 30_000, idle: 60_000 } as const
const STUCK_SLACK = 1_000

export interface UpstreamTimeouts {
  connect: number
  response: number
  idle: number
  /** Longest wait for a pooled connection (`timeouts.queue`, default `connect`). */
  queue: number
  /** Age after which an attempt still without response headers outlived every timeout that should have ended it. */
  stuck: number
}

const NONE: readonly Peer[] = []

/** How a group's peers connect: read from its config at start and again when a reload changes it. */
export interface Connections {
  timeouts: UpstreamTimeouts
  pool: PoolOptions
  /** Peak-EWMA decay for the peers' latency estimates (ms); undefined for the default. */
  latencyDecay: number | undefined
  /**
   * What shapes a pool (timeouts, TLS material, response limit), as one key: a peer whose pool was built under
   * another key gets a new pool (src/upstream/hosts.ts).
   */
  key: string
}

export function connections(config: UpstreamConfig): Connections {
  const connect = ms(config.timeouts?.connect ?? DEFAULT_TIMEOUTS.connect)
  const response = ms(config.timeouts?.response ?? DEFAULT_TIMEOUTS.response)
  const queue = ms(config.timeouts?.queue ?? connect)
  const timeouts = {
    connect,
    response,
    idle: ms(config.timeouts?.idle ?? DEFAULT_TIMEOUTS.idle),
    queue,
    // Queued, connected, then answered: each phase has its timeout; a second of slack for the timers themselves.
    stuck: queue + connect + response + STUCK_SLACK,
  }
  const protocol = config.protocol ?? 'http1'
  const pool: PoolOptions = {
    protocol,
    sessions: config.http2?.connections ?? HTTP2_DEFAULTS.connections,
    maxStreams: config.http2?.maxConcurrentStreams ?? HTTP2_DEFAULTS.maxConcurrentStreams,
    connectTimeout: timeouts.connect,
    responseTimeout: timeouts.response,
    idleTimeout: timeouts.idle,
    // An HTTP/2 session is one connection for every request: kept longer than an idle HTTP/1.1 socket.
    keepAlive: protocol === 'http1' ? 4_000 : 60_000,
    connections: 256,
    tls: loadClientTls(config.tls, config.host),
    maxResponseSize: config.maxResponseSize,
  }
  const key = createHash('sha256').update(JSON.stringify([timeouts, pool.maxResponseSize, pool.tls, protocol, pool.sessions, pool.maxStreams])).digest('base64')
  return { timeouts, pool, latencyDecay: config.ewmaDecay === undefined ? undefined : ms(config.ewmaDecay), key }
}

/** Fail open (Envoy's panic mode) unless turned off; `passive.failOpen` is where the setting used to live. */
export function failOpenOf(config: UpstreamConfig): boolean {
  return config.failOpen ?? config.passive?.failOpen ?? true
}

export function activeCheck(config: UpstreamConfig): CheckSpec | undefined {
  return config.active === undefined ? undefined : resolveCheck(config.active, config.host)
}

/** The 503 vigil answers when select() finds no peer. */
export interface Refusal {
  code: 'no_live_upstreams' | 'max_conns'
  detail: string
}

export class Upstream extends EventEmitter {
  readonly name: string
  /** peers, connections, balancer, slowStart, hostHeader, active, passive and retry are replaced in place on reload (src/upstream/membership.ts). */
  peers: readonly Peer[]
  connections: Connections
  private policy!: Balancer
  private ramp!: SlowStart
  /** Requests waiting for room under maxConns; undefined when the upstream has no `queue`. */
  readonly queue: WaitQueue | undefined
  /** Host header for the servers; undefined keeps the client's. */
  hostHeader: string | undefined
  /** The active health check, resolved; undefined when the group has none. */
  active: CheckSpec | undefined
  /** Eligible primaries and eligible backups, rebuilt on every health or operator change, read per request. */
  private primaries: readonly Peer[] = NONE
  private backups: readonly Peer[] = NONE
  private readonly noLive: Refusal
  private readonly allFull: Refusal
  private started = false
  /** Every enabled, non-down peer: tried when none is eligible and failOpen is on (empty otherwise). */
  private lastResort: readonly Peer[] = NONE
  /** Selection's bottom line: with no eligible peer, try the non-down ones rather than answer 503. */
  failOpen: boolean
  private noneEligible = false
  passive: PassiveHealth
  retry: RetryPolicy
  /** Where the data path reports every attempt (health/monitor.ts); outlives passive and retry settings. */
  readonly monitor: Monitor = new Monitor(this)

  /** `hosts`: where its servers' state lives (Membership's registry; a group built alone has its own). */
  constructor(name: string, config: GroupConfig, hosts: Hosts = new Hosts(() => 0)) {
    super()
    this.name = name
    this.hostHeader = config.host
    this.active = activeCheck(config)
    this.connections = connections(config)
    this.peers = config.servers.map((s) => hosts.acquire(name, serverSpec(s), this.connections))
    this.balancer = createBalancer(config)
    this.slowStart = new SlowStart(ms(config.slowStart ?? 0))
    this.queue = config.queue === undefined ? undefined : new WaitQueue(config.queue.size, ms(config.queue.timeout ?? DEFAULT_QUEUE_TIMEOUT))
    this.noLive = { code: 'no_live_upstreams', detail: `no live upstreams in "${name}"` }
    this.allFull = { code: 'max_conns', detail: `every server in "${name}" is at its maxConns limit` }
    this.failOpen = failOpenOf(config)
    this.passive = new PassiveHealth(this, config.passive)
    this.retry = new RetryPolicy(config.retry)
    this.refresh()
    this.started = true
  }

  get balancer(): Balancer {
    return this.policy
  }

  /** A new policy (reload) gets its tables for the current snapshot at once. */
  set balancer(b: Balancer) {
    this.policy = b
    this.prepareBalancer()
  }

  get slowStart(): SlowStart {
    return this.ramp
  }

  set slowStart(s: SlowStart) {
    this.ramp = s
    s.onWeights = () => this.prepareBalancer()
  }

  /** Balancer tables follow the snapshot and the effective weights; pick() never builds one. */
  private prepareBalancer(): void {
    this.policy.prepare?.([this.primaries, this.backups, this.lastResort])
  }

  get timeouts(): UpstreamTimeouts {
    return this.connections.timeouts
  }

  /** A peer's pool closed or reopened a gate (GOAWAY): the snapshot follows. */
  private readonly gateChanged = (): void => this.refresh()

  /** Recompute the eligible snapshot; call after any change to a peer's gates. */
  refresh(): void {
    for (const p of this.peers) p.onGateChange = this.gateChanged
    const before = this.primaries.concat(this.backups)
    this.primaries = this.peers.filter((p) => !p.backup && p.eligible)
    this.backups = this.peers.filter((p) => p.backup && p.eligible)
    this.lastResort = this.failOpen ? this.peers.filter((p) => !p.configDown && p.operator === 'enabled') : NONE
    // The constructor's first snapshot is the start, not a recovery.
    if (this.started) for (const p of this.primaries.concat(this.backups)) if (!before.includes(p)) this.becameEligible(p)
    this.prepareBalancer()
    this.eligibilityChanged()
    this.emit('change', this)
    this.admitWaiting()
  }

  /** Says once when the group runs out of eligible peers, and once when it has some again. */
  private eligibilityChanged(): void {
    const none = this.eligibleCount === 0
    if (none === this.noneEligible) return
    this.noneEligible = none
    const reason = none ? (this.failOpen ? 'no eligible server: failing open to every non-down server' : 'no eligible server: answering 503') : 'eligible servers again'
    const event: HealthEvent = { kind: none ? 'no_eligible' : 'eligible', upstream: this.name, peer: undefined, reason }
    this.emit('health', event)
  }

  /**
   * A peer entered the eligible snapshot (recovered from ejection or a failed check, re-enabled, or added):
   * it starts slow start. refresh() calls this; health modules only open a gate and call refresh().
   */
  becameEligible(peer: Peer): void {
    this.slowStart.begin(peer)
  }

  /**
   * The next peer for a request, or undefined when none may take it (the caller answers `refusal()`, or the
   * last failure). When no peer is eligible at all, fail open: any enabled, non-down peer rather than nothing.
   */
  select(tried: readonly Peer[], req?: PickRequest): Peer | undefined {
    const peer = this.balancer.pick(this.primaries, tried, req) ?? (this.backups.length === 0 ? undefined : this.balancer.pick(this.backups, tried, req))
    if (peer !== undefined || this.primaries.length + this.backups.length !== 0 || this.lastResort.length === 0) return peer
    return this.balancer.pick(this.lastResort, tried, req)
  }

  /** Why select() found no peer: nothing eligible, or every eligible peer at its maxConns limit. */
  refusal(): Refusal {
    for (const p of this.primaries) if (p.inflight >= p.maxConns) return this.allFull
    for (const p of this.backups) if (p.inflight >= p.maxConns) return this.allFull
    return this.noLive
  }

  /** A request finished or the snapshot changed: let queued requests in while some eligible peer has room. */
  admitWaiting(): void {
    const queue = this.queue
    if (queue === undefined) return
    while (queue.length > 0 && this.hasRoom()) (queue.shift() as Waiter).admit()
  }

  private hasRoom(): boolean {
    for (const p of this.primaries) if (p.inflight < p.maxConns) return true
    for (const p of this.backups) if (p.inflight < p.maxConns) return true
    return false
  }

  find(address: string): Peer | undefined {
    return this.peers.find((p) => p.address === address)
  }

  get eligibleCount(): number {
    return this.primaries.length + this.backups.length
  }

  async close(): Promise<void> {
    this.slowStart.stop()
    this.passive.close()
    await Promise.all(this.peers.map((p) => p.close()))
  }
}
