// An ejected server's trial request with `workers: 2`: the real CLI (a primary, two workers), real providers, the
// worker that sends the trial SIGKILLed while the trial waits on the server. In one process a trial always ends (its
// answer, its timeout, or its client gone lets another request try); here the worker that held it is gone and its
// outcome never comes, so the trial is due again, as if abandoned. Before, the primary held the server 'probing'
// for every worker for good: once it answered again, no request ever reached it.
import t from 'tap'
import type { ServerResponse } from 'node:http'
import { join } from 'node:path'
import { get, httpServer } from './helpers/index.js'
import { connectionMaker, startCluster, twoWorkersOver, type ClusterRows } from './helpers/workers.js'
import { tempDir, until } from './helpers/config-file.js'

interface Status extends ClusterRows {
  servers: { server: { name: string; passive: string }[] }
}

/** sick answers 503 ('fail'), holds every request unanswered ('hang'), or answers 200 ('ok'). */
let mode: 'fail' | 'hang' | 'ok' = 'fail'
let answered = 0
const held: ServerResponse[] = []
let holding: () => void = () => undefined
const holds = new Promise<void>((resolve) => (holding = resolve))
const sick = (
  await httpServer(t, (_req, res) => {
    if (mode === 'hang') {
      held.push(res)
      holding()
      return
    }
    if (mode === 'ok') answered++
    res.writeHead(mode === 'ok' ? 200 : 503).end('sick')
  })
).address
const well = (await httpServer(t, (_req, res) => res.writeHead(200).end('well'))).address
const passive = { maxFails: 1, failTimeout: '300ms', failOn: ['error' as const, 'timeout' as const, 'http_503' as const], recoveryProbe: false }
const cluster = await startCluster<Status>(t, join(tempDir(t), 'vigil.json'), twoWorkersOver([sick, well], { passive, retry: { tries: 1 }, timeouts: { response: '60s' } }))
const url = `http://${cluster.listeners[0] as string}`
const events = (event: string): number => cluster.cli.lines.filter((l) => l['event'] === event && l['server'] === sick).length

t.test("the trial of a worker that dies with it is due again, and the server comes back", async (t) => {
  // Every request on one connection, so on one worker: the trial is that worker's.
  const connection = connectionMaker(t)
  const one = connection()
  const pid = await cluster.landed(() => get(`${url}/`, { dispatcher: one }))
  await until(async () => {
    await get(`${url}/`, { dispatcher: one })
    return events('ejected') > 0
  }, 'sick to be ejected')
  mode = 'hang'
  // Once the ejection time is over, the next request to sick is its trial, and it waits there.
  await until(async () => {
    await Promise.race([get(`${url}/`, { dispatcher: one }).catch(() => undefined), holds])
    return held.length > 0
  }, 'the trial request to wait on sick')
  await until(() => events('trial') === 1, 'the primary to hold the trial for every worker')
  process.kill(pid, 'SIGKILL')
  mode = 'ok'
  await until(async () => (await cluster.status()).workers.workers.every((w) => w.pid !== pid && w.serving), 'a new worker in its place')
  // Any worker's requests may carry the trial now: sick answers it and is back.
  await until(async () => {
    await get(`${url}/`, { dispatcher: connection() }).catch(() => undefined)
    return answered > 0 && events('restored') > 0
  }, 'sick to answer a new trial and be restored')
  t.equal((await cluster.status()).servers.server.find((s) => s.name === sick)?.passive, 'ok', 'sick is in rotation for every worker')
  for (const res of held) res.destroy()
})
