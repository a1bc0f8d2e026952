// nginx mode with `workers: 2`: the real CLI (a primary, two workers), in-process providers, every request on one
// connection (one worker). nginx's failures add up until a success that comes more than fail_timeout after the last
// failure; the primary must measure that from when the worker's success came, not when its report arrived (up to a
// batch, 500 ms, later). Each round: a failure, a success, a failure; `maxFails: 2`. One process ejects exactly when
// the success came within fail_timeout of the first failure, which this test reads off the provider's clock (a
// round too close to the limit to tell says nothing). Before, a success judged at its arrival reset the count.
import t from 'tap'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { get, httpServer } from './helpers/index.js'
import { connectionMaker, startCluster, twoWorkersOver, type ClusterRows } from './helpers/workers.js'
import { tempDir, until } from './helpers/config-file.js'

const FAIL_TIMEOUT = 1_400
/** The success is sent this long (ms) before fail_timeout after the first failure, the second failure as long after. */
const MARGIN = 200
/** Rounds whose success came this close (ms) to fail_timeout after the failure say nothing (a loaded machine's lag). */
const TOO_CLOSE = 120

let fail = false
let answeredAt = 0
const flaky = (
  await httpServer(t, (_req, res) => {
    answeredAt = Date.now()
    res.writeHead(fail ? 503 : 200).end('flaky')
  })
).address
const well = (await httpServer(t, (_req, res) => res.writeHead(200).end('well'))).address
interface Status extends ClusterRows {
  servers: { server: { name: string; ejections: number; passive: string }[] }
}
const passive = { maxFails: 2, failTimeout: FAIL_TIMEOUT, failOn: ['error' as const, 'timeout' as const, 'http_503' as const], recoveryProbe: false }
const cluster = await startCluster<Status>(t, join(tempDir(t), 'vigil.json'), twoWorkersOver([flaky, well], { balance: 'hash', hashKey: 'header:x-key', retry: { tries: 1 }, passive }))
const url = `http://${cluster.listeners[0] as string}`

t.test("a worker's success resets nginx's count only if it came fail_timeout after the last failure", async (t) => {
  let key = ''
  for (let i = 0; key === ''; i++) if ((await get(`${url}/`, { headers: { 'x-key': String(i) } })).body === 'flaky') key = String(i)
  const one = connectionMaker(t)()
  const pid = await cluster.landed(() => get(`${url}/`, { dispatcher: one, headers: { 'x-key': key } }))
  const at = (ms: number): Promise<void> => sleep(Math.max(0, ms - Date.now()))
  const send = async (failing: boolean): Promise<number> => {
    fail = failing
    await get(`${url}/`, { dispatcher: one, headers: { 'x-key': key } })
    return answeredAt
  }
  const row = async (): Promise<{ ejections: number; passive: string } | undefined> => (await cluster.status()).servers.server.find((s) => s.name === flaky)
  const ejections = async (): Promise<number> => (await row())?.ejections ?? 0
  let judged = 0
  for (let round = 0; round < 6; round++) {
    const before = await ejections()
    // Just after that worker's batch: the success below comes after the next two, and the third carries it, past
    // fail_timeout (judged at its arrival, it would reset the count; judged when it came, as one process does, not).
    await until(async () => ((await cluster.status()).workers.workers.find((w) => w.pid === pid)?.silentMs ?? 1e9) < 30, "the worker's batch")
    const first = await send(true)
    await at(first + FAIL_TIMEOUT - MARGIN)
    const success = await send(false)
    await at(first + FAIL_TIMEOUT + MARGIN)
    await send(true)
    await cluster.reported()
    const ejected = (await ejections()) > before
    const gap = success - first
    if (Math.abs(gap - FAIL_TIMEOUT) > TOO_CLOSE) {
      judged++
      t.equal(ejected, gap < FAIL_TIMEOUT, `round ${round}: the success came ${gap} ms after the failure: ${gap < FAIL_TIMEOUT ? '' : 'not '}ejected, as one process`)
    }
    // A success long after the last failure: nginx's reset of the count, or the trial that restores it.
    await sleep(FAIL_TIMEOUT + 200)
    await until(async () => {
      await send(false)
      return (await row())?.passive === 'ok'
    }, 'flaky back in rotation')
    await send(false)
  }
  t.ok(judged >= 3, `${judged} of 6 rounds far enough from the limit to judge`)
})
