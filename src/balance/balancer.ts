import type { Peer } from '../upstream/peer.js'

/**
 * A balancing policy. `pick` chooses among `peers` (already filtered to the eligible ones of one tier,
 * primaries or backups), skipping any in `tried` (peers this request already used). It must not
 * allocate on the common path: `tried` is usually empty.
 */
export interface Balancer {
  pick(peers: readonly Peer[], tried: readonly Peer[]): Peer | undefined
}

export type BalancerFactory = () => Balancer
