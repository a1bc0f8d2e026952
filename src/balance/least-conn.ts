// Least connections, nginx's ngx_http_upstream_get_least_conn_peer: fewest in-flight requests relative to weight
// (compared cross-multiplied, so no division), ties broken by smooth weighted round robin among the tied peers.
import { available, type Balancer } from './balancer.js'
import type { Peer } from '../upstream/peer.js'

export class LeastConn implements Balancer {
  pick(peers: readonly Peer[], tried: readonly Peer[]): Peer | undefined {
    let best: Peer | undefined
    let tied = false
    for (let i = 0; i < peers.length; i++) {
      const p = peers[i] as Peer
      if (!available(p, tried)) continue
      if (best === undefined || p.inflight * best.effectiveWeight < best.inflight * p.effectiveWeight) {
        best = p
        tied = false
      } else if (p.inflight * best.effectiveWeight === best.inflight * p.effectiveWeight) {
        tied = true
      }
    }
    if (!tied || best === undefined) return best
    const least = best
    let chosen: Peer | undefined
    let total = 0
    for (let i = 0; i < peers.length; i++) {
      const p = peers[i] as Peer
      if (!available(p, tried) || p.inflight * least.effectiveWeight !== least.inflight * p.effectiveWeight) continue
      p.currentWeight += p.effectiveWeight
      total += p.effectiveWeight
      if (chosen === undefined || p.currentWeight > chosen.currentWeight) chosen = p
    }
    ;(chosen as Peer).currentWeight -= total
    return chosen
  }
}
