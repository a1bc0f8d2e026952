// Deterministic subsetting: which `size` servers of a group one consumer of a fleet uses, so that every server
// gets close to the same number of consumers and a consumer's subset changes little when servers or consumers
// come and go. Pure: the same servers, consumer and size give the same subset on every vigil, with no I/O.
//
// The algorithm is Finagle's deterministic aperture, made discrete: the servers sit on a ring in the order of a
// hash of their address; consumer `index` of `count` starts at ring position floor((index + ½) × M / count) and takes
// the next `size` servers.
// - Balance: the consumers starting within any `size` consecutive positions are those with index in
//   [a × count / M − ½, (a + size) × count / M − ½), so every server is in floor or ceil of size × count / M subsets
//   (max − min ≤ 1 consumer).
// - Server changes: ordering by a hash of the address (not by position in the list, and not by a shuffle of
//   indexes) keeps every other server's relative order when one is added or removed, so a consumer's window
//   slides by at most one position and loses or gains at most the changed server: at most 2 members of any
//   subset change. The hash also spreads neighbouring addresses (a rack, a pod's siblings) across subsets.
// - Consumer changes: a consumer's start depends on index / count, which moves by less than 1 / count when a
//   consumer joins or leaves, so only the consumers whose start crosses a server's position (about M / count of
//   them) change, by one member.
// Why not the SRE book's rounds: shuffling an index list by a per-round seed, or even ordering each round by a
// keyed hash of (round, address), cuts the round into chunks by position, so one added server shifts every later
// chunk, and one removed server of 100 with size 10 changes the number of subsets per round (10 → 9), which
// reassigns every consumer's round and subset. Why not rendezvous hashing per consumer: stable under server
// changes, but each server's consumer count is binomial (100 ± 10 for 1000 × 100 × 10), and a consumer's subset
// is keyed by its index, which shifts for every consumer after one that leaves. The cost of the ring: a server
// change moves more consumers (each by one member) than the minimum a perfectly balanced assignment needs
// (size × count / M); figures in bench/subset-stability.ts.
import { hashString } from '../balance/hash.js'

export interface Consumer {
  /** This consumer's place among the fleet's consumers, 0 ≤ index < count. */
  index: number
  count: number
}

/** `servers` in ring order: by a hash of the address, ties by the address itself. */
export function ring(servers: readonly string[]): string[] {
  const keyed = servers.map((address) => ({ address, h: hashString(address) }))
  keyed.sort((a, b) => a.h - b.h || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0))
  return keyed.map((k) => k.address)
}

/**
 * The `size` servers (address keys) consumer `consumer` uses, in ring order. All of them when size ≥ the number
 * of servers. When the fleet is too small for `size` to reach every server (size × count < servers), each subset
 * grows to ceil(servers / count) so that no server is left without consumers.
 */
export function subset(servers: readonly string[], consumer: Consumer, size: number): string[] {
  const { index, count } = consumer
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`subset: consumer count ${count} is not a positive integer`)
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new RangeError(`subset: consumer index ${index} is not in [0, ${count})`)
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`subset: size ${size} is not a positive integer`)
  const unique = [...new Set(servers)]
  const m = unique.length
  const take = takeOf(m, count, size)
  if (take >= m) return ring(unique)
  const order = ring(unique)
  const start = startOf(index, count, m)
  const out = new Array<string>(take)
  for (let k = 0; k < take; k++) out[k] = order[(start + k) % m] as string
  return out
}

/**
 * How many of the `count` consumers' subsets of `size` hold each server: the consumers that can observe it (the
 * fleet's default quorum counts those, src/fleet/quorum.ts). O(count + servers × log servers): each consumer's
 * window adds one over a run of the ring, summed with a difference array.
 */
export function subsetUsers(servers: readonly string[], count: number, size: number): Map<string, number> {
  const order = ring([...new Set(servers)])
  const m = order.length
  const take = takeOf(m, count, size)
  if (take >= m) return new Map(order.map((a) => [a, count]))
  const diff = new Int32Array(m + 1)
  const add = (i: number, d: number): void => void (diff[i] = (diff[i] as number) + d)
  for (let index = 0; index < count; index++) {
    const start = startOf(index, count, m)
    const end = start + take
    add(start, 1)
    // A window past the ring's end wraps to its start.
    if (end <= m) add(end, -1)
    else {
      add(0, 1)
      add(end - m, -1)
    }
  }
  const users = new Map<string, number>()
  let running = 0
  for (let i = 0; i < m; i++) users.set(order[i] as string, (running += diff[i] as number))
  return users
}

/** Servers per subset: `size`, grown to ceil(servers / count) when the fleet is too small to reach every server. */
const takeOf = (m: number, count: number, size: number): number => Math.max(size, Math.ceil(m / count))

// The consumer's point is the middle of its 1/count of the ring: a point on a boundary would cross it at the
// slightest change of count.
const startOf = (index: number, count: number, m: number): number => Math.floor(((2 * index + 1) * m) / (2 * count))
