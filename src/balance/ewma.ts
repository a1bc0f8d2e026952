// Peak-EWMA (Finagle, Linkerd): power of two choices where a peer's load is its learned latency times its
// in-flight requests plus one, so a provider that slows down sheds load before it fails. Weights act through the
// weighted draw of the two candidates only: dividing the cost by weight as well would count them twice.
import { PowerOfTwo } from './p2c.js'
import type { Peer } from '../upstream/peer.js'

export class PeakEwmaBalancer extends PowerOfTwo {
  protected override prefer(b: Peer, a: Peer): boolean {
    const now = performance.now()
    return b.rtt.estimate(now) * (b.inflight + 1) < a.rtt.estimate(now) * (a.inflight + 1)
  }
}
