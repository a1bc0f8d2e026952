// Deterministic subsetting (src/upstream/subset.ts): balance, determinism and stability, over a fleet of 1000
// consumers and 100 servers with subsets of 10.
import t from 'tap'
import { subset } from '../src/upstream/subset.js'
import { fleetSubsets, subsetChange } from '../bench/lib/subsets.js'

const N = 1000
const M = 100
const SIZE = 10
const servers = Array.from({ length: M }, (_, i) => `10.0.${i >> 8}.${i & 255}:8080`)
const base = fleetSubsets(servers, N, SIZE)

/** How many subsets each server is in. */
function perServer(subsets: readonly (readonly string[])[]): number[] {
  const n = new Map<string, number>()
  for (const s of subsets) for (const a of s) n.set(a, (n.get(a) ?? 0) + 1)
  return [...n.values()]
}

t.test('balance: every server is in size × consumers / servers subsets, ± 1', async (t) => {
  for (const [m, n, size] of [[M, N, SIZE], [100, 1000, 7], [37, 1000, 5], [500, 10_000, 20], [100, 33, 10]] as const) {
    const sv = servers.concat(Array.from({ length: Math.max(0, m - M) }, (_, i) => `10.1.${i >> 8}.${i & 255}:80`)).slice(0, m)
    const subs = fleetSubsets(sv, n, size)
    const counts = perServer(subs)
    t.equal(counts.length, m, `${n} × ${m} × ${size}: every server has consumers`)
    t.ok(Math.max(...counts) - Math.min(...counts) <= 1, `${n} × ${m} × ${size}: max ${Math.max(...counts)}, min ${Math.min(...counts)}`)
    t.ok(subs.every((s) => s.length === size && new Set(s).size === size), 'each subset has `size` distinct servers')
  }
})

t.test('a fleet too small to reach every server with `size` grows the subsets so none is left out', async (t) => {
  const subs = fleetSubsets(servers, 4, SIZE)
  t.ok(subs.every((s) => s.length === 25), 'ceil(100 / 4) servers each')
  t.equal(new Set(subs.flat()).size, M, 'together they cover every server')
  t.same(subset(servers, { index: 0, count: 1 }, SIZE).sort(), [...servers].sort(), 'a single consumer uses all servers')
  t.same(subset(servers.slice(0, 5), { index: 3, count: 9 }, SIZE).sort(), servers.slice(0, 5).sort(), 'size ≥ servers: all of them')
})

t.test('determinism: the subset depends only on the set of addresses, the consumer and the size', async (t) => {
  const shuffled = [...servers].reverse()
  for (const index of [0, 1, 499, 999]) {
    const c = { index, count: N }
    t.same(subset(shuffled, c, SIZE), subset(servers, c, SIZE), `consumer ${index}: list order does not matter`)
    t.same(subset([...servers, servers[3] as string], c, SIZE), subset(servers, c, SIZE), 'a duplicate address counts once')
  }
  t.same(fleetSubsets(servers, N, SIZE), base, 'a second computation gives the same subsets')
  t.not(subset(servers, { index: 0, count: N }, SIZE).join(), subset(servers, { index: 500, count: N }, SIZE).join(), 'consumers differ')
})

t.test('stability: one server added, removed or replaced', async (t) => {
  const added = subsetChange(base, fleetSubsets([...servers, '10.9.9.9:8080'], N, SIZE))
  const removed = subsetChange(base, fleetSubsets(servers.filter((_, i) => i !== 37), N, SIZE))
  const replaced = subsetChange(base, fleetSubsets(servers.map((s, i) => (i === 37 ? '10.9.9.9:8080' : s)), N, SIZE))
  t.comment(`consumers whose subset changed (of ${N}): added ${added.consumers}, removed ${removed.consumers}, replaced ${replaced.consumers}`)
  for (const [what, c] of [['added', added], ['removed', removed], ['replaced', replaced]] as const) {
    t.ok(c.maxMembers <= 2, `${what}: no subset changes by more than 2 members (${c.maxMembers})`)
    t.ok(c.consumers < N * 0.7, `${what}: ${c.consumers} of ${N} consumers see a change`)
  }
  // Every consumer that had the removed server lost exactly it, and kept the other 9.
  const gone = servers[37] as string
  const after = fleetSubsets(servers.filter((_, i) => i !== 37), N, SIZE)
  const had = base.flatMap((s, i) => (s.includes(gone) ? [i] : []))
  t.equal(had.length, SIZE * N / M, 'the removed server had its share of consumers')
  t.same(had.filter((i) => subsetChange([base[i] as string[]], [after[i] as string[]]).moves !== 1), [], `each of them loses only ${gone}`)
})

t.test('stability: consumers joining and leaving', async (t) => {
  const joined = subsetChange(base, fleetSubsets(servers, N + 1, SIZE).slice(0, N))
  const left = fleetSubsets(servers, N - 1, SIZE)
  // Consumer 500 leaves: the ones after it move down one index and should keep their subsets.
  const leftChange = subsetChange(base.filter((_, i) => i !== 500), left)
  t.comment(`consumers whose subset changed: one joined ${joined.consumers}, one left ${leftChange.consumers}`)
  t.ok(joined.maxMembers <= 1 && leftChange.maxMembers <= 1, 'no subset changes by more than one member')
  t.ok(joined.consumers <= M, `a consumer joining changes ${joined.consumers} subsets (≤ ${M})`)
  t.ok(leftChange.consumers <= M, `a consumer leaving changes ${leftChange.consumers} subsets (≤ ${M})`)
})

t.test('bad arguments are a RangeError naming the value', async (t) => {
  t.throws(() => subset(servers, { index: 5, count: 5 }, SIZE), /index 5 is not in \[0, 5\)/)
  t.throws(() => subset(servers, { index: 0, count: 0 }, SIZE), /count 0/)
  t.throws(() => subset(servers, { index: 0, count: 3 }, 0), /size 0/)
  t.same(subset([], { index: 0, count: 3 }, 2), [], 'no servers: an empty subset')
})
