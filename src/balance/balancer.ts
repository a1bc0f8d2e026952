import type { IncomingHttpHeaders } from 'node:http'
import type { Peer } from '../upstream/peer.js'

/** What a policy may read from the request it places (an IncomingMessage fits); only `hash` reads it. */
export interface PickRequest {
  readonly headers: IncomingHttpHeaders
  readonly url?: string | undefined
  readonly socket: { readonly remoteAddress?: string | undefined }
}

/**
 * A balancing policy. `pick` chooses among `peers` (already filtered to the eligible ones of one tier,
 * primaries or backups), skipping any in `tried` (peers this request already used) and any at their
 * `maxConns` limit (see `available`). `req` is the request being placed, for policies that key on it.
 * It must not allocate on the common path: `tried` is usually empty.
 */
export interface Balancer {
  pick(peers: readonly Peer[], tried: readonly Peer[], req: PickRequest | undefined): Peer | undefined
}

/** Whether a peer may take this request: not already tried by it, and below its connection limit. */
export function available(p: Peer, tried: readonly Peer[]): boolean {
  return p.inflight < p.maxConns && (tried.length === 0 || !tried.includes(p))
}

/**
 * Weighted random choice among the available peers, skipping `not` (a peer already drawn); `total` is the
 * sum of their effective weights. Shared by random, p2c and ewma.
 */
export function weightedDraw(peers: readonly Peer[], tried: readonly Peer[], not: Peer | undefined, total: number): Peer | undefined {
  let r = Math.random() * total
  let last: Peer | undefined
  for (let i = 0; i < peers.length; i++) {
    const p = peers[i] as Peer
    if (p === not || !available(p, tried)) continue
    last = p
    r -= p.effectiveWeight
    if (r < 0) return p
  }
  // Floating-point rounding can leave r a hair above zero after the last peer.
  return last
}

/** Sum of the effective weights of the available peers (0 when none is available). */
export function availableWeight(peers: readonly Peer[], tried: readonly Peer[]): number {
  let total = 0
  for (let i = 0; i < peers.length; i++) {
    const p = peers[i] as Peer
    if (available(p, tried)) total += p.effectiveWeight
  }
  return total
}
