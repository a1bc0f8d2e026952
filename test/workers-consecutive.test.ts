// `mode: "consecutive"` with `workers: 2`: the real CLI (a primary, two workers), real providers. A server that
// fails every other request never fails `maxFails: 3` times in a row, so one process never ejects it; the primary
// must count a worker's outcomes in the order they came. Before, the failures a worker coalesced into one report
// (at most one per server per 100 ms) were replayed after all the successes between them: F S F S F S read as
// S S S F F F, an ejection.
import t from 'tap'
import { join } from 'node:path'
import { get, httpServer } from './helpers/index.js'
import { connectionMaker, startCluster, twoWorkersOver, type ClusterRows } from './helpers/workers.js'
import { tempDir } from './helpers/config-file.js'

let answered = 0
const flaky = (await httpServer(t, (_req, res) => res.writeHead(answered++ % 2 === 0 ? 503 : 200).end('flaky'))).address
const well = (await httpServer(t, (_req, res) => res.writeHead(200).end('well'))).address
const passive = { mode: 'consecutive' as const, maxFails: 3, failOn: ['error' as const, 'timeout' as const, 'http_503' as const], recoveryProbe: false }
interface Status extends ClusterRows {
  servers: { server: { name: string; ejections: number }[] }
}
const cluster = await startCluster<Status>(t, join(tempDir(t), 'vigil.json'), twoWorkersOver([flaky, well], { passive, retry: { tries: 1 } }))
const url = `http://${cluster.listeners[0] as string}`

t.test('alternating failures on one worker are never three in a row', async (t) => {
  // One connection, one request after another: all on one worker, many within one report's 100 ms.
  const one = connectionMaker(t)()
  const statuses = new Map<number, number>()
  for (let i = 0; i < 400; i++) {
    const { status } = await get(`${url}/`, { dispatcher: one })
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
  }
  await cluster.reported()
  t.ok((statuses.get(503) ?? 0) >= 50, `flaky failed every other request (${JSON.stringify([...statuses])})`)
  t.equal((await cluster.status()).servers.server.find((s) => s.name === flaky)?.ejections, 0, 'never ejected')
})
