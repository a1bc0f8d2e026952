// A Peer is one provider inside one upstream group: its address, weight, live counters and health gates.
import { Pool } from 'undici'
import { Http2Pool, type UpstreamPool } from './h2-pool.js'
import type { AddressServer } from '../config/schema.js'
import type { ServerSpec } from '../config/diff.js'
import { splitAddress } from '../net.js'
import { TlsPool, type ClientTls } from './tls.js'
import { PeakEwma } from '../balance/peak-ewma.js'
import type { PeerHealth } from '../health/ejection.js'
import { ResponseStats } from './response-stats.js'
import { InFlightList } from './inflight.js'

export type OperatorState = 'enabled' | 'draining' | 'disabled'

/** How vigil speaks to a group's providers (`protocol`): HTTP/1.1, HTTP/2 with prior knowledge, HTTP/2 over TLS. */
export type UpstreamProtocol = 'http1' | 'h2c' | 'h2'

export interface PoolOptions {
  /** Default http1. */
  protocol?: UpstreamProtocol | undefined
  /** HTTP/2: sessions per provider at most, and streams per session at most. */
  sessions?: number | undefined
  maxStreams?: number | undefined
  connectTimeout: number
  /** Time until response headers arrive. */
  responseTimeout: number
  /** Longest silence between response body chunks. */
  idleTimeout: number
  /** How long an unused keep-alive connection is kept. */
  keepAlive: number
  connections: number
  /** TLS to the provider (an https:// origin); `servername` undefined means the server's own host. */
  tls?: (Partial<ClientTls> & Omit<ClientTls, 'servername'>) | undefined
  /** Largest response body in bytes; undefined for no limit. */
  maxResponseSize?: number | undefined
}

export class Peer {
  readonly address: string
  readonly host: string
  readonly port: number
  /** `http://` or `https://` and the address: follows the group's `tls` (see replacePool). */
  origin: string
  /** weight, maxConns, backup and configDown are each generation's (see configure). */
  weight: number
  /** The weight balancers use: `weight`, or less while slow start ramps it up (see balance/slow-start.ts). */
  effectiveWeight: number
  /** The share of its weight the fleet's suspicion leaves it (Upstream.shareWeight); 1 when none. */
  weightShare = 1
  /** Most requests in flight at once (`maxConns`); Infinity when unlimited, so the check is one comparison. */
  maxConns: number
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
  /**
   * Outside this vigil's rotation in a group with `subset` (src/upstream/subset-rotation.ts): no traffic, and no
   * checks while it is up. Not a gate: a standby server is healthy, it is just not this vigil's to use.
   */
  standby = false
  /** Passive health state (health/passive.ts), which owns `passiveOk`. */
  passive: PeerHealth | undefined = undefined
  /** Requests sent to this peer and not finished yet. */
  inflight = 0
  /** The same attempts, oldest first, for the watchdog (src/proxy/watchdog.ts), which also sets the four below. */
  readonly attempts = new InFlightList()
  /** Attempts waiting for a connection of the pool, and how long the oldest of them has waited (ms). */
  waiting = 0
  oldestWait = 0
  /** Attempts the watchdog ended because they outlived every timeout meant to end them (a vigil bug, logged as an error). */
  stuck = 0
  /** Requests that waited past timeouts.queue for a pool connection (answered 503 pool_timeout, or retried). */
  poolTimeouts = 0
  requests = 0
  failures = 0
  /** Wall-clock time (ms) a real request last succeeded here: traffic-aware checks (active.trafficInterval) read it. */
  lastAnswered = 0
  /** Responses by class and their times, for /metrics. */
  readonly stats = new ResponseStats()
  /** Smooth weighted round robin state (nginx's current_weight), owned by the balancer. */
  currentWeight = 0
  /** Learned time to response headers, fed by forward() and read by the ewma policy and the status page. */
  readonly rtt: PeakEwma
  /** Replaced (see replacePool) only when the group's connection settings change (src/upstream/hosts.ts). */
  pool: UpstreamPool
  protocol: UpstreamProtocol = 'http1'
  /**
   * The provider sent GOAWAY and no new HTTP/2 session to it is up yet: drained like a removed server (what it
   * accepted finishes, nothing new is sent), not ejected; its pool reconnects and lets it back once it answers.
   */
  goingAway = false
  /** GOAWAYs this provider sent (status page, metrics). */
  goaways = 0
  /** Set by the upstream that holds it (Upstream.refresh): a gate of this peer changed outside the health modules. */
  onGateChange: (() => void) | undefined = undefined
  /** TLS settings for HTTPS providers (also used by WebSocket upgrades); undefined for plain HTTP. */
  tls: ClientTls | undefined

  constructor(server: AddressServer, pool: PoolOptions, latencyDecay?: number) {
    this.address = server.address
    const { host, port } = splitAddress(server.address)
    this.host = host
    this.port = port
    this.tls = peerTls(pool, host)
    this.origin = origin(this.tls, server.address)
    this.weight = server.weight ?? 1
    this.effectiveWeight = this.weight
    this.maxConns = maxConns(server)
    this.rtt = new PeakEwma(latencyDecay)
    this.backup = server.backup ?? false
    this.configDown = server.down ?? false
    this.pool = this.createPool(pool)
  }

  /** A generation's settings for this server. A peer still ramping up in slow start gets the new weight when its ramp ends. */
  configure(server: ServerSpec): void {
    if (this.effectiveWeight === this.weight) this.effectiveWeight = server.weight
    this.weight = server.weight
    this.backup = server.backup
    this.configDown = server.down
    this.maxConns = maxConns(server)
  }

  /**
   * New requests use a pool with the group's new connection settings (TLS included: the whole group changes scheme
   * at once, never a mixture); the old pool is returned so its in-flight requests can finish before it closes.
   */
  replacePool(options: PoolOptions): UpstreamPool {
    const old = this.pool
    this.tls = peerTls(options, this.host)
    this.origin = origin(this.tls, this.address)
    this.pool = this.createPool(options)
    return old
  }

  private createPool(pool: PoolOptions): UpstreamPool {
    this.protocol = pool.protocol ?? 'http1'
    this.goingAway = false
    if (this.protocol !== 'http1') return this.createHttp2Pool(pool)
    const options = http1PoolOptions(pool)
    return this.tls === undefined ? new Pool(this.origin, options) : new TlsPool(this.origin, options, this.tls, pool.connectTimeout)
  }

  private createHttp2Pool(pool: PoolOptions): Http2Pool {
    const h2 = new Http2Pool({
      origin: this.origin,
      tls: this.tls,
      sessions: pool.sessions ?? 1,
      maxStreams: pool.maxStreams ?? 100,
      connectTimeout: pool.connectTimeout,
      headersTimeout: pool.responseTimeout,
      bodyTimeout: pool.idleTimeout,
      idleTimeout: pool.keepAlive,
      maxResponseSize: pool.maxResponseSize,
      onGoaway: () => {
        if (this.pool === h2) this.setGoingAway(true)
      },
      onReady: () => {
        if (this.pool === h2) this.setGoingAway(false)
      },
    })
    return h2
  }

  private setGoingAway(on: boolean): void {
    if (on) this.goaways++
    if (this.goingAway === on) return
    this.goingAway = on
    this.onGateChange?.()
  }

  /** A cluster's primary: the HTTP/2 streams its workers hold open to this provider (src/workers/traffic.ts). */
  workerStreams = 0

  /** HTTP/2 streams open to this provider now (0 for HTTP/1.1, where every request in flight is a connection). */
  get streams(): number {
    return (this.pool instanceof Http2Pool ? this.pool.streams : 0) + this.workerStreams
  }

  get eligible(): boolean {
    return !this.configDown && this.operator === 'enabled' && this.checkUp && this.passiveOk && !this.goingAway
  }

  /** One latency sample (ms from sending the request to its response headers), taken at `now` (performance.now()). */
  recordLatency(ms: number, now = performance.now()): void {
    this.rtt.observe(ms, now)
  }

  /** The learned latency now (ms): the peak-EWMA estimate, for the status page. */
  get latency(): number {
    return this.rtt.estimate(performance.now())
  }

  close(): Promise<void> {
    return this.pool.close()
  }
}

/** An HTTP/1.1 group's undici pool settings (also the bench's forwarder configured like vigil: bench/lib/undici-forwarder.ts). */
export function http1PoolOptions(pool: PoolOptions): Pool.Options {
  return {
    connections: pool.connections,
    connect: { timeout: pool.connectTimeout },
    headersTimeout: pool.responseTimeout,
    bodyTimeout: pool.idleTimeout,
    keepAliveTimeout: pool.keepAlive,
    keepAliveMaxTimeout: pool.keepAlive,
    pipelining: 1,
    maxResponseSize: pool.maxResponseSize ?? -1,
  }
}

function peerTls(pool: PoolOptions, host: string): ClientTls | undefined {
  // h2 is TLS by definition: verified against the system CAs unless the group's `tls` says otherwise.
  if (pool.tls === undefined && pool.protocol === 'h2') return { servername: host, ca: undefined, cert: undefined, key: undefined, rejectUnauthorized: true }
  return pool.tls === undefined ? undefined : { ...pool.tls, servername: pool.tls.servername ?? host }
}

const origin = (tls: ClientTls | undefined, address: string): string => `${tls === undefined ? 'http' : 'https'}://${address}`

/** `maxConns` as the peer checks it: Infinity when unlimited, so the check is one comparison. */
export function maxConns(server: Pick<AddressServer, 'maxConns'>): number {
  return server.maxConns === undefined || server.maxConns === 0 ? Infinity : server.maxConns
}
