import t from 'tap'
import { RoundRobin } from '../src/balance/round-robin.js'
import { Peer } from '../src/upstream/peer.js'

const pool = { connectTimeout: 1000, responseTimeout: 1000, idleTimeout: 1000, keepAlive: 1000, connections: 1 }
const peers = (weights: number[]): Peer[] => weights.map((w, i) => new Peer({ address: `127.0.0.1:${9001 + i}`, weight: w }, pool))
const name = (p: Peer | undefined): string => 'abcdefgh'[Number(p?.port) - 9001] ?? '-'

t.test("nginx's smooth weighted sequence: weights 5,1,1 give a a b a c a a", async (t) => {
  const ps = peers([5, 1, 1])
  const rr = new RoundRobin()
  const seq = Array.from({ length: 14 }, () => name(rr.pick(ps, [])))
  t.same(seq.join(' '), 'a a b a c a a a a b a c a a')
  await Promise.all(ps.map((p) => p.close()))
})

t.test('equal weights alternate strictly', async (t) => {
  const ps = peers([1, 1, 1])
  const rr = new RoundRobin()
  t.same(Array.from({ length: 6 }, () => name(rr.pick(ps, []))).join(''), 'abcabc')
  await Promise.all(ps.map((p) => p.close()))
})

t.test('peers already tried by this request are skipped; none left gives undefined', async (t) => {
  const ps = peers([5, 1, 1])
  const rr = new RoundRobin()
  const [a, b, c] = ps as [Peer, Peer, Peer]
  t.equal(rr.pick(ps, [a]), b)
  t.equal(rr.pick(ps, [a, b]), c)
  t.equal(rr.pick(ps, [a, b, c]), undefined)
  t.equal(rr.pick([], []), undefined)
  await Promise.all(ps.map((p) => p.close()))
})
