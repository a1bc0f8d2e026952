// Weighted random: each request independently, with probability proportional to effective weight.
// A prepared list draws from its alias table in O(1); a draw that lands on a peer the request may not use falls back
// to the exact draw among the available ones.
import { available, availableWeight, Tables, WeightTable, weightedDraw, type Balancer } from './balancer.js'
import type { Peer } from '../upstream/peer.js'

export class WeightedRandom implements Balancer {
  private readonly tables = new Tables((peers) => new WeightTable(peers), false)

  prepare(lists: readonly (readonly Peer[])[]): void {
    this.tables.prepare(lists)
  }

  pick(peers: readonly Peer[], tried: readonly Peer[]): Peer | undefined {
    // One peer, the usual backup tier: no draw needed.
    if (peers.length === 1) return available(peers[0] as Peer, tried) ? peers[0] : undefined
    const p = this.tables.of(peers)?.draw()
    if (p !== undefined && available(p, tried)) return p
    const total = availableWeight(peers, tried)
    return total === 0 ? undefined : weightedDraw(peers, tried, undefined, total)
  }
}
