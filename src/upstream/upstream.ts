// An Upstream is a named group of peers plus the snapshot of which of them may receive traffic now.
import { EventEmitter } from 'node:events'
import type { Upstream as UpstreamConfig } from '../config/schema.js'
import { ms } from '../config/duration.js'
import { createBalancer, type Balancer } from '../balance/index.js'
import { Peer, type PoolOptions } from './peer.js'
import { PassiveHealth } from '../health/passive.js'
import { RetryPolicy } from '../proxy/retry.js'

export const DEFAULT_TIMEOUTS = { connect: 2_000, response: 30_000, idle: 60_000 } as const

export interface UpstreamTimeouts {
  connect: number
  response: number
  idle: number
}

const NONE: readonly Peer[] = []

export class Upstream extends EventEmitter {
  readonly name: string
  readonly peers: readonly Peer[]
  readonly timeouts: UpstreamTimeouts
  readonly balancer: Balancer
  /** Host header for the servers; undefined keeps the client's. */
  readonly hostHeader: string | undefined
  /** Eligible primaries and eligible backups, rebuilt on every health or operator change, read per request. */
  private primaries: readonly Peer[] = NONE
  private backups: readonly Peer[] = NONE
  /** Every enabled, non-down peer: tried when none is eligible and passive.failOpen is on (empty otherwise). */
  private lastResort: readonly Peer[] = NONE
  readonly passive: PassiveHealth
  readonly retry: RetryPolicy

  constructor(name: string, config: UpstreamConfig) {
    super()
    this.name = name
    this.hostHeader = config.host
    this.timeouts = {
      connect: ms(config.timeouts?.connect ?? DEFAULT_TIMEOUTS.connect),
      response: ms(config.timeouts?.response ?? DEFAULT_TIMEOUTS.response),
      idle: ms(config.timeouts?.idle ?? DEFAULT_TIMEOUTS.idle),
    }
    const pool: PoolOptions = {
      connectTimeout: this.timeouts.connect,
      responseTimeout: this.timeouts.response,
      idleTimeout: this.timeouts.idle,
      keepAlive: 4_000,
      connections: 256,
    }
    this.peers = config.servers.map((s) => new Peer(s, pool))
    this.balancer = createBalancer(config.balance)
    this.passive = new PassiveHealth(this, config.passive)
    this.retry = new RetryPolicy(config.retry)
    this.refresh()
  }

  /** Recompute the eligible snapshot; call after any change to a peer's gates. */
  refresh(): void {
    this.primaries = this.peers.filter((p) => !p.backup && p.eligible)
    this.backups = this.peers.filter((p) => p.backup && p.eligible)
    this.lastResort = this.passive.settings.failOpen ? this.peers.filter((p) => !p.configDown && p.operator === 'enabled') : NONE
    this.emit('change', this)
  }

  /**
   * The next peer for a request, or undefined when there is none to try (the caller answers 503, or the last
   * failure). When no peer is eligible at all, fail open: any enabled, non-down peer rather than nothing.
   */
  select(tried: readonly Peer[]): Peer | undefined {
    const peer = this.balancer.pick(this.primaries, tried) ?? (this.backups.length === 0 ? undefined : this.balancer.pick(this.backups, tried))
    if (peer !== undefined || this.primaries.length + this.backups.length !== 0 || this.lastResort.length === 0) return peer
    return this.balancer.pick(this.lastResort, tried)
  }

  find(address: string): Peer | undefined {
    return this.peers.find((p) => p.address === address)
  }

  get eligibleCount(): number {
    return this.primaries.length + this.backups.length
  }

  async close(): Promise<void> {
    this.passive.close()
    await Promise.all(this.peers.map((p) => p.close()))
  }
}
