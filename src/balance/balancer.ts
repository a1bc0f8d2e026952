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
 *
 * `prepare` is called with every peer list pick() will be given (the eligible tiers and the fail-open list,
 * each an immutable array) whenever one of them or an effective weight changes: policies that need a table
 * (an alias table, a hash ring) build it there, never in pick(). A list pick() was not prepared for is still
 * served, the slow way (unit tests call pick() on arrays of their own).
 */
export interface Balancer {
  pick(peers: readonly Peer[], tried: readonly Peer[], req: PickRequest | undefined): Peer | undefined
  prepare?(lists: readonly (readonly Peer[])[]): void
}

/** Per-list tables of a policy, found by the identity of the list pick() is given (at most three lists). */
export class Tables<T extends { readonly peers: readonly Peer[] }> {
  private list: readonly T[] = []

  /** `reuse`: keep a table already built for the same list (it depends on nothing that changes in place). */
  constructor(
    private readonly build: (peers: readonly Peer[]) => T,
    private readonly reuse: boolean,
  ) {}

  prepare(lists: readonly (readonly Peer[])[]): void {
    const next: T[] = []
    for (const peers of lists) {
      if (peers.length === 0 || next.some((t) => t.peers === peers)) continue
      next.push((this.reuse ? this.of(peers) : undefined) ?? this.build(peers))
    }
    this.list = next
  }

  of(peers: readonly Peer[]): T | undefined {
    const list = this.list
    for (let i = 0; i < list.length; i++) if ((list[i] as T).peers === peers) return list[i]
    return undefined
  }
}

/**
 * Walker's alias method (Vose's construction) over the peers' effective weights: a weighted draw in O(1),
 * for a table built in O(n) when the list or a weight changes.
 */
export class WeightTable {
  private readonly prob: Float64Array
  private readonly alias: Uint32Array

  constructor(readonly peers: readonly Peer[]) {
    const n = peers.length
    this.prob = new Float64Array(n)
    this.alias = new Uint32Array(n)
    let total = 0
    for (const p of peers) total += p.effectiveWeight
    // Every weight scaled so the mean is 1; a column below 1 is topped up by one above it.
    const scaled = peers.map((p) => (total > 0 ? (p.effectiveWeight * n) / total : 1))
    const small: number[] = []
    const large: number[] = []
    scaled.forEach((w, i) => (w < 1 ? small : large).push(i))
    while (small.length > 0 && large.length > 0) {
      const s = small.pop() as number
      const l = large.pop() as number
      this.prob[s] = scaled[s] as number
      this.alias[s] = l
      scaled[l] = (scaled[l] as number) + (scaled[s] as number) - 1
      ;((scaled[l] as number) < 1 ? small : large).push(l)
    }
    // What is left is 1 up to rounding.
    for (const i of large.concat(small)) this.prob[i] = 1
  }

  draw(): Peer {
    const u = Math.random() * this.peers.length
    const i = u | 0
    return this.peers[u - i < (this.prob[i] as number) ? i : (this.alias[i] as number)] as Peer
  }
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
