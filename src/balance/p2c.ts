// Power of two choices (nginx `random two least_conn`, Envoy least-request): draw two distinct peers by weight, send
// to the less loaded one. Nearly as good as least-conn at spreading load, without herding on one "best" peer.
import { availableWeight, weightedDraw, type Balancer } from './balancer.js'
import type { Peer } from '../upstream/peer.js'

export class PowerOfTwo implements Balancer {
  pick(peers: readonly Peer[], tried: readonly Peer[]): Peer | undefined {
    const total = availableWeight(peers, tried)
    if (total === 0) return undefined
    const a = weightedDraw(peers, tried, undefined, total) as Peer
    const b = weightedDraw(peers, tried, a, total - a.effectiveWeight)
    return b !== undefined && this.prefer(b, a) ? b : a
  }

  /** Whether `b` is strictly less loaded than `a`: in-flight requests per unit of weight, cross-multiplied. */
  protected prefer(b: Peer, a: Peer): boolean {
    return b.inflight * a.effectiveWeight < a.inflight * b.effectiveWeight
  }
}
