// Consistent hashing, ketama-style: every peer owns points on a 32-bit ring in proportion to its weight, and a
// request goes to the owner of the first point at or after the hash of its key. Points depend only on a peer's
// address and weight, so a peer leaving the eligible set moves only the keys it owned (about 1/N): the ring is
// rebuilt from the eligible snapshot, which is the same as walking past the points of ineligible peers. Rings are
// built in prepare(), when the snapshot changes, so a flap of one server in a large group costs the request that
// follows it nothing.
import { createHash } from 'node:crypto'
import { available, availableWeight, Tables, weightedDraw, type Balancer, type PickRequest } from './balancer.js'
import type { Peer } from '../upstream/peer.js'

export type HashKey = { kind: 'ip' } | { kind: 'path' } | { kind: 'header'; name: string } | { kind: 'cookie'; name: string }

/** `spec` has passed the schema's pattern: "ip", "path", "header:NAME" or "cookie:NAME". */
export function parseHashKey(spec: string): HashKey {
  if (spec === 'ip' || spec === 'path') return { kind: spec }
  const colon = spec.indexOf(':')
  const kind = spec.slice(0, colon)
  const name = spec.slice(colon + 1)
  if (kind === 'header') return { kind, name: name.toLowerCase() }
  if (kind === 'cookie') return { kind, name }
  throw new TypeError(`not a hash key: ${spec}`)
}

/** ketama and nginx's `hash consistent` give a server 160 points per unit of weight. */
const POINTS_PER_WEIGHT = 160
/** A ring never grows past this many points, however large the weights. */
const MAX_POINTS = 1 << 17
/** Peer indexes are packed below the point hash in one float64 (2^32 * 2^20 < 2^53), so one numeric sort orders both. */
const INDEX_SPACE = 1 << 20

export interface HashOptions {
  key: HashKey
  /** Bounded load in percent of the average (Envoy hash_balance_factor); 0 turns it off. */
  balanceFactor: number
  /** Sum of the configured weights of the group, to size the ring once for every eligible subset. */
  totalWeight: number
}

/** One ring for one eligible snapshot (an immutable array, so identity tells when to rebuild). */
class Ring {
  readonly hashes: Uint32Array
  readonly owners: Peer[]

  constructor(
    readonly peers: readonly Peer[],
    pointsPerWeight: number,
  ) {
    let count = 0
    for (const p of peers) count += p.weight * pointsPerWeight
    const packed = new Float64Array(count)
    let n = 0
    peers.forEach((p, index) => {
      for (const h of peerPoints(p.address, p.weight * pointsPerWeight)) packed[n++] = h * INDEX_SPACE + index
    })
    packed.sort()
    this.hashes = new Uint32Array(count)
    this.owners = new Array<Peer>(count)
    for (let i = 0; i < count; i++) {
      const v = packed[i] as number
      const index = v % INDEX_SPACE
      this.hashes[i] = (v - index) / INDEX_SPACE
      this.owners[i] = peers[index] as Peer
    }
  }

  /** Index of the first point at or after `h`, wrapping past the top of the ring to 0. */
  find(h: number): number {
    let lo = 0
    let hi = this.hashes.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.hashes[mid] as number) < h) lo = mid + 1
      else hi = mid
    }
    return lo === this.hashes.length ? 0 : lo
  }
}

/** ketama's points: md5 of "address-i", four 32-bit points per digest. */
function peerPoints(address: string, count: number): number[] {
  const out: number[] = []
  for (let i = 0; out.length < count; i++) {
    const digest = createHash('md5').update(`${address}-${i}`).digest()
    for (let j = 0; j < 16 && out.length < count; j += 4) out.push(digest.readUInt32LE(j))
  }
  return out
}

/** FNV-1a over the UTF-16 units of s[start, end), finished with murmur3's fmix32 so similar keys spread over the ring. */
export function hashString(s: string, start = 0, end = s.length): number {
  let h = 0x811c9dc5
  for (let i = start; i < end; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return fmix32(h)
}

/** murmur3's finalizer: a bijection of 32-bit integers in which every input bit flips about half the output bits. */
export function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** Start of the value of cookie `name` in a Cookie header, or -1; the value ends at the next ';'. */
function cookieValue(header: string, name: string): number {
  let i = 0
  while (i < header.length) {
    while (header.charCodeAt(i) === 32 /* space */) i++
    if (header.startsWith(name, i) && header.charCodeAt(i + name.length) === 61 /* = */) return i + name.length + 1
    const semi = header.indexOf(';', i)
    if (semi === -1) return -1
    i = semi + 1
  }
  return -1
}

export class ConsistentHash implements Balancer {
  private readonly pointsPerWeight: number
  /** A ring depends only on its peers' addresses and weights: a weight change comes with a new snapshot, so it is reused. */
  private readonly rings: Tables<Ring>
  /** The ring of the last unprepared list pick() was given (unit tests pass arrays of their own). */
  private unprepared: Ring | undefined

  constructor(private readonly options: HashOptions) {
    const pointsPerWeight = (this.pointsPerWeight = Math.max(1, Math.min(POINTS_PER_WEIGHT, Math.floor(MAX_POINTS / Math.max(1, options.totalWeight)))))
    this.rings = new Tables((peers) => new Ring(peers, pointsPerWeight), true)
  }

  prepare(lists: readonly (readonly Peer[])[]): void {
    this.rings.prepare(lists)
  }

  /** The hash of the request's key, or -1 when it has none (no such header or cookie). */
  keyHash(req: PickRequest): number {
    const key = this.options.key
    switch (key.kind) {
      case 'ip':
        return hashString(req.socket.remoteAddress ?? '')
      case 'path': {
        const url = req.url ?? '/'
        const q = url.indexOf('?')
        return hashString(url, 0, q === -1 ? url.length : q)
      }
      case 'header': {
        const v = req.headers[key.name]
        const s = typeof v === 'string' ? v : v?.[0]
        return s === undefined ? -1 : hashString(s)
      }
      case 'cookie': {
        const header = req.headers.cookie
        const start = header === undefined ? -1 : cookieValue(header, key.name)
        if (start === -1) return -1
        const end = (header as string).indexOf(';', start)
        return hashString(header as string, start, end === -1 ? (header as string).length : end)
      }
    }
  }

  pick(peers: readonly Peer[], tried: readonly Peer[], req: PickRequest | undefined): Peer | undefined {
    if (peers.length === 0) return undefined
    const h = req === undefined ? -1 : this.keyHash(req)
    if (h === -1) {
      // No key to be consistent about: spread such requests by weight instead of piling them on one point.
      const total = availableWeight(peers, tried)
      return total === 0 ? undefined : weightedDraw(peers, tried, undefined, total)
    }
    const ring = this.ring(peers)
    let i = ring.find(h)
    const first = ring.owners[i] as Peer
    const factor = this.options.balanceFactor
    if (available(first, tried) && (factor === 0 || this.underBound(first, peers, factor))) return first
    if (availableWeight(peers, tried) === 0) return undefined
    // Walk clockwise to the next peer that may take it; the first available one is the fallback when every
    // peer is over its load bound (only possible when tried or maxConns excludes the least loaded).
    let fallback: Peer | undefined
    for (let n = 1; n < ring.owners.length; n++) {
      if (++i === ring.owners.length) i = 0
      const p = ring.owners[i] as Peer
      if (!available(p, tried)) continue
      if (factor === 0 || this.underBound(p, peers, factor)) return p
      fallback ??= p
    }
    return fallback ?? (available(first, tried) ? first : undefined)
  }

  /**
   * Bounded load ("Consistent Hashing with Bounded Loads", Envoy hash_balance_factor): a peer may take the request
   * while its in-flight count stays under factor% of its weighted share of everyone's in-flight plus this one.
   */
  private underBound(p: Peer, peers: readonly Peer[], factor: number): boolean {
    let inflight = 1
    let weight = 0
    for (let i = 0; i < peers.length; i++) {
      const q = peers[i] as Peer
      inflight += q.inflight
      weight += q.weight
    }
    return p.inflight * weight * 100 < factor * inflight * p.weight
  }

  private ring(peers: readonly Peer[]): Ring {
    const ring = this.rings.of(peers) ?? this.unprepared
    if (ring !== undefined && ring.peers === peers) return ring
    return (this.unprepared = new Ring(peers, this.pointsPerWeight))
  }
}
