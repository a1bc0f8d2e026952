// Deterministic subsetting: which `size` servers of a group one consumer of a fleet uses, so that every server
// gets close to the same number of consumers and a consumer's subset changes little when servers or consumers
// come and go. Pure: the same servers, consumers and size give the same assignment on every vigil, with no I/O.
//
// The algorithm is rendezvous hashing with bounded loads, keyed by the consumers' names (fleet registration ids,
// or the indexes set by hand). Every vigil computes the whole fleet's assignment:
// 1. Each pair (consumer, server) has a score, an integer mix of the two names' hashes. A consumer prefers servers
//    by score, and a server prefers consumers by the same score.
// 2. Upper bound: the stable matching in which each consumer holds `size` servers and each server at most
//    U = floor(mean × (1 + SLACK)) consumers (mean = consumers × size / servers; at least ceil(mean), and more
//    where a mean of a few consumers leaves a consumer no place), found by deferred acceptance
//    (consumers propose by score; a full server keeps its best-scoring ones). With one score per pair the stable
//    matching is unique, so it does not depend on any order of consumers.
// 3. Lower bound: each server below L = ceil(mean × (1 − SLACK)), in hash order, takes the consumers that score it
//    highest among those that can give up a server above L (each gives up its lowest-scoring one of those).
// So every server has between L and U consumers (both at least 1 when the subsets together cover every server).
// Why this, and not:
// - the previous discrete aperture (servers on a ring by address hash, consumer i of n takes a window at
//   i × servers / n): exact balance, but a window slides past every added or removed server, so one server of 100
//   changed one member of 41–46% of 1000 consumers' subsets where the floor is the ~10% that use it, and the
//   consumer's index shifts when another leaves;
// - the SRE book's rounds (a seeded shuffle per round, cut into chunks): a change of servers reshuffles most
//   rounds;
// - plain rendezvous top-`size` per consumer: the least churn there is (about the changed server's own consumers;
//   consumers joining or leaving move nobody else), but each server's consumer count is binomial (74–124 for a
//   mean of 100 at 1000 × 100 × 10);
// - Google's Ringsteady (a low-discrepancy ring by backend index): needs stable dense server indexes, which a set of
//   addresses from a registry does not have.
// Bounded loads cost a few moves beyond the floor (a full server passing a consumer on to its next choice, a
// short chain), which SLACK keeps short: bench/subset-stability.ts measures the trade (SLACK 5%, 10%, 15%, 25%) and
// its figures are in docs/health.md#subsetting.
import { fmix32, hashString } from '../balance/hash.js'

/** A consumer of the fleet: its name, and the names of every consumer of the group (its own among them). */
export interface Consumer {
  id: string
  ids: readonly string[]
}

/** Consumer `index` of `count` set by hand (`subset.id` and `subset.of`): the consumers are named by their indexes. */
export function consumerAt(index: number, count: number): Consumer {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`subset: consumer count ${count} is not a positive integer`)
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new RangeError(`subset: consumer index ${index} is not in [0, ${count})`)
  return { id: String(index), ids: Array.from({ length: count }, (_, i) => String(i)) }
}

/** How far a server's consumer count may stray from the mean, as a share of it (both ways). */
export const SLACK_PERCENT = 10

/** Consumer indexes are packed below a 32-bit score in one float64, so one numeric comparison orders both. */
const INDEX_SPACE = 2 ** 20

/** A pair's score: murmur3's finalizer over the consumer's hash and the server's (scaled by an odd constant). */
export const score = (consumer: number, server: number): number => fmix32((consumer ^ Math.imul(server, 0x9e3779b1)) >>> 0)

/** The whole fleet's subsets for one group: every vigil computes the same one. */
export class SubsetAssignment {
  /** The group's distinct servers, sorted: index j below. */
  readonly servers: readonly string[]
  /** The distinct consumer names, sorted: index i below. */
  readonly consumers: readonly string[]
  /** Servers per subset: `size`, grown to ceil(servers / consumers) when the fleet is too small to reach every server. */
  readonly take: number
  /** Consumer i's servers are chosen[i × take …], best score first. */
  private readonly chosen: Int32Array
  /** Consumers per server. */
  private readonly load: Int32Array
  private readonly serverHash: Uint32Array
  private readonly consumerHash: Uint32Array
  private readonly consumerIndex: Map<string, number>
  private readonly serverIndex: Map<string, number>
  /** Keys of one consumer's servers while ranking them. */
  private readonly scratch: Float64Array

  /** `slackPercent`: SLACK_PERCENT unless a bench compares others. */
  constructor(servers: readonly string[], consumers: readonly string[], size: number, slackPercent = SLACK_PERCENT) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`subset: size ${size} is not a positive integer`)
    this.servers = [...new Set(servers)].sort()
    this.consumers = [...new Set(consumers)].sort()
    const m = this.servers.length
    const n = this.consumers.length
    if (n === 0) throw new RangeError('subset: no consumers')
    if (n >= INDEX_SPACE) throw new RangeError(`subset: ${n} consumers is more than ${INDEX_SPACE - 1}`)
    this.serverHash = Uint32Array.from(this.servers, (s) => hashString(s))
    this.consumerHash = Uint32Array.from(this.consumers, (c) => hashString(c))
    this.consumerIndex = new Map(this.consumers.map((c, i) => [c, i]))
    this.serverIndex = new Map(this.servers.map((s, j) => [s, j]))
    this.scratch = new Float64Array(m)
    const take = (this.take = Math.min(m, Math.max(size, Math.ceil(m / n))))
    this.chosen = new Int32Array(n * take)
    this.load = new Int32Array(m)
    if (take === 0) return
    if (take === m) {
      // Everyone uses every server.
      for (let i = 0; i < n; i++) this.chosen.set(this.ranked(i), i * take)
      this.load.fill(n)
      return
    }
    const total = n * take
    let upper = Math.max(Math.ceil(total / m), Math.floor((total * (100 + slackPercent)) / (100 * m)))
    const lower = Math.min(Math.floor(total / m), Math.ceil((total * (100 - slackPercent)) / (100 * m)))
    // A consumer short of a server needs a free place at a server it does not hold yet; when the bound is so tight
    // (a small mean) that none is left, the shape needs one more place per server.
    while (!this.match(upper)) upper++
    this.raise(lower)
    // Each subset best score first: the order replacements and the status page follow.
    const row = new Float64Array(take)
    for (let i = 0; i < n; i++) {
      const h = this.consumerHash[i] as number
      for (let r = 0; r < take; r++) {
        const j = this.chosen[i * take + r] as number
        row[r] = score(h, this.serverHash[j] as number) * INDEX_SPACE + j
      }
      sortSmall(row, take)
      for (let r = 0; r < take; r++) this.chosen[i * take + r] = (row[take - 1 - r] as number) % INDEX_SPACE
    }
  }

  /** Consumer `id`'s servers, best score first. */
  subset(id: string): string[] {
    const i = this.indexOf(id)
    return Array.from(this.chosen.subarray(i * this.take, (i + 1) * this.take), (j) => this.servers[j] as string)
  }

  /** The servers outside consumer `id`'s subset, best score first: its replacements, in the order they are taken. */
  spares(id: string): string[] {
    const i = this.indexOf(id)
    const own = new Set(this.chosen.subarray(i * this.take, (i + 1) * this.take))
    return Array.from(this.ranked(i).filter((j) => !own.has(j)), (j) => this.servers[j] as string)
  }

  /** How many consumers' subsets hold `server` (those that can observe it); undefined for a server not in the group. */
  users(server: string): number | undefined {
    const j = this.serverIndex.get(server)
    return j === undefined ? undefined : this.load[j]
  }

  private indexOf(id: string): number {
    const i = this.consumerIndex.get(id)
    if (i === undefined) throw new RangeError(`subset: consumer ${JSON.stringify(id)} is not one of the ${this.consumers.length} consumers`)
    return i
  }

  /** Consumer i's score for server j, with i below it: distinct for every pair of one server. */
  private packed(i: number, j: number): number {
    return score(this.consumerHash[i] as number, this.serverHash[j] as number) * INDEX_SPACE + i
  }

  /**
   * The start of consumer i's ranking into out[at …], best first: the servers whose score is in the top `expected` /
   * servers of the 32-bit range (about `expected` of them, at most `room`). Returns how many. Scores are uniform, so
   * a threshold finds them in one pass with no heap; any count is a true prefix of ranked(i).
   */
  private rankStart(i: number, expected: number, out: Int32Array, at: number, room: number): number {
    const m = this.servers.length
    const sh = this.serverHash
    const h = this.consumerHash[i] as number
    if (4 * expected >= m) {
      // A long prefix: sorting every server costs less than sorting the many above a threshold one by one.
      const all = this.ranked(i).subarray(0, room)
      out.set(all, at)
      return all.length
    }
    const keys = this.scratch
    const threshold = Math.floor((1 - Math.min(1, expected / m)) * 2 ** 32)
    let count = 0
    for (let j = 0; j < m; j++) {
      const s = score(h, sh[j] as number)
      if (s >= threshold) keys[count++] = s * INDEX_SPACE + (INDEX_SPACE - 1 - j)
    }
    sortSmall(keys, count)
    const kept = Math.min(count, room)
    for (let r = 0; r < kept; r++) out[at + r] = INDEX_SPACE - 1 - ((keys[count - 1 - r] as number) % INDEX_SPACE)
    return kept
  }

  /** Consumer i's servers, best first (ties, which need equal 32-bit scores, by index). */
  private ranked(i: number): Int32Array {
    const m = this.servers.length
    const sh = this.serverHash
    const h = this.consumerHash[i] as number
    const keys = new Float64Array(m)
    for (let j = 0; j < m; j++) keys[j] = score(h, sh[j] as number) * INDEX_SPACE + (INDEX_SPACE - 1 - j)
    keys.sort()
    const out = new Int32Array(m)
    for (let r = 0; r < m; r++) out[r] = INDEX_SPACE - 1 - ((keys[m - 1 - r] as number) % INDEX_SPACE)
    return out
  }

  /**
   * Deferred acceptance: consumers propose to servers best score first; a server keeps at most `upper`, the best
   * scoring, and a consumer it drops proposes on. False when some consumer found no place (every server it does
   * not hold is full): nothing is kept then.
   */
  private match(upper: number): boolean {
    const n = this.consumers.length
    const m = this.servers.length
    const take = this.take
    // Each consumer's best 2 × take servers or so in prefs[i × room …] (enough for nearly all), their number in
    // listed[i]; the whole ranking of one rejected by all of them.
    const room = 4 * take
    const prefs = new Int32Array(n * room)
    const listed = new Int32Array(n)
    const longer = new Map<number, Int32Array>()
    const next = new Int32Array(n)
    const held = new Int32Array(n)
    // Per server j a min-heap of packed (score, consumer) in kept[j × upper …]: the root is the one it drops first.
    const kept = new Float64Array(m * upper)
    const load = this.load.fill(0)
    const waiting: number[] = []
    for (let i = n - 1; i >= 0; i--) {
      listed[i] = this.rankStart(i, 2 * take, prefs, i * room, room)
      waiting.push(i)
    }
    while (waiting.length > 0) {
      const i = waiting.pop() as number
      let r = next[i] as number
      let h = held[i] as number
      while (h < take) {
        let j: number
        if (r < (listed[i] as number)) j = prefs[i * room + r] as number
        else {
          let all = longer.get(i)
          if (all === undefined) longer.set(i, (all = this.ranked(i)))
          if (r === m) return false
          j = all[r] as number
        }
        r++
        const key = this.packed(i, j)
        const size = load[j] as number
        if (size < upper) {
          heapPush(kept, j * upper, size, key)
          load[j] = size + 1
          h++
        } else if ((kept[j * upper] as number) < key) {
          const dropped = heapReplace(kept, j * upper, size, key) % INDEX_SPACE
          h++
          held[dropped] = (held[dropped] as number) - 1
          waiting.push(dropped)
        }
      }
      next[i] = r
      held[i] = h
    }
    const filled = new Int32Array(n)
    for (let j = 0; j < m; j++) {
      for (let s = j * upper; s < j * upper + (load[j] as number); s++) {
        const i = (kept[s] as number) % INDEX_SPACE
        this.chosen[i * take + (filled[i] as number)] = j
        filled[i] = (filled[i] as number) + 1
      }
    }
    return true
  }

  /**
   * Every server below `lower`, in hash order, takes the consumers that score it highest among those holding a
   * server above `lower`; each gives up its lowest-scoring such server. A server at `lower` never gives one up, so
   * a server raised stays raised, and one below it always finds such a consumer (the loads sum to at least
   * servers × lower).
   */
  private raise(lower: number): void {
    const n = this.consumers.length
    const take = this.take
    const order = Array.from(this.servers, (_, j) => j).sort((a, b) => (this.serverHash[a] as number) - (this.serverHash[b] as number) || a - b)
    for (const j of order) {
      if ((this.load[j] as number) >= lower) continue
      const keys = new Float64Array(n)
      for (let i = 0; i < n; i++) keys[i] = this.packed(i, j)
      keys.sort()
      for (let r = n - 1; r >= 0 && (this.load[j] as number) < lower; r--) {
        const i = (keys[r] as number) % INDEX_SPACE
        let slot = -1
        let worst = Infinity
        for (let s = i * take; s < (i + 1) * take; s++) {
          const d = this.chosen[s] as number
          if (d === j) {
            slot = -1
            break
          }
          if ((this.load[d] as number) <= lower) continue
          const key = this.packed(i, d)
          if (key < worst) {
            worst = key
            slot = s
          }
        }
        if (slot < 0) continue
        const given = this.chosen[slot] as number
        this.load[given] = (this.load[given] as number) - 1
        this.chosen[slot] = j
        this.load[j] = (this.load[j] as number) + 1
      }
    }
  }
}

/** Consumer `consumer`'s subset of `size` of `servers` (all of them when size ≥ their number), best score first. */
export function subset(servers: readonly string[], consumer: Consumer, size: number): string[] {
  return new SubsetAssignment(servers, consumer.ids, size).subset(consumer.id)
}

/** Sorts a[0 … size) ascending: an insertion sort, for the few dozen keys of one consumer (a call to sort() costs more). */
function sortSmall(a: Float64Array, size: number): void {
  for (let i = 1; i < size; i++) {
    const v = a[i] as number
    let k = i - 1
    while (k >= 0 && (a[k] as number) > v) {
      a[k + 1] = a[k] as number
      k--
    }
    a[k + 1] = v
  }
}

/** A min-heap of `size` numbers at heap[base …]: adds `v`. */
function heapPush(heap: Float64Array, base: number, size: number, v: number): void {
  let i = size
  while (i > 0) {
    const parent = (i - 1) >> 1
    const pv = heap[base + parent] as number
    if (pv <= v) break
    heap[base + i] = pv
    i = parent
  }
  heap[base + i] = v
}

/** A min-heap of `size` numbers at heap[base …]: replaces the smallest with `v`, and returns it. */
function heapReplace(heap: Float64Array, base: number, size: number, v: number): number {
  const top = heap[base] as number
  let i = 0
  for (;;) {
    const l = 2 * i + 1
    if (l >= size) break
    const r = l + 1
    const c = r < size && (heap[base + r] as number) < (heap[base + l] as number) ? r : l
    const cv = heap[base + c] as number
    if (cv >= v) break
    heap[base + i] = cv
    i = c
  }
  heap[base + i] = v
  return top
}
