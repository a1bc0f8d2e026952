// The registry of per-address state: each server of a group is one Peer (in flight, counters, pool, passive and
// check state, latency estimate, ramp, operator state), looked up by its group and address and counted by the
// generations that use it. A generation acquires every server it lists and the one before it then releases its
// own: a kept server is the same state holder because its key is the same, with the new generation's settings;
// a server no generation holds any more leaves, and its pool closes once its in-flight requests are done.
import type { ServerSpec } from '../config/diff.js'
import { DEFAULT_DECAY } from '../balance/peak-ewma.js'
import { Peer } from './peer.js'
import type { UpstreamPool } from './h2-pool.js'
import type { Connections } from './upstream.js'

interface Entry {
  peer: Peer
  refs: number
  /** The connection settings its pool was built with (Connections.key). */
  poolKey: string
}

/**
 * Keyed by group and address: two groups listing one address keep separate counters, ejections and pools, as
 * each group's passive, check and connection settings are its own.
 */
const hostKey = (upstream: string, address: string): string => `${upstream}\u0000${address}`

export class Hosts {
  private readonly entries = new Map<string, Entry>()
  /** Pools of servers that left (or of replaced connection settings) still finishing their requests. */
  private readonly retiring = new Set<UpstreamPool>()
  /** Servers no generation holds that still had attempts in flight when they left, with their group's name. */
  private readonly leaving = new Map<Peer, string>()

  /** `grace`: how long a released pool's in-flight requests may take before it is destroyed. */
  constructor(private readonly grace: () => number) {}

  /**
   * The state of `server` in `upstream`, created on first use, with this generation's server settings and
   * connection settings. A pool keyed by other connection settings is replaced: new requests use the new one,
   * the old one finishes what it carries (an undici pool's options are fixed, and a group never mixes settings).
   */
  acquire(upstream: string, server: ServerSpec, connections: Connections): Peer {
    const key = hostKey(upstream, server.address)
    const e = this.entries.get(key)
    if (e === undefined) {
      const peer = new Peer(server, connections.pool, connections.latencyDecay)
      this.entries.set(key, { peer, refs: 1, poolKey: connections.key })
      return peer
    }
    e.refs++
    e.peer.configure(server)
    e.peer.rtt.decay = connections.latencyDecay ?? DEFAULT_DECAY
    if (e.poolKey !== connections.key) {
      e.poolKey = connections.key
      this.retire(e.peer.replacePool(connections.pool))
    }
    return e.peer
  }

  /** One generation fewer holds `peer`; true when it was the last, and the peer's pool now retires. */
  release(upstream: string, peer: Peer): boolean {
    const key = hostKey(upstream, peer.address)
    const e = this.entries.get(key)
    if (e === undefined || e.peer !== peer || --e.refs > 0) return false
    this.entries.delete(key)
    if (peer.attempts.head !== undefined) this.leaving.set(peer, upstream)
    this.retire(peer.pool)
    return true
  }

  /**
   * Servers that left but are still finishing attempts, with their group's name: the watchdog sweeps them like
   * live ones (a stuck attempt would otherwise hold a draining pool until the grace period). Those done are dropped.
   */
  *departed(): IterableIterator<[upstream: string, peer: Peer]> {
    for (const [peer, upstream] of this.leaving) {
      if (peer.attempts.head === undefined) this.leaving.delete(peer)
      else yield [upstream, peer]
    }
  }

  /** Released pools still finishing requests. */
  get retiringPools(): number {
    return this.retiring.size
  }

  /** Destroy the pools still finishing (at shutdown, after the grace period). */
  async close(): Promise<void> {
    await Promise.all([...this.retiring].map((p) => p.destroy()))
    this.retiring.clear()
    this.leaving.clear()
  }

  /** Close once in-flight requests are done, but never wait longer than the grace period. */
  private retire(pool: UpstreamPool): void {
    this.retiring.add(pool)
    const timer = setTimeout(() => void pool.destroy(), this.grace())
    timer.unref()
    pool.close().then(
      () => {
        clearTimeout(timer)
        this.retiring.delete(pool)
      },
      () => this.retiring.delete(pool),
    )
  }
}
