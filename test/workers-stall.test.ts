// Stall detection with `workers: 2` end to end: the real CLI (a primary, two workers), real providers, one of them
// SIGSTOPped. The group's response times are the proxy's, not one worker's: a keep-alive connection stays on its
// worker, so the warm-up's one connection (the providers answer in 100 ms) gives one worker every slow sample and
// the other none; then they answer at once, and the freeze comes. One process would judge the frozen server by the
// p99 of all those samples (100 ms or more: a threshold of 2 s or more); so must both workers, the one whose own
// samples are only fast ones too (by itself it would suspect at the floor, 300 ms, or 20 times the largest of its few samples).
import t from 'tap'
import { join } from 'node:path'
import { Agent } from 'undici'
import { get, spawnProvider, type Reply } from './helpers/index.js'
import { startCli } from './helpers/cli.js'
import { twoWorkersOver } from './helpers/workers.js'
import { control } from './helpers/health.js'
import { tempDir, until, writeConfig } from './helpers/config-file.js'

interface Status {
  stall?: { upstream: string; p99Ms: number; thresholdMs: number; samples: number }[]
  workers: { workers: { serving: boolean; version: number }[]; version: number }
}

const DELAY = 100
const FACTOR = 20
const FLOOR = 300
const WARM = 40

const [p0, p1] = await Promise.all([spawnProvider(t, 'p0'), spawnProvider(t, 'p1')])
await Promise.all([control(p0, `delay=${DELAY}`), control(p1, `delay=${DELAY}`)])
const dir = tempDir(t)
const file = join(dir, 'vigil.json')
writeConfig(file, twoWorkersOver([p0.address, p1.address], { passive: { stall: { factor: FACTOR, floor: `${FLOOR}ms` }, recoveryProbe: false }, timeouts: { response: '30s' } }))
const cli = startCli(t, ['start', '-c', file])
await until(() => cli.lines.some((l) => l['msg'] === 'vigil started'), 'the cluster to start')
const started = cli.lines.find((l) => l['msg'] === 'vigil started') as { listeners: string[]; admin: string }
const url = `http://${started.listeners[0] as string}`
const status = async (): Promise<Status> => JSON.parse((await get(`http://${started.admin}/status?format=json`)).body) as Status

t.test("both workers judge a frozen server by the proxy's p99, the one whose own samples are fast too", async (t) => {
  // Every sample on one worker: one connection, one request at a time.
  const one = new Agent({ connections: 1, keepAliveTimeout: 60_000 })
  t.teardown(() => one.close())
  let ok = 0
  for (let i = 0; i < WARM; i++) if ((await get(`${url}/warm`, { dispatcher: one })).status === 200) ok++
  t.equal(ok, WARM, 'the warm-up is answered')

  // The primary holds warm-up samples (any of them is 100 ms or more), and both workers applied the state
  // version that carries their p99.
  await until(async () => {
    const s = await status()
    const api = s.stall?.find((r) => r.upstream === 'api')
    return api !== undefined && api.samples > 0 && s.workers.workers.length === 2 && s.workers.workers.every((w) => w.serving && w.version === s.workers.version)
  }, "the warm-up's p99 at the primary and in both workers")
  const api = (await status()).stall?.find((r) => r.upstream === 'api')
  t.ok(api !== undefined && api.p99Ms >= DELAY, `the proxy's p99 (${api?.p99Ms} ms) is one of the warm-up's response times`)
  t.equal(api?.thresholdMs, Math.max(FLOOR, FACTOR * (api?.p99Ms ?? 0)), 'threshold = max(floor, factor x p99)')

  await Promise.all([control(p0, 'delay=0'), control(p1, 'delay=0')])
  const before = cli.lines.length
  p0.signal('SIGSTOP')
  t.teardown(() => p0.signal('SIGCONT'))
  // Fresh connections, handed to the workers in turn: each worker gets some, and some of each wait on p0.
  const agents = Array.from({ length: 8 }, () => new Agent({ keepAliveTimeout: 1_000 }))
  t.teardown(() => Promise.all(agents.map((a) => a.close())))
  const replies: Reply[] = []
  const burst = agents.flatMap((a) => [0, 1].map(() => get(`${url}/frozen`, { dispatcher: a }).then((r) => replies.push(r))))
  const suspected = (l: Record<string, unknown>): boolean => l['msg'] === 'server suspect' && l['server'] === p0.address
  await until(() => cli.lines.slice(before).some(suspected), 'the frozen server to be suspected')
  const suspect = cli.lines.slice(before).find(suspected) as { evidence: { threshold: number; p99: number; waiting: number } }
  t.ok(suspect.evidence.p99 >= DELAY, `the worker that suspected it judged by the proxy's p99 (${suspect.evidence.p99} ms), the warm-up's, not by its own samples`)
  t.equal(suspect.evidence.threshold, Math.max(FLOOR, FACTOR * suspect.evidence.p99), 'and its threshold')
  t.ok(suspect.evidence.threshold >= FACTOR * DELAY, `over the floor: ${suspect.evidence.threshold} ms`)
  t.ok(suspect.evidence.waiting > suspect.evidence.threshold, 'suspected once its oldest request outwaited the threshold')

  // The requests waiting on it were raced on p1 (stall re-dispatch): every one answered while p0 is still stopped.
  await Promise.all(burst)
  t.equal(replies.length, 16)
  t.ok(
    replies.every((r) => r.status === 200 && r.headers['x-provider'] === 'p1'),
    'every request answered by p1',
  )
})
