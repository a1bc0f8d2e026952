// Subset balance and churn: vigil's subsetting (src/upstream/subset.ts) beside the SRE book's deterministic
// subsetting (a seeded shuffle per round, split in chunks), the same with each round ordered by a keyed hash of
// (round, address), and rendezvous hashing (each consumer's top `size` servers by hash of (index, address)).
// Pure computation, deterministic, a second or two.
//   npm run build && node dist/bench/subset-stability.js [--consumers 1000] [--servers 100] [--size 10]
import { parseArgs } from 'node:util'
import { hashString } from '../src/balance/hash.js'
import { subset } from '../src/upstream/subset.js'
import { fleetSubsets, subsetChange, type Subsetter, type SubsetChange } from './lib/subsets.js'

const { values } = parseArgs({
  options: { consumers: { type: 'string', default: '1000' }, servers: { type: 'string', default: '100' }, size: { type: 'string', default: '10' } },
})
const N = Number(values.consumers)
const M = Number(values.servers)
const SIZE = Number(values.size)

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
const rounds = (order: (servers: readonly string[], round: number) => string[]): Subsetter => (servers, { index }, size) => {
  const perRound = Math.max(1, Math.floor(servers.length / size))
  const round = Math.floor(index / perRound)
  const start = (index % perRound) * size
  return order(servers, round).slice(start, start + size)
}
const sorted = (servers: readonly string[]): string[] => [...servers].sort()
const algorithms: [string, Subsetter][] = [
  ['vigil: aperture ring, hash order', subset],
  ['SRE book: shuffled index list', rounds((s, r) => shuffled(sorted(s), r))],
  ['SRE rounds, keyed-hash order', rounds((s, r) => [...s].sort((a, b) => hashString(`${r}/${a}`) - hashString(`${r}/${b}`)))],
  ['rendezvous per consumer', (s, { index }, size) => [...s].sort((a, b) => hashString(`${index}/${b}`) - hashString(`${index}/${a}`)).slice(0, size)],
]

const servers = Array.from({ length: M }, (_, i) => `10.0.${i >> 8}.${i & 255}:8080`)
const changed = (i: number): string => `10.9.${i >> 8}.${i & 255}:8080`
/** Each change is made to TRIALS different servers (or positions); a cell is the mean over them. */
const TRIALS = 5
const victims = Array.from({ length: TRIALS }, (_, k) => Math.floor((M * (2 * k + 1)) / (2 * TRIALS)))
const mean = (changes: SubsetChange[]): SubsetChange => ({
  consumers: changes.reduce((s, c) => s + c.consumers, 0) / changes.length,
  maxMembers: Math.max(...changes.map((c) => c.maxMembers)),
  moves: changes.reduce((s, c) => s + c.moves, 0) / changes.length,
})
const cell = (c: SubsetChange): string => `${Math.round(c.consumers)} (max ${c.maxMembers})`
const lowerBound = Math.round((SIZE * N) / M)

console.log(`subsets: ${N} consumers × ${M} servers, size ${SIZE}; a change that must touch the servers' consumers touches about ${lowerBound}`)
console.log(`consumers whose subset changed, mean over ${TRIALS} servers changed (most members changed in one subset)\n`)
console.log('| algorithm | consumers per server min–max | server added | server removed | server replaced | consumer joined | consumer left |')
console.log('|---|---|---|---|---|---|---|')
for (const [name, pick] of algorithms) {
  const base = fleetSubsets(servers, N, SIZE, pick)
  const per = new Map<string, number>(servers.map((s) => [s, 0]))
  for (const s of base) for (const a of s) per.set(a, (per.get(a) ?? 0) + 1)
  const trials = (f: (k: number) => SubsetChange): SubsetChange => mean(victims.map((_, k) => f(k)))
  const added = trials((k) => subsetChange(base, fleetSubsets([...servers, changed(k)], N, SIZE, pick)))
  const removed = trials((k) => subsetChange(base, fleetSubsets(servers.filter((_, i) => i !== victims[k]), N, SIZE, pick)))
  const replaced = trials((k) => subsetChange(base, fleetSubsets(servers.map((s, i) => (i === victims[k] ? changed(100 + k) : s)), N, SIZE, pick)))
  // A consumer joins at the end of the sorted list (no index moves), or one leaves from the middle of it.
  const joined = subsetChange(base, fleetSubsets(servers, N + 1, SIZE, pick).slice(0, N))
  const gone = Math.floor(N * 0.37)
  const left = subsetChange(base.filter((_, i) => i !== gone), fleetSubsets(servers, N - 1, SIZE, pick))
  const counts = [...per.values()]
  console.log(`| ${name} | ${Math.min(...counts)}–${Math.max(...counts)} | ${cell(added)} | ${cell(removed)} | ${cell(replaced)} | ${cell(joined)} | ${cell(left)} |`)
}
