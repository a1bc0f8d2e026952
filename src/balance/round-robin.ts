// Smooth weighted round robin, nginx's ngx_http_upstream_get_peer: weights 5,1,1 give a a b a c a a.
import { available, type Balancer } from './balancer.js'
import type { Peer } from '../upstream/peer.js'

export class RoundRobin implements Balancer {
  pick(peers: readonly Peer[], tried: readonly Peer[]): Peer | undefined {
    let best: Peer | undefined
    let total = 0
    for (let i = 0; i < peers.length; i++) {
      const p = peers[i] as Peer
      if (!available(p, tried)) continue
      p.currentWeight += p.effectiveWeight
      total += p.effectiveWeight
      if (best === undefined || p.currentWeight > best.currentWeight) best = p
    }
    if (best !== undefined) best.currentWeight -= total
    return best
  }
}
