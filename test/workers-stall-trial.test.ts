// Stall trials with `workers: 2`: the real CLI (a primary, two workers), real providers, one SIGSTOPped then
// SIGCONTed, re-dispatch on (the default), no active checks. A suspect server nothing waits on gets one request at a
// time to find out whether it answers, as in one process, whichever worker the group's traffic arrives on. Worker
// 1 first: stall trials used to go from worker 0 alone, and with every request on worker 1 the thawed server stayed
// suspect for good (the first case timed out, the second found it still suspect).
import t from 'tap'
import { join } from 'node:path'
import { Agent } from 'undici'
import { get, spawnProvider } from './helpers/index.js'
import { startCluster, twoWorkersOver, type ClusterRows } from './helpers/workers.js'
import { tempDir, until } from './helpers/config-file.js'

const [p0, p1] = await Promise.all([spawnProvider(t, 'p0'), spawnProvider(t, 'p1')])
const file = join(tempDir(t), 'vigil.json')
const cluster = await startCluster<ClusterRows>(t, file, twoWorkersOver([p0.address, p1.address], { passive: { stall: { floor: '200ms' }, recoveryProbe: false }, timeouts: { response: '30s' } }))
const url = `http://${cluster.listeners[0] as string}`
const events = (event: string, from: number): Record<string, unknown>[] => cluster.cli.lines.slice(from).filter((l) => l['event'] === event && l['server'] === p0.address)

for (const slot of [1, 0]) {
  t.test(`a thawed server gets its stall trial when every request arrives on worker ${slot}`, async (t) => {
    const pid = cluster.workers[slot] as number
    // One connection on that worker: each request on it one after another.
    let one: Agent
    for (;;) {
      one = new Agent({ connections: 1, keepAliveTimeout: 60_000 })
      t.teardown(() => one.destroy())
      if ((await cluster.landed(() => get(`${url}/pick`, { dispatcher: one }))) === pid) break
    }
    const from = cluster.cli.lines.length
    p0.signal('SIGSTOP')
    t.teardown(() => p0.signal('SIGCONT'))
    // A request that waits on p0 is raced on p1 once p0 is suspected: every one is answered.
    const statuses: number[] = []
    const send = async (path: string): Promise<void> => {
      statuses.push((await get(`${url}${path}`, { dispatcher: one })).status)
    }
    await until(async () => {
      await send('/frozen')
      return events('suspect', from).length > 0
    }, 'the frozen server to be suspected')
    p0.signal('SIGCONT')
    await until(async () => {
      await send('/thawed')
      return events('cleared', from).length > 0
    }, 'the suspicion to clear once a stall trial finds p0 answering')
    t.same(
      statuses.filter((s) => s !== 200),
      [],
      `all ${statuses.length} requests answered`,
    )
    t.same(
      events('cleared', from).map((l) => l['reason']),
      ['responded again'],
      'cleared once, by its answer',
    )
  })
}
