import t from 'tap'
import { ServedCounter, type ServedBucket } from '../src/demo/served-counter.js'

t.test('counts per interval and writes each finished interval once', async (t) => {
  const out: ServedBucket[] = []
  const c = new ServedCounter(100, 1_050, (b) => out.push(b))
  c.record(1_050)
  c.record(1_099)
  t.same(out, [], 'nothing is written while the interval is open')
  c.record(1_100)
  t.same(out, [{ t: 1_000, n: 2 }])
  c.roll(1_150)
  t.same(out, [{ t: 1_000, n: 2 }], 'a roll inside the interval writes nothing')
  c.roll(1_420)
  t.same(out, [{ t: 1_000, n: 2 }, { t: 1_100, n: 1 }], 'empty intervals are skipped, zeros are implied')
  c.roll(1_530)
  t.equal(out.length, 2)
})

t.test('flush writes the open interval, and only once', async (t) => {
  const out: ServedBucket[] = []
  const c = new ServedCounter(250, 0, (b) => out.push(b))
  c.record(260)
  c.record(300)
  c.flush()
  c.flush()
  t.same(out, [{ t: 250, n: 2 }])
})
