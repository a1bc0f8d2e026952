// A Peer is one provider inside one upstream group: its address, weight, live counters and health gates.
import { Pool } from 'undici'
import type { Server } from '../config/schema.js'
import { splitAddress } from '../net.js'

export type OperatorState = 'enabled' | 'draining' | 'disabled'

export interface PoolOptions {
  connectTimeout: number
  /** Time until response headers arrive. */
  responseTimeout: number
  /** Longest silence between response body chunks. */
  idleTimeout: number
  /** How long an unused keep-alive connection is kept. */
  keepAlive: number
  connections: number
}

export class Peer {
  readonly address: string
  readonly host: string
  readonly port: number
  readonly origin: string
  /** weight, backup and configDown change in place on reload (src/upstream/membership.ts). */
  weight: number
  backup: boolean
  /** `down: true` in the config: never receives traffic. */
  configDown: boolean
  operator: OperatorState = 'enabled'
  /**
   * Health gates set by the health modules. A peer is eligible only when every gate is open;
   * the Upstream recomputes its snapshot when one changes (see Upstream.refresh).
   */
  checkUp = true
  passiveOk = true
  /** Requests sent to this peer and not finished yet. */
  inflight = 0
  requests = 0
  failures = 0
  /** Smooth weighted round robin state (nginx's current_weight), owned by the balancer. */
  currentWeight = 0
  /** Replaced (see replacePool) only when the group's timeouts change on reload. */
  pool: Pool

  constructor(server: Server, pool: PoolOptions) {
    this.address = server.address
    const { host, port } = splitAddress(server.address)
    this.host = host
    this.port = port
    this.origin = `http://${server.address}`
    this.weight = server.weight ?? 1
    this.backup = server.backup ?? false
    this.configDown = server.down ?? false
    this.pool = createPool(this.origin, pool)
  }

  /** New requests use a pool with new options; the old pool is returned so its in-flight requests can finish before it closes. */
  replacePool(options: PoolOptions): Pool {
    const old = this.pool
    this.pool = createPool(this.origin, options)
    return old
  }

  get eligible(): boolean {
    return !this.configDown && this.operator === 'enabled' && this.checkUp && this.passiveOk
  }

  close(): Promise<void> {
    return this.pool.close()
  }
}

function createPool(origin: string, pool: PoolOptions): Pool {
  return new Pool(origin, {
    connections: pool.connections,
    connect: { timeout: pool.connectTimeout },
    headersTimeout: pool.responseTimeout,
    bodyTimeout: pool.idleTimeout,
    keepAliveTimeout: pool.keepAlive,
    keepAliveMaxTimeout: pool.keepAlive,
    pipelining: 1,
  })
}
