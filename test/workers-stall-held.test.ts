// A stall suspicion with `workers: 2` and re-dispatch off: the real CLI (a primary, two workers), real providers,
// one SIGSTOPped. The workers hold the requests, so only they can tell that none waits any more; the primary, whose
// own wait lists are always empty, must keep the suspicion a worker reported until a worker clears it, as one
// process keeps it while its requests still wait. New requests meanwhile all go to the other provider.
import t from 'tap'
import { join } from 'node:path'
import { Agent } from 'undici'
import { get, spawnProvider, type Reply } from './helpers/index.js'
import { startCluster, twoWorkersOver, type ClusterRows } from './helpers/workers.js'
import { tempDir, until } from './helpers/config-file.js'

interface Status extends ClusterRows {
  servers: { server: { name: string; passive: string }[] }
}
const [p0, p1] = await Promise.all([spawnProvider(t, 'p0'), spawnProvider(t, 'p1')])
const file = join(tempDir(t), 'vigil.json')
const { cli, listeners, status, converged } = await startCluster<Status>(
  t,
  file,
  twoWorkersOver([p0.address, p1.address], { retry: { tries: 1 }, passive: { stall: { floor: '200ms', redispatch: false }, recoveryProbe: false }, timeouts: { response: '60s' } }),
)
const url = `http://${listeners[0] as string}`
const events = (event: string): Record<string, unknown>[] => cli.lines.filter((l) => l['event'] === event && l['server'] === p0.address)

t.test('the primary keeps a suspicion its workers reported while their requests still wait on the frozen server', async (t) => {
  const agents: Agent[] = []
  const fresh = (): Agent => {
    const a = new Agent({ keepAliveTimeout: 1_000 })
    agents.push(a)
    return a
  }
  t.teardown(() => Promise.all(agents.map((a) => a.destroy())))
  for (let i = 0; i < 20; i++) t.equal((await get(`${url}/warm`, { dispatcher: fresh() })).status, 200)

  p0.signal('SIGSTOP')
  t.teardown(() => p0.signal('SIGCONT'))
  // Fresh connections go to the workers in turn, and round robin sends some of each worker's to p0: they wait.
  const waiting = Array.from({ length: 8 }, () => get(`${url}/frozen`, { dispatcher: fresh() }))
  await until(() => events('suspect').length > 0, 'the frozen server to be suspected')
  // The worker that suspected it says so at once; the other takes it from the primary a moment later. Both hold it
  // before the later requests go out (each goes to either worker).
  await until(async () => (await status()).servers.server.find((s) => s.name === p0.address)?.passive === 'suspect' && (await converged()), 'every worker to hold the suspicion')
  // Sequential requests on fresh connections, through both workers, while the first ones still wait on p0.
  const later: Reply[] = []
  for (let i = 0; i < 12; i++) later.push(await get(`${url}/later`, { dispatcher: fresh() }))
  t.same(
    later.map((r) => r.headers['x-provider']),
    later.map(() => 'p1'),
    'every request sent after the suspicion is answered by the other provider',
  )
  t.same(events('cleared'), [], 'no one cleared the suspicion while requests still wait on the frozen server')
  p0.signal('SIGCONT')
  const answered = await Promise.all(waiting)
  t.ok(answered.every((r) => r.status === 200), 'the waiting requests are answered once it thaws')
  await until(() => events('cleared').length > 0, 'the suspicion to clear once it answered')
})
