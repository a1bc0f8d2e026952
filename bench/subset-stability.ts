// Subset balance and churn: vigil's subsetting (src/upstream/subset.ts: rendezvous hashing with loads bounded to
// ±SLACK of the mean, keyed by consumer names) at its slack and others, beside what it was chosen over: plain
// rendezvous top-`size` per consumer name, bounded loads as a greedy pass in consumer-hash order (upper bound
// only), the previous discrete aperture ring (by index), and the SRE book's rounds (by index).
// Pure computation, deterministic; a minute or two at 10,000 × 500.
//   npm run build && node dist/bench/subset-stability.js [--consumers 1000] [--servers 100] [--size 10]
import { parseArgs } from 'node:util'
import { hashString } from '../src/balance/hash.js'
import { score, SLACK_PERCENT } from '../src/upstream/subset.js'
import { byIndex, consumerNames, perServer, subsetChange, vigilSubsets, type FleetSubsetter, type SubsetChange } from './lib/subsets.js'

const { values } = parseArgs({
  options: { consumers: { type: 'string', default: '1000' }, servers: { type: 'string', default: '100' }, size: { type: 'string', default: '10' } },
})
const N = Number(values.consumers)
const M = Number(values.servers)
const SIZE = Number(values.size)

/** Each consumer's servers by vigil's pair score, best first (a plain sort: the cpu column is for vigil's rows). */
const rankings = (servers: readonly string[]): ((consumer: string) => string[]) => {
  const hashed = servers.map((s) => ({ s, h: hashString(s) }))
  return (consumer) => {
    const h = hashString(consumer)
    return hashed.map(({ s, h: sh }) => ({ s, k: score(h, sh) })).sort((a, b) => b.k - a.k).map((x) => x.s)
  }
}

/** Rendezvous hashing: each consumer's top `size` servers by score. */
const rendezvous: FleetSubsetter = (servers, consumers, size) => {
  const ranked = rankings(servers)
  return new Map(consumers.map((c) => [c, ranked(c).slice(0, size)]))
}

/** Bounded loads, greedy: consumers in order of their hash each take their best servers not yet at ceil(c × mean). */
const greedy =
  (c: number): FleetSubsetter =>
  (servers, consumers, size) => {
    const cap = Math.ceil((c * consumers.length * size) / servers.length)
    const ranked = rankings(servers)
    const load = new Map<string, number>()
    const out = new Map<string, string[]>()
    for (const consumer of [...consumers].sort((a, b) => hashString(a) - hashString(b))) {
      const got: string[] = []
      for (const s of ranked(consumer)) {
        if (got.length === size) break
        if ((load.get(s) ?? 0) >= cap) continue
        load.set(s, (load.get(s) ?? 0) + 1)
        got.push(s)
      }
      out.set(consumer, got)
    }
    return out
  }

/** vigil's previous algorithm (Finagle's aperture, discrete): servers on a ring by address hash, consumer i takes a window. */
const aperture = byIndex((servers, index, count, size) => {
  const ring = [...servers].sort((a, b) => hashString(a) - hashString(b) || (a < b ? -1 : 1))
  const take = Math.max(size, Math.ceil(ring.length / count))
  const start = Math.floor(((2 * index + 1) * ring.length) / (2 * count))
  return Array.from({ length: Math.min(take, ring.length) }, (_, k) => ring[(start + k) % ring.length] as string)
})

/** A seeded Fisher–Yates shuffle (mulberry32), as the SRE book's `random.seed(round); random.shuffle(backends)`. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    ;[out[i], out[j]] = [out[j] as T, out[i] as T]
  }
  return out
}

/** The SRE book's algorithm over `order(round)`: consumers in rounds of M / size, each round cut into chunks. */
const rounds = (order: (servers: readonly string[], round: number) => string[]): FleetSubsetter =>
  byIndex((servers, index, _count, size) => {
    const perRound = Math.max(1, Math.floor(servers.length / size))
    const round = Math.floor(index / perRound)
    const start = (index % perRound) * size
    return order(servers, round).slice(start, start + size)
  })

const algorithms: [string, FleetSubsetter][] = [
  [`vigil: rendezvous, loads within ±${SLACK_PERCENT}%`, vigilSubsets()],
  ['the same, ±5%', vigilSubsets(5)],
  ['the same, ±15%', vigilSubsets(15)],
  ['the same, ±25%', vigilSubsets(25)],
  ['rendezvous top-size per consumer name', rendezvous],
  ['bounded loads, greedy in hash order, c 1.05', greedy(1.05)],
  ['bounded loads, greedy, c 1.1', greedy(1.1)],
  ['bounded loads, greedy, c 1.25', greedy(1.25)],
  ['previous: aperture ring, by index', aperture],
  ['SRE book: shuffled index list', rounds((s, r) => shuffled([...s].sort(), r))],
  ['SRE rounds, keyed-hash order', rounds((s, r) => [...s].sort((a, b) => hashString(`${r}/${a}`) - hashString(`${r}/${b}`)))],
]

const servers = Array.from({ length: M }, (_, i) => `10.0.${i >> 8}.${i & 255}:8080`)
const consumers = consumerNames(N)
const changed = (i: number): string => `10.9.${i >> 8}.${i & 255}:8080`
/** Each change is made to TRIALS different servers (or consumers); a cell is the mean over them. */
const TRIALS = 5
const at = (count: number, k: number): number => Math.floor((count * (2 * k + 1)) / (2 * TRIALS))
const trials = (f: (k: number) => SubsetChange): SubsetChange => {
  const changes = Array.from({ length: TRIALS }, (_, k) => f(k))
  return {
    consumers: changes.reduce((s, c) => s + c.consumers, 0) / TRIALS,
    maxMembers: Math.max(...changes.map((c) => c.maxMembers)),
    moves: changes.reduce((s, c) => s + c.moves, 0) / TRIALS,
  }
}
const cell = (c: SubsetChange): string => `${Math.round(c.consumers)} (max ${c.maxMembers})`
const mean = (SIZE * N) / M

console.log(`subsets: ${N} consumers × ${M} servers, size ${SIZE}: ${mean} consumers per server on average`)
console.log(`floors: a server added must gain ~${Math.round((SIZE * N) / (M + 1))} consumers, one removed loses ${Math.round(mean)}, one replaced both`)
console.log(`cells: consumers whose subset changed, mean over ${TRIALS} changes (most members changed in one subset); a consumer joins (a new name at ${TRIALS} places of the sorted list) or leaves (from ${TRIALS} places)`)
console.log(`cpu: one computation of the whole fleet's subsets (this process's CPU time; machine shared)\n`)
console.log('| algorithm | consumers per server min–max (of the mean) | server added | server removed | server replaced | consumer joined | consumer left | cpu ms |')
console.log('|---|---|---|---|---|---|---|---|')
const sorted = [...consumers].sort()
for (const [name, pick] of algorithms) {
  // The least of three computations: the first pays for compiling.
  let cpu = Infinity
  let base = new Map() as ReturnType<FleetSubsetter>
  for (let r = 0; r < 3; r++) {
    const c0 = process.cpuUsage()
    base = pick(servers, consumers, SIZE)
    const c1 = process.cpuUsage(c0)
    cpu = Math.min(cpu, (c1.user + c1.system) / 1000)
  }
  const added = trials((k) => subsetChange(base, pick([...servers, changed(k)], consumers, SIZE)))
  const removed = trials((k) => subsetChange(base, pick(servers.filter((_, i) => i !== at(M, k)), consumers, SIZE)))
  const replaced = trials((k) => subsetChange(base, pick(servers.map((s, i) => (i === at(M, k) ? changed(100 + k) : s)), consumers, SIZE)))
  const joined = trials((k) => subsetChange(base, pick(servers, [...consumers, `${sorted[at(N, k)] as string}-new`], SIZE)))
  const left = trials((k) => subsetChange(base, pick(servers, sorted.filter((_, i) => i !== at(N, k)), SIZE)))
  const counts = perServer(servers, base)
  const lo = Math.min(...counts)
  const hi = Math.max(...counts)
  const pct = (x: number): string => `${Math.round((100 * x) / mean)}%`
  console.log(`| ${name} | ${lo}–${hi} (${pct(lo)}–${pct(hi)}) | ${cell(added)} | ${cell(removed)} | ${cell(replaced)} | ${cell(joined)} | ${cell(left)} | ${cpu.toFixed(0)} |`)
}
