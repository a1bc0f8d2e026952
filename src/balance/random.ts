// Weighted random: each request independently, with probability proportional to effective weight.
import { available, availableWeight, weightedDraw, type Balancer } from './balancer.js'
import type { Peer } from '../upstream/peer.js'

export class WeightedRandom implements Balancer {
  pick(peers: readonly Peer[], tried: readonly Peer[]): Peer | undefined {
    // One peer, the usual backup tier: no draw needed.
    if (peers.length === 1) return available(peers[0] as Peer, tried) ? peers[0] : undefined
    const total = availableWeight(peers, tried)
    return total === 0 ? undefined : weightedDraw(peers, tried, undefined, total)
  }
}
