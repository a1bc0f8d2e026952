// A stall suspicion with `workers: 2` and re-dispatch off: the real CLI (a primary, two workers), real providers,
// one SIGSTOPped. The workers hold the requests, so only they can tell that none waits any more; the primary, whose
// own wait lists are always empty, must keep the suspicion a worker reported until a worker clears it, as one
// process keeps it while its requests still wait. New requests meanwhile all go to the other provider. A worker
// with none waiting does not clear it for the others; once none waits on any worker, the primary clears it.
import t, { type Test } from 'tap'
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
const { cli, listeners, status, converged, reported } = await startCluster<Status>(
  t,
  file,
  twoWorkersOver([p0.address, p1.address], { retry: { tries: 1 }, passive: { stall: { floor: '200ms', redispatch: false }, recoveryProbe: false }, timeouts: { response: '60s' } }),
)
const url = `http://${listeners[0] as string}`
const events = (event: string, from = 0): Record<string, unknown>[] => cli.lines.slice(from).filter((l) => l['event'] === event && l['server'] === p0.address)
const p0Passive = async (): Promise<string | undefined> => (await status()).servers.server.find((s) => s.name === p0.address)?.passive

/** A client on a connection of its own (so on either worker), closed at `t`'s end. */
function fresh(t: Test): Agent {
  const a = new Agent({ keepAliveTimeout: 1_000 })
  t.teardown(() => a.destroy())
  return a
}

/** `n` requests one after another, each on a fresh connection (so through either worker): p1 answers them all. */
async function allToP1(t: Test, n: number, what: string): Promise<void> {
  const later: Reply[] = []
  for (let i = 0; i < n; i++) later.push(await get(`${url}/later`, { dispatcher: fresh(t) }))
  t.same(
    later.map((r) => r.headers['x-provider']),
    later.map(() => 'p1'),
    what,
  )
}

t.test('the primary keeps a suspicion its workers reported while their requests still wait on the frozen server', async (t) => {
  for (let i = 0; i < 20; i++) t.equal((await get(`${url}/warm`, { dispatcher: fresh(t) })).status, 200)

  p0.signal('SIGSTOP')
  t.teardown(() => p0.signal('SIGCONT'))
  // Fresh connections go to the workers in turn, and round robin sends some of each worker's to p0: they wait.
  const waiting = Array.from({ length: 8 }, () => get(`${url}/frozen`, { dispatcher: fresh(t) }))
  await until(() => events('suspect').length > 0, 'the frozen server to be suspected')
  // The worker that suspected it says so at once; the other takes it from the primary a moment later. Both hold it
  // before the later requests go out (each goes to either worker).
  await until(async () => (await p0Passive()) === 'suspect' && (await converged()), 'every worker to hold the suspicion')
  // Sequential requests on fresh connections, through both workers, while the first ones still wait on p0.
  await allToP1(t, 12, 'every request sent after the suspicion is answered by the other provider')
  t.same(events('cleared'), [], 'no one cleared the suspicion while requests still wait on the frozen server')
  p0.signal('SIGCONT')
  const answered = await Promise.all(waiting)
  t.ok(answered.every((r) => r.status === 200), 'the waiting requests are answered once it thaws')
  await until(() => events('cleared').length > 0, 'the suspicion to clear once it answered')
})

t.test('a worker with no request waiting on the frozen server leaves the suspicion to the worker whose requests wait', async (t) => {
  const from = cli.lines.length
  // One connection: one worker holds the waiting request, the other has none on p0.
  const held = new Agent({ connections: 1, keepAliveTimeout: 10_000 })
  t.teardown(() => held.destroy())
  p0.signal('SIGSTOP')
  t.teardown(() => p0.signal('SIGCONT'))
  // Round robin sends one of the first two requests to p0: that one waits until p0 is suspected.
  let waiting: Promise<unknown> | undefined
  for (let i = 0; i < 2 && waiting === undefined; i++) {
    const reply = get(`${url}/held`, { dispatcher: held }).catch(() => undefined)
    let answered = false
    void reply.then(() => (answered = true))
    await until(() => answered || events('suspect', from).length > 0, 'an answer, or the frozen server to be suspected')
    if (!answered) waiting = reply
  }
  t.ok(waiting !== undefined, 'a request waits on the frozen server')
  await until(async () => (await p0Passive()) === 'suspect' && (await converged()), 'every worker to hold the suspicion')
  // Two reports from every worker since: each has run its stall watch several times over with the suspicion.
  await reported()
  await reported()
  t.same(events('cleared', from), [], 'the worker with no request waiting on it did not clear the suspicion')
  t.equal(await p0Passive(), 'suspect', 'the frozen server is still suspect')
  await allToP1(t, 8, 'every request sent meanwhile, through either worker, is answered by the other provider')
  // The client gives up its request: nothing waits on p0 on any worker, and the primary clears it, p0 still frozen.
  await held.destroy()
  await waiting
  await until(() => events('cleared', from).length > 0, 'the suspicion to clear once nothing waits on the frozen server')
  t.same(
    events('cleared', from).map((l) => l['reason']),
    events('cleared', from).map(() => 'no request waiting any more'),
    'cleared because nothing waits on it, not as an answer',
  )
})
