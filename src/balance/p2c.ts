// Power of two choices (nginx `random two least_conn`, Envoy least-request): draw two distinct peers by weight, send
// to the less loaded one. Nearly as good as least-conn at spreading load, without herding on one "best" peer.
// With a prepared list the two draws come from its alias table in O(1); a draw that lands on a peer this request
// may not use (tried, at maxConns) falls back to the exact draw among the available ones, three passes over the list; the first candidate drawn stays.
import { available, availableWeight, Tables, WeightTable, weightedDraw, type Balancer } from './balancer.js'
import type { Peer } from '../upstream/peer.js'

/** Draws of the second candidate before falling back: only a peer holding most of the weight needs more. */
const SECOND_DRAWS = 4

export class PowerOfTwo implements Balancer {
  private readonly tables = new Tables((peers) => new WeightTable(peers), false)

  prepare(lists: readonly (readonly Peer[])[]): void {
    this.tables.prepare(lists)
  }

  pick(peers: readonly Peer[], tried: readonly Peer[]): Peer | undefined {
    const table = peers.length > 1 ? this.tables.of(peers) : undefined
    if (table !== undefined) {
      const a = table.draw()
      if (available(a, tried)) {
        for (let i = 0; i < SECOND_DRAWS; i++) {
          const b = table.draw()
          if (b === a) continue
          if (!available(b, tried)) break
          return this.prefer(b, a) ? b : a
        }
        // The first candidate stands: drawing it again here would shift share away from heavy peers.
        return this.second(peers, tried, a, availableWeight(peers, tried))
      }
    }
    const total = availableWeight(peers, tried)
    if (total === 0) return undefined
    return this.second(peers, tried, weightedDraw(peers, tried, undefined, total) as Peer, total)
  }

  /** The second candidate drawn exactly among the available peers other than `a`, by weight. */
  private second(peers: readonly Peer[], tried: readonly Peer[], a: Peer, total: number): Peer {
    const b = weightedDraw(peers, tried, a, total - a.effectiveWeight)
    return b !== undefined && this.prefer(b, a) ? b : a
  }

  /** Whether `b` is strictly less loaded than `a`: in-flight requests per unit of weight, cross-multiplied. */
  protected prefer(b: Peer, a: Peer): boolean {
    return b.inflight * a.effectiveWeight < a.inflight * b.effectiveWeight
  }
}
