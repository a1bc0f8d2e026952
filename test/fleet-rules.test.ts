// Unit tests of the fleet's pure rules and its write limiter: the quorum decision, rendezvous checkers (stable
// when consumers come and go), the shared check state, writes coalesced under a rate, and "enough has been said"
// (a failure enough others report is not written again; an end only takes back a failing record).
import t from 'tap'
import pino from 'pino'
import { decide, needOf, quorumOf, worthWriting, writeMargin, type LocalTraffic, type Need } from '../src/fleet/quorum.js'
import { checkersOf, checkMajority, sharedState } from '../src/fleet/share-checks.js'
import { RecordWriter } from '../src/fleet/writer.js'
import { GroupObservations, type Observation } from '../src/fleet/observations.js'
import type { HealthEvent } from '../src/health/events.js'
import { subset, SubsetAssignment } from '../src/upstream/subset.js'
import type { Subscription } from '../src/discovery/subscription.js'
import type { RawRecord } from '../src/discovery/formats.js'

t.test('the quorum: max(2, 10%) by default; local success wins; no traffic means eject', async (t) => {
  t.same([1, 10, 20, 21, 100].map((n) => quorumOf(undefined, n)), [2, 2, 2, 3, 10])
  t.equal(quorumOf(4, 100), 4, 'a configured quorum is taken as is')
  const now = 100_000
  const reports = (...since: number[]): Observation[] =>
    since.map((at, i) => ({ observer: `o${i}`, server: 's', ejected: true, checkDown: false, event: 'ejected', reason: 'max_fails', source: 'passive', since: at, at }))
  t.equal(decide(reports(now), 2, undefined, now, 10_000), 'none', 'below the quorum nothing happens')
  t.equal(decide(reports(now, now), 2, undefined, now, 10_000), 'eject', 'never any traffic of its own')
  t.equal(decide(reports(now, now), 2, { lastAttempt: now - 20_000, lastSuccess: now - 20_000, lastFailure: 0 }, now, 10_000), 'eject', 'traffic, but not lately')
  const r = reports(now - 100, now - 50, now - 10)
  t.equal(decide(r, 2, { lastAttempt: now - 1, lastSuccess: now - 1, lastFailure: now - 500 }, now, 10_000), 'ignored', 'its own last request succeeded after the quorum formed')
  t.equal(decide(r, 2, { lastAttempt: now - 40, lastSuccess: now - 40, lastFailure: 0 }, now, 10_000), 'ignored', 'only one report is newer than its success: it answers the others')
  t.equal(decide(r, 2, { lastAttempt: now - 60, lastSuccess: now - 60, lastFailure: 0 }, now, 10_000), 'suspect', 'two reports are newer than its success: a quorum it has no answer to')
  t.equal(decide(r, 2, { lastAttempt: now - 2_000, lastSuccess: now - 2_000, lastFailure: 0 }, now, 10_000), 'suspect', 'a success from before the failure others report is no answer to it')
  t.equal(decide(r, 2, { lastAttempt: now - 1, lastSuccess: now - 5, lastFailure: now - 1 }, now, 10_000), 'suspect', 'its own last request failed')
})

t.test('the default quorum under subsetting counts the consumers whose subset holds the server', async (t) => {
  const servers = Array.from({ length: 100 }, (_, i) => `10.1.0.${i}:8080`)
  for (const [count, size] of [[1000, 10], [37, 7], [5, 30], [3, 100]] as const) {
    const consumers = Array.from({ length: count }, (_, i) => `vigil-${i}`)
    const assignment = new SubsetAssignment(servers, consumers, size)
    // The same as asking subset() for every consumer's subset.
    const brute = new Map(servers.map((s) => [s, 0]))
    for (const id of consumers) for (const s of subset(servers, { id, ids: consumers }, size)) brute.set(s, (brute.get(s) ?? 0) + 1)
    t.same(Object.fromEntries(servers.map((s) => [s, assignment.users(s)])), Object.fromEntries(brute), `${count} consumers, subsets of ${size}: the users of every server`)
  }
  // The simulation's finding: 10% of 1,000 consumers is 100, but only the ~100 whose subset holds a server can
  // report it, so the quorum of the whole fleet is never reached.
  const users = new SubsetAssignment(servers, Array.from({ length: 1000 }, (_, i) => `vigil-${i}`), 10).users(servers[0] as string) as number
  t.ok(users >= 90 && users <= 110, `subsets of 10 of 100 servers for 1,000 consumers: ${users} use it (100 ± 10%)`)
  t.equal(quorumOf(undefined, 1000), 100, 'the whole fleet: 100')
  t.equal(quorumOf(undefined, users), Math.ceil(users / 10), 'those that can observe it: about 10')
  t.equal(quorumOf(undefined, 3), 2, 'never below 2, even where only 3 consumers use a server')
  t.equal(quorumOf(7, users), 7, 'a configured quorum is taken as is')
})

t.test('rendezvous checkers: k per server, spread evenly, and only servers whose top k changed move', async (t) => {
  const consumers = Array.from({ length: 20 }, (_, i) => `vigil-${i}`)
  const servers = Array.from({ length: 500 }, (_, i) => `10.0.${Math.floor(i / 250)}.${i % 250}:8080`)
  const before = new Map(servers.map((s) => [s, checkersOf(s, consumers, 2)]))
  t.ok([...before.values()].every((c) => c.length === 2 && c[0] !== c[1]))
  const load = new Map<string, number>()
  for (const c of before.values()) for (const id of c) load.set(id, (load.get(id) ?? 0) + 1)
  const counts = [...load.values()]
  t.ok(Math.max(...counts) <= 2 * Math.min(...counts), `spread: ${Math.min(...counts)}..${Math.max(...counts)} servers per consumer`)
  // A consumer leaves: only the servers it checked get a new checker, the others keep theirs.
  const gone = 'vigil-7'
  const after = consumers.filter((c) => c !== gone)
  let moved = 0
  for (const s of servers) {
    const was = before.get(s) as string[]
    const now = checkersOf(s, after, 2)
    if (!was.includes(gone)) t.same(now, was)
    else moved++
  }
  t.equal(moved, load.get(gone), 'exactly the servers it checked moved')
})

t.test('the shared check state: a strict majority of the k checkers, at least 2; k = 1 needs local corroboration', async (t) => {
  const o = (observer: string, checkDown: boolean, at = 1_000): Observation => ({ observer, server: 's', ejected: false, checkDown, event: checkDown ? 'down' : 'up', reason: '', source: 'active', since: at, at })
  const reports = new Map([['a', o('a', true)], ['b', o('b', false)], ['c', o('c', true)], ['x', o('x', true)]])
  const state = (checkers: string[], k: number, now = 1_000, local?: LocalTraffic): string | undefined => sharedState(checkers, reports, k, now, 30_000, local, 10_000)?.state
  t.same([1, 2, 3, 4, 5].map(checkMajority), [1, 2, 2, 3, 3], 'more than half of k')
  t.equal(state(['d', 'e'], 2), undefined, 'no checker said anything: keep the state')
  // The simulation's finding: with k = 2 one partitioned checker took a healthy provider down for everyone.
  t.equal(state(['a', 'b'], 2), 'verify', 'k = 2, one of two says down: not trusted, checked here')
  t.equal(state(['a', 'c'], 2), 'down', 'k = 2, both say down')
  t.equal(state(['a', 'b', 'd'], 3), 'verify', 'k = 3, one of three')
  t.equal(state(['a', 'b', 'c'], 3), 'down', 'k = 3, two of three')
  t.equal(state(['b', 'd'], 2), 'up', 'nobody says down')
  t.equal(state(['a'], 1, 60_000), 'up', 'a report older than the window does not count')
  t.equal(state(['a'], 1), 'verify', 'k = 1 and no traffic of its own: one checker is not trusted alone')
  t.equal(state(['a'], 1, 2_000, { lastAttempt: 1_900, lastSuccess: 500, lastFailure: 1_900 }), 'down', 'k = 1 and its own last request failed: corroborated')
  t.equal(state(['a'], 1, 2_000, { lastAttempt: 1_900, lastSuccess: 1_900, lastFailure: 500 }), 'up', 'k = 1 and its own requests succeed since: local success wins')
  t.equal(state(['a', 'c'], 2, 2_000, { lastAttempt: 1_900, lastSuccess: 1_900, lastFailure: 0 }), 'up', 'local success wins over a majority too')
  t.equal(state(['a', 'c'], 2, 2_000, { lastAttempt: 900, lastSuccess: 900, lastFailure: 0 }), 'down', 'a success from before the failures is no answer to them')
})

t.test('writes: a burst of writeRate, the rest wait; a newer state of a record replaces the one waiting', async (t) => {
  const written: string[] = []
  const sub = {
    path: '/p',
    source: 'test',
    publish: async (name: string, value: string) => void written.push(`${name}=${value}`),
    withdraw: async (name: string) => void written.push(`-${name}`),
  } as unknown as Subscription<RawRecord>
  const w = new RecordWriter({ rate: 2, jitter: 0 }, pino({ level: 'silent' }))
  t.teardown(() => w.close())
  for (let i = 0; i < 6; i++) w.put(sub, `r${i}`, 'failing')
  w.put(sub, 'r5', 'ok')
  t.equal(w.status().superseded, 1, 'the older state of r5 never gets written')
  await new Promise((r) => setTimeout(r, 5))
  t.same(written, ['r0=failing', 'r1=failing'], 'the first burst is writeRate writes')
  t.equal(w.status().pending, 4)
  await new Promise((resolve) => {
    const poll = setInterval(() => w.status().pending === 0 && (clearInterval(poll), resolve(undefined)), 20)
  })
  await new Promise((r) => setImmediate(r))
  t.same(written.slice(2), ['r2=failing', 'r3=failing', 'r4=failing', 'r5=ok'], 'the rest in order, r5 with its newest state')
  t.equal(w.status().written, 6)
})

/** A subscription that keeps what is written (the writer's and the observations' side only; test/fleet.test.ts has etcd). */
function recordingSubscription(): { sub: Subscription<RawRecord>; written: string[]; list: (records: RawRecord[]) => void } {
  const written: string[] = []
  const listeners = new Set<(records: RawRecord[]) => void>()
  const sub = {
    path: '/p',
    source: 'test',
    listeners,
    publish: async (name: string, value: string) => void written.push(`${name}=${(JSON.parse(value) as Observation).event}`),
    withdraw: async (name: string) => void written.push(`-${name}`),
  } as unknown as Subscription<RawRecord>
  return { sub, written, list: (records) => listeners.forEach((l) => l(records)) }
}

t.test('enough has been said: the margin over the quorum, and what is worth writing', async (t) => {
  t.same([1, 2, 3, 4, 10, 100, 1000].map(writeMargin), [1, 1, 2, 2, 5, 50, 500], 'half the quorum, at least 1')
  t.equal(needOf(2, 2), 'more', 'quorum 2: two others are the quorum, not more')
  t.equal(needOf(3, 2), 'enough', 'quorum 2: three others are quorum + margin')
  t.equal(needOf(149, 100), 'more')
  t.equal(needOf(150, 100), 'enough', 'quorum 100: 150 others')
  const cases: [boolean, boolean, Need, boolean, string][] = [
    [true, false, 'more', true, 'a failure too few others report is written'],
    [true, false, 'enough', false, 'a failure enough others report is not'],
    [true, true, 'enough', false, 'nor is its restatement'],
    [true, false, 'report', true, "a checker's failure always is (others take their check state from it)"],
    [false, true, 'enough', true, 'an end takes back the failing record it wrote'],
    [false, false, 'more', false, 'an end with no failing record written has nothing to take back'],
    [false, false, 'report', true, "a checker's up always is"],
  ]
  for (const [failing, recorded, need, worth, why] of cases) t.equal(worthWriting(failing, recorded, need), worth, why)
})

t.test('observations: a failure held back while enough others report it, written when they are too few', async (t) => {
  const { sub, written, list } = recordingSubscription()
  const w = new RecordWriter({ rate: 100, jitter: 0 }, pino({ level: 'silent' }))
  t.teardown(() => w.close())
  const g = new GroupObservations('api', sub, 'me', w, pino({ level: 'silent' }), false)
  let need: Need = 'enough'
  g.need = () => need
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 10))
  const e = (server: string, event: string, source: 'active' | 'passive' = 'passive'): HealthEvent => ({ upstream: 'api', server, source, event, reason: 'max_fails' })
  g.transition(e('s1', 'ejected'), 1_000)
  await settle()
  t.same(written, [], 'enough others report s1: not written')
  t.equal(w.status().suppressed, 1, 'counted as suppressed')
  g.refresh(2_000, 30_000)
  list([])
  await settle()
  t.same(written, [], 'still enough: looking again writes nothing and counts nothing')
  t.equal(w.status().suppressed, 1)
  need = 'more'
  list([])
  await settle()
  t.same(written, ['s1@me=ejected'], 'too few others now, and it still sees the failure: written')
  t.equal(w.status().suppressed, 1)
  need = 'enough'
  g.refresh(20_000, 30_000)
  await settle()
  t.equal(written.length, 1, 'its restatement follows the same rule: enough others, not written')
  t.equal(w.status().suppressed, 2, 'and counted')
  g.transition(e('s1', 'restored'), 21_000)
  await settle()
  t.same(written.slice(1), ['s1@me=restored'], 'the end takes back the failing record it wrote, however many others there are')
  // A server whose failure was never written: its end has nothing to take back.
  g.transition(e('s2', 'down', 'active'), 22_000)
  g.transition(e('s2', 'up', 'active'), 22_001)
  await settle()
  t.equal(written.length, 2, 'nothing written for s2')
  t.equal(w.status().suppressed, 3, 'its down replaced by its up before its turn (superseded), and the up skipped')
  t.equal(w.status().superseded, 1)
  // A checker's word is a check report: written whatever others say.
  need = 'report'
  g.transition(e('s3', 'down', 'active'), 23_000)
  await settle()
  t.same(written.slice(2), ['s3@me=down'], "a checker's down is written")
})
