// An Upstream is one generation of a named group: its peers, policies and connection settings, immutable, plus the
// snapshot of which of its peers may receive traffic now.
import { createHash } from 'node:crypto'
import type { GroupConfig, Upstream as UpstreamConfig } from '../config/schema.js'
import { serverSpec } from '../config/diff.js'
import { ms } from '../config/duration.js'
import { createBalancer, type Balancer, type PickRequest } from '../balance/index.js'
import { SlowStart } from '../balance/slow-start.js'
import type { Peer, PoolOptions } from './peer.js'
import { Hosts } from './hosts.js'
import { loadClientTls } from './tls.js'
import { GroupTls, resolveCheck, type CheckSpec } from '../health/check-spec.js'
import type { WaitQueue, Waiter } from './wait-queue.js'
import { GroupState } from './group-state.js'
import { sameJson } from '../config/diff.js'
import { PassiveHealth } from '../health/passive.js'
import type { HealthEvent } from '../health/passive-events.js'
import type { Monitor } from '../health/monitor.js'
import { RetryPolicy } from '../proxy/retry.js'
import { subsetRotation, type SubsetRotation } from './subset-rotation.js'

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

/** `tls`: the group's loaded TLS settings (its connections'), which its checks over TLS use too. */
export function activeCheck(config: UpstreamConfig, tls: PoolOptions['tls'] | undefined): CheckSpec | undefined {
  return config.active === undefined ? undefined : resolveCheck(config.active, config.host, config.protocol, tls === undefined ? undefined : new GroupTls(tls))
}

/** The 503 vigil answers when select() finds no peer. */
export interface Refusal {
  code: 'no_live_upstreams' | 'max_conns'
  detail: string
}

/** What builds a group's next generation (see the Upstream constructor). */
export interface NextGeneration {
  previous?: Upstream
  connections?: Connections
}

/**
 * One generation of a group: its servers (each the lasting state of its address, from the hosts registry), its
 * balancer, policies and connection settings, all fixed at construction. A reload, an admin call or a DNS answer
 * builds the next generation from this one (NextGeneration) and publishes it; what outlives generations is
 * in the hosts registry (per server) and in the group's GroupState (events, monitor, wait queue, live generation).
 */
export class Upstream {
  readonly name: string
  /** The config this generation was built from, its servers filled in (what the next generation is compared with). */
  readonly config: GroupConfig
  readonly peers: readonly Peer[]
  readonly connections: Connections
  readonly balancer: Balancer
  /** The slow-start ramps: the previous generation's when the window is the same, handed over when it changed. */
  readonly slowStart: SlowStart
  /** Host header for the servers; undefined keeps the client's. */
  readonly hostHeader: string | undefined
  /** The active health check, resolved; undefined when the group has none. */
  readonly active: CheckSpec | undefined
  /** With `subset`: which primaries this vigil uses, and which stand by (src/upstream/subset-rotation.ts). */
  readonly subset: SubsetRotation | undefined
  /** Selection's bottom line: with no eligible peer, try the non-down ones rather than answer 503. */
  readonly failOpen: boolean
  /** Passive accounting: the previous generation's when its settings are the same, afresh when they changed. */
  readonly passive: PassiveHealth
  readonly retry: RetryPolicy
  /** What the group keeps across generations. */
  readonly group: GroupState
  /** Eligible primaries and eligible backups, rebuilt on every health or operator change, read per request. */
  private primaries: readonly Peer[] = NONE
  private backups: readonly Peer[] = NONE
  private readonly noLive: Refusal
  private readonly allFull: Refusal
  /** Every enabled, non-down peer: tried when none is eligible and failOpen is on (empty otherwise). */
  private lastResort: readonly Peer[] = NONE

  /**
   * `hosts`: where its servers' state lives (Membership's registry; a group built alone has its own). `next`: the
   * live generation this one will replace and the connection settings prepare() read (TLS files can fail to
   * load, so they are read before the swap); without a previous generation the group starts here and is live at
   * once. With it, it is built inside the swap and routes nothing until publish(): the servers are acquired (a
   * kept one is the same state, with these settings), and passive accounting, slow start and the retry policy are
   * carried over by the rules below.
   */
  constructor(name: string, config: GroupConfig, hosts: Hosts = new Hosts(() => 0), next: NextGeneration = {}) {
    const previous = next.previous
    this.name = name
    this.config = config
    this.hostHeader = config.host
    this.connections = next.connections ?? connections(config)
    this.active = activeCheck(config, this.connections.pool.tls)
    this.peers = config.servers.map((s) => hosts.acquire(name, serverSpec(s), this.connections))
    this.subset = subsetRotation(this.peers, config.subset, config.passive, config.placement)
    this.balancer = createBalancer(config)
    this.noLive = { code: 'no_live_upstreams', detail: `no live upstreams in "${name}"` }
    this.allFull = { code: 'max_conns', detail: `every server in "${name}" is at its maxConns limit` }
    this.failOpen = failOpenOf(config)
    // A retry policy carries its budget's counts: kept while its settings are the same.
    this.retry = previous !== undefined && sameJson(previous.config.retry, config.retry) ? previous.retry : new RetryPolicy(config.retry)
    this.group = previous?.group ?? new GroupState(name, config)
    // Slow start: a running ramp continues under a new window from the time it began (SlowStart.handOver).
    const window = ms(config.slowStart ?? 0)
    if (previous?.slowStart.window === window) this.slowStart = previous.slowStart
    else {
      this.slowStart = new SlowStart(window)
      this.slowStart.onWeights = () => this.group.live.prepareBalancer()
      previous?.slowStart.handOver(this.slowStart)
    }
    // Passive health: kept peers keep their state under the same settings; new settings start accounting afresh
    // (ejections end, every server is back in rotation), so no server is stranded by a rule it was ejected under.
    if (previous !== undefined && sameJson(previous.config.passive, config.passive)) {
      this.passive = previous.passive
      this.passive.sync(this.peers)
    } else {
      previous?.passive.close()
      this.passive = new PassiveHealth(this.group, this.peers, config.passive)
    }
    if (previous === undefined) this.publish()
  }

  /**
   * Make this generation the live one: its snapshot is built, the servers that were not eligible in the one it
   * replaces start slow start, and the group's waiters may take room it has. Called once, inside the swap.
   */
  publish(): void {
    const previous = this.group.live as Upstream | undefined
    this.group.live = this
    this.rebuild(previous === undefined ? undefined : previous.primaries.concat(previous.backups))
  }

  /** Balancer tables follow the snapshot and the effective weights; pick() never builds one. */
  private prepareBalancer(): void {
    this.balancer.prepare?.([this.primaries, this.backups, this.lastResort])
  }

  get timeouts(): UpstreamTimeouts {
    return this.connections.timeouts
  }

  /** A peer's pool closed or reopened a gate (GOAWAY): the live snapshot follows. */
  private readonly gateChanged = (): void => this.refresh()

  /** Recompute the eligible snapshot of the live generation; call after any change to a peer's gates. */
  refresh(): void {
    const live = this.group.live
    live.rebuild(live.primaries.concat(live.backups))
  }

  /** `before`: the eligible servers until now (undefined at the group's start, which is not a recovery). */
  private rebuild(before: readonly Peer[] | undefined): void {
    for (const p of this.peers) p.onGateChange = this.gateChanged
    this.primaries = this.inRotation(before !== undefined).filter((p) => !p.backup && p.eligible)
    this.backups = this.peers.filter((p) => p.backup && p.eligible)
    this.lastResort = this.failOpen ? this.peers.filter((p) => !p.configDown && p.operator === 'enabled') : NONE
    if (before !== undefined) for (const p of this.primaries.concat(this.backups)) if (!before.includes(p)) this.becameEligible(p)
    this.prepareBalancer()
    this.eligibilityChanged()
    this.group.emit('change', this)
    this.admitWaiting()
  }

  /**
   * The servers in rotation now: all, or under `subset` its members and replacements; a server that leaves standby is
   * checked at once, as an added one is.
   */
  private inRotation(started: boolean): readonly Peer[] {
    const subset = this.subset
    if (subset === undefined) {
      // A generation without `subset` after one with it: nothing stands by any more.
      for (const p of this.peers) p.standby = false
      return this.peers
    }
    const rotation = subset.rotation()
    for (const p of this.peers) {
      const standby = subset.role(p) === 'standby'
      const back = p.standby && !standby
      p.standby = standby
      if (back && started) this.passive.checker?.recheck(p)
    }
    return rotation
  }

  /** Listen to the group's events ('health', 'change'), whichever generation is live when they happen. */
  on(event: 'health' | 'change', listener: (...args: any[]) => void): this {
    this.group.on(event, listener)
    return this
  }

  off(event: 'health' | 'change', listener: (...args: any[]) => void): this {
    this.group.off(event, listener)
    return this
  }

  /** Where the data path reports every attempt (health/monitor.ts): the group's, whichever generation is live. */
  get monitor(): Monitor {
    return this.group.monitor
  }

  /** Requests waiting for room under maxConns; undefined when the upstream has no `queue`. */
  get queue(): WaitQueue | undefined {
    return this.group.queue
  }

  /** Says once when the group runs out of eligible peers, and once when it has some again. */
  private eligibilityChanged(): void {
    const none = this.eligibleCount === 0
    if (none === this.group.noneEligible) return
    this.group.noneEligible = none
    const reason = none ? (this.failOpen ? 'no eligible server: failing open to every non-down server' : 'no eligible server: answering 503') : 'eligible servers again'
    const event: HealthEvent = { kind: none ? 'no_eligible' : 'eligible', upstream: this.name, peer: undefined, reason }
    this.group.emit('health', event)
  }

  /**
   * `peer` keeps `share` of its weight (the fleet suspects it), or, at 1, all of it again unless slow start is
   * ramping it (the ramp brings it back). Applied again while the suspicion lasts: slow start may raise it. Returns
   * whether the share or the effective weight changed (the caller refreshes: a cluster's workers follow both).
   */
  shareWeight(peer: Peer, share: number): boolean {
    const w = share < 1 ? Math.min(peer.effectiveWeight, peer.weight * share) : this.slowStart.ramps(peer) ? peer.effectiveWeight : peer.weight
    if (w === peer.effectiveWeight && share === peer.weightShare) return false
    peer.weightShare = share
    peer.effectiveWeight = w
    return true
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
    // A request routed before a swap (a retry, a hedge, a queued request) picks from the live server list.
    if (this.group.live !== this) return this.group.live.select(tried, req)
    const peer = this.balancer.pick(this.primaries, tried, req) ?? (this.backups.length === 0 ? undefined : this.balancer.pick(this.backups, tried, req))
    if (peer !== undefined || this.primaries.length + this.backups.length !== 0 || this.lastResort.length === 0) return peer
    return this.balancer.pick(this.lastResort, tried, req)
  }

  /** Why select() found no peer: nothing eligible, or every eligible peer at its maxConns limit. */
  refusal(): Refusal {
    if (this.group.live !== this) return this.group.live.refusal()
    for (const p of this.primaries) if (p.inflight >= p.maxConns) return this.allFull
    for (const p of this.backups) if (p.inflight >= p.maxConns) return this.allFull
    return this.noLive
  }

  /** A request finished or the snapshot changed: let queued requests in while some eligible peer has room. */
  admitWaiting(): void {
    const queue = this.group.queue
    if (queue === undefined) return
    if (this.group.live !== this) return this.group.live.admitWaiting()
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
