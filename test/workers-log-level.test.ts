// `workers: 1` and a PUT /log that reaches the worker after a reload's generation and before the worker applied it:
// the worker ends at the level its primary ends at (the PUT's, which came last), as one process would; not at the
// reload's, which its commit would otherwise set afterwards. The worker is frozen (SIGSTOP) while the primary sends
// both, so it reads them in that order.
import t from 'tap'
import { join } from 'node:path'
import type { Config } from '../src/config/schema.js'
import { closedPort, get } from './helpers/index.js'
import { startCluster, type ClusterRows } from './helpers/workers.js'
import { tempDir, until, writeConfig } from './helpers/config-file.js'

// Nothing listens there: each request fails to connect, and the worker says so in a warn line.
const gone = `127.0.0.1:${await closedPort()}`
const config = (level: 'info' | 'error'): Config => ({
  workers: 1,
  listeners: [{ address: '127.0.0.1:0', upstream: 'gone' }],
  admin: { address: '127.0.0.1:0' },
  log: { level },
  reload: { watch: false },
  upstreams: { gone: { servers: [{ address: gone }], retry: { tries: 1 } } },
})
interface Status extends ClusterRows {
  servers: { generation: number }
  workers: { workers: (ClusterRows['workers']['workers'][number] & { generation: number })[]; version: number }
}
const file = join(tempDir(t), 'vigil.json')
const { cli, listeners, admin, primary, status } = await startCluster<Status>(t, file, config('info'))
const worker = ((await status()).workers.workers[0] as Status['workers']['workers'][number]).pid
/** The worker's warnings for requests to the closed port: written at info and debug, not at error. */
const warned = (): number => cli.lines.filter((l) => l['pid'] === worker && l['msg'] === 'upstream request failed').length

t.test('a PUT /log the worker reads after a reload it has not applied yet: the worker ends at the PUT level', async (t) => {
  const before = (await status()).servers.generation
  writeConfig(file, config('error'))
  process.kill(worker, 'SIGSTOP')
  try {
    process.kill(primary, 'SIGHUP')
    // The primary sends the generation on the turn it commits it: that is before it reads the PUT below. (Its own
    // 'config reloaded' line is at info, under the new level.)
    await until(async () => (await status()).servers.generation > before, 'the primary to apply the reload')
    t.equal((await get(`${admin}/log`, { method: 'PUT', body: JSON.stringify({ level: 'debug' }) })).status, 200)
  } finally {
    process.kill(worker, 'SIGCONT')
  }
  const current = (await status()).servers.generation
  await until(async () => (await status()).workers.workers[0]?.generation === current, 'the worker to apply the reload')
  t.match(JSON.parse((await get(`${admin}/log`)).body), { level: 'debug' }, "the primary's level: the PUT's")
  t.equal((await get(`http://${listeners[0] as string}/`)).status, 502)
  await until(() => warned() === 1, "the worker's warning: it logs at the PUT's level, not at the reload's error", 10_000)
  t.equal(warned(), 1)
})

t.test('SIGTERM stops the cluster', async (t) => {
  process.kill(primary, 'SIGTERM')
  t.equal(await cli.exited, 0)
})
