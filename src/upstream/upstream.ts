// An Upstream is a named group of peers plus the snapshot of which of them may receive traffic now.
import { EventEmitter } from 'node:events'
import type { AddressServer, GroupConfig, Upstream as UpstreamConfig } from '../config/schema.js'
import { ms } from '../config/duration.js'
import { createBalancer, type Balancer, type PickRequest } from '../balance/index.js'
import { SlowStart } from '../balance/slow-start.js'
import { Peer, type PoolOptions } from './peer.js'
import { loadClientTls } from './tls.js'
import { resolveCheck, type CheckSpec } from '../health/check-spec.js'
import { DEFAULT_QUEUE_TIMEOUT, WaitQueue, type Waiter } from './wait-queue.js'
import { PassiveHealth } from '../health/passive.js'
import { RetryPolicy } from '../proxy/retry.js'

export const DEFAULT_TIMEOUTS = { connect: 2_000, response: 30_000, idle: 60_000 } as const

export interface UpstreamTimeouts {
  connect: number
  response: number
  idle: number
}

const NONE: readonly Peer[] = []

/** How a group's peers connect: read from its config at start and again when a reload changes it. */
export interface Connections {
  timeouts: UpstreamTimeouts
  pool: PoolOptions
  /** Peak-EWMA decay for new peers' latency estimates (ms); undefined for the default. */
  latencyDecay: number | undefined
}

export function connections(config: UpstreamConfig): Connections {
  const timeouts = {
    connect: ms(config.timeouts?.connect ?? DEFAULT_TIMEOUTS.connect),
    response: ms(config.timeouts?.response ?? DEFAULT_TIMEOUTS.response),
    idle: ms(config.timeouts?.idle ?? DEFAULT_TIMEOUTS.idle),
  }
  const pool: PoolOptions = {
    connectTimeout: timeouts.connect,
    responseTimeout: timeouts.response,
    idleTimeout: timeouts.idle,
    keepAlive: 4_000,
    connections: 256,
    tls: loadClientTls(config.tls, config.host),
    maxResponseSize: config.maxResponseSize,
  }
  return { timeouts, pool, latencyDecay: config.ewmaDecay === undefined ? undefined : ms(config.ewmaDecay) }
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
  balancer: Balancer
  slowStart: SlowStart
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
  /** Every enabled, non-down peer: tried when none is eligible and passive.failOpen is on (empty otherwise). */
  private lastResort: readonly Peer[] = NONE
  passive: PassiveHealth
  retry: RetryPolicy

  constructor(name: string, config: GroupConfig) {
    super()
    this.name = name
    this.hostHeader = config.host
    this.active = activeCheck(config)
    this.connections = connections(config)
    this.peers = config.servers.map((s) => this.createPeer(s))
    this.balancer = createBalancer(config)
    this.slowStart = new SlowStart(ms(config.slowStart ?? 0))
    this.queue = config.queue === undefined ? undefined : new WaitQueue(config.queue.size, ms(config.queue.timeout ?? DEFAULT_QUEUE_TIMEOUT))
    this.noLive = { code: 'no_live_upstreams', detail: `no live upstreams in "${name}"` }
    this.allFull = { code: 'max_conns', detail: `every server in "${name}" is at its maxConns limit` }
    this.passive = new PassiveHealth(this, config.passive)
    this.retry = new RetryPolicy(config.retry)
    this.refresh()
    this.started = true
  }

  get timeouts(): UpstreamTimeouts {
    return this.connections.timeouts
  }

  /** A peer of this group, connecting with the group's current settings (not yet in `peers`). */
  createPeer(server: AddressServer): Peer {
    return new Peer(server, this.connections.pool, this.connections.latencyDecay)
  }

  /** Recompute the eligible snapshot; call after any change to a peer's gates. */
  refresh(): void {
    const before = this.primaries.concat(this.backups)
    this.primaries = this.peers.filter((p) => !p.backup && p.eligible)
    this.backups = this.peers.filter((p) => p.backup && p.eligible)
    this.lastResort = this.passive.settings.failOpen ? this.peers.filter((p) => !p.configDown && p.operator === 'enabled') : NONE
    // The constructor's first snapshot is the start, not a recovery.
    if (this.started) for (const p of this.primaries.concat(this.backups)) if (!before.includes(p)) this.becameEligible(p)
    this.emit('change', this)
    this.admitWaiting()
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
