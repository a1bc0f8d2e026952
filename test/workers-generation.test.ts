// `workers: 2` and generations the workers cannot apply: the real CLI forks a primary and two workers, real
// providers on loopback, a real etcd for the fleet the cluster registers in (its group's subset is placed by the
// fleet). A reload adds a listener on a port the test holds, so no worker can bind it, and moves the group to
// another server (and sets the log level); then another vigil joins the fleet, which is one more generation the
// workers cannot apply. Until the port frees up, every worker serves the generation before, all of it: its
// listeners, its server list, its subset, its log level. Each failure is said once per worker and generation,
// however often it is tried again. A worker killed meanwhile is replaced: its first replacement cannot start on
// the current generation (the port), the next starts on the one the other worker serves, whole, and is sent the
// current one again. A replacement that cannot start on any generation (its listener's key file gone) is said
// until it loops, then once that it keeps failing, and the status page shows the slot. Then every worker applies
// the current generation, and the new server alone serves.
import t, { type Test } from 'tap'
import { join } from 'node:path'
import { createServer, type Server } from 'node:net'
import { Agent } from 'undici'
import type { Config } from '../src/config/schema.js'
import { closedPort, get, startProxy } from './helpers/index.js'
import { connectionMaker, countingProviders, startClusterCli, workerThatServed } from './helpers/workers.js'
import { tempDir, until, writeConfig } from './helpers/config-file.js'
import { startEtcd } from './helpers/registries.js'
import { makeCerts } from './helpers/tls.js'
import { renameSync } from 'node:fs'

interface WorkerRow {
  worker: number
  pid: number
  generation: number
  serving: boolean
  requests: number
  restarts: number
  failedStarts: number
  startError?: string
}
interface Status {
  servers: { generation: number }
  subsets: { consumer: string; count: number }[]
  workers: { workers: WorkerRow[] }
}

const etcd = await startEtcd(t)
const fleet = { registry: { etcd: { endpoints: [etcd.endpoint], resyncInterval: '500ms', connectTimeout: '2s' } }, path: '/vigil/workers-generation', ttl: '2s' }

/** Every request a provider answered, by its name. */
const { served, named } = countingProviders(t)
const [before, after] = await Promise.all([named('before'), named('after')])

// A loopback port held by a plain TCP server: a listener no worker can bind while it is open.
const holder: Server = createServer()
await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
const held = `127.0.0.1:${(holder.address() as { port: number }).port}`
const release = (): Promise<void> => new Promise((resolve) => (holder.listening ? holder.close(() => resolve()) : resolve()))
t.teardown(release)

/** One group of one server, its subset placed by the fleet (every consumer of a one-server group uses it). */
const api = (server: string): Config['upstreams'][string] => ({ servers: [{ address: server }], subset: { size: 1 }, retry: { tries: 1 } })
// Nothing listens there: each request to /gone fails to connect, and the worker that sent it says so (a warn line).
const gone = `127.0.0.1:${await closedPort()}`
// A TLS listener in every generation: a worker reads its key file when it starts.
const certs = makeCerts(tempDir(t))
const keyAway = `${certs.keyFile}.away`
const config = (server: string, listeners: Config['listeners'] = [], level: 'info' | 'error' = 'info'): Config => ({
  workers: 2,
  listeners: [
    {
      address: '127.0.0.1:0',
      routes: [
        { pathPrefix: '/gone', upstream: 'gone' },
        { pathPrefix: '/', upstream: 'api' },
      ],
    },
    { address: '127.0.0.1:0', upstream: 'api', tls: { cert: certs.certFile, key: certs.keyFile } },
    ...listeners,
  ],
  admin: { address: '127.0.0.1:0' },
  log: { level },
  reload: { watch: false },
  upstreams: { api: api(server), gone: { servers: [{ address: gone }], retry: { tries: 1 } } },
  fleet: { ...fleet, id: 'cluster' },
})
const file = join(tempDir(t), 'vigil.json')
writeConfig(file, config(before))

const { cli, listeners, admin, primary } = await startClusterCli(t, file)
const url = `http://${listeners[0] as string}`
const status = async (): Promise<Status> => JSON.parse((await get(`${admin}/status?format=json`)).body) as Status
const agent = connectionMaker(t)

/** Keep-alive connections until each worker holds one (the cluster hands new connections to its workers in turn). */
async function onEveryWorker(): Promise<Agent[]> {
  const byPid = new Map<number, Agent>()
  await until(async () => {
    const a = agent()
    byPid.set(await workerThatServed(status, () => get(url, { dispatcher: a })), a)
    return byPid.size === 2
  }, 'a connection on each worker')
  return [...byPid.values()]
}
/** The primary's lines saying a worker could not apply `generation`. */
const couldNotApply = (generation: number): Record<string, unknown>[] =>
  cli.lines.filter((l) => l['pid'] === primary && l['msg'] === 'a worker could not apply the generation; it serves the one before, and is sent it again every few seconds' && l['generation'] === generation)
/** Every line a worker wrote about a generation it could not apply: a debug line per try, its primary says it. */
const workerRejections = (pid: number): Record<string, unknown>[] => cli.lines.filter((l) => l['pid'] === pid && l['msg'] === 'config reload rejected; the running config stays')
const workerPids = async (): Promise<number[]> => (await status()).workers.workers.map((w) => w.pid)
/** `rounds` requests on each connection and one on a new one: the bodies, which name the servers that answered. */
async function bodies(connections: readonly Agent[], rounds = 4): Promise<Set<string>> {
  const out = new Set<string>()
  for (let i = 0; i < rounds; i++) for (const a of [...connections, agent()]) out.add((await get(url, { dispatcher: a })).body)
  return out
}
const setLevel = async (t: Test, level: string): Promise<void> => {
  t.equal((await get(`${admin}/log`, { method: 'PUT', body: JSON.stringify({ level }) })).status, 200)
  // A scrape waits for every worker's answer, and a worker reads its primary's messages in order: it holds the level.
  await get(`${admin}/metrics`)
}

let connections: Agent[] = []
let first = 0

t.test('the cluster registers in its fleet, alone: both workers send to the one server', async (t) => {
  await until(async () => {
    const s = await status()
    return s.subsets[0]?.count === 1 && s.workers.workers.length === 2 && s.workers.workers.every((w) => w.serving && w.generation === s.servers.generation)
  }, 'the cluster registered, every worker on its generation')
  connections = await onEveryWorker()
  t.same([...(await bodies(connections))], ['before'])
  first = (await status()).servers.generation
})

t.test('a reload no worker can apply (a port held) that moves the group: every worker keeps the generation before, whole', async (t) => {
  // It sets the log level too: the primary takes it, a worker that cannot apply the generation does not.
  writeConfig(file, config(after, [{ address: held, upstream: 'api' }], 'error'))
  process.kill(primary, 'SIGHUP')
  await until(() => couldNotApply(first + 1).length === 2, 'both workers to fail to bind the new listener')
  t.equal((await status()).servers.generation, first + 1, 'the primary applied it (it binds no listener)')
  t.same([...(await bodies(connections))], ['before'], "every worker sends to the generation before's server")
  t.equal(served.get('after') ?? 0, 0, 'none to the server of the generation not applied')
  const pids = await workerPids()
  const refused = (pid: number): number => cli.lines.filter((l) => l['pid'] === pid && l['msg'] === 'upstream request failed' && l['peer'] === gone).length
  for (const a of connections) t.equal((await get(`${url}/gone`, { dispatcher: a }).then((r) => r.status)), 502)
  await until(() => pids.every((pid) => refused(pid) === 1), "each worker's warning, at the level of the generation it serves", 10_000)
  t.same(pids.map(refused), [1, 1], 'each worker logs at info still')
})

t.test('another vigil joins the fleet (one more generation no worker can apply): still the generation before, whole', async (t) => {
  await startProxy(t, { upstreams: { api: api(after) }, fleet: { ...fleet, id: 'other' } })
  await until(async () => (await status()).subsets[0]?.count === 2, 'the primary to see two consumers')
  const current = (await status()).servers.generation
  t.ok(current > first + 1, 'a generation of its own')
  await until(() => couldNotApply(current).length === 2, 'both workers to fail to apply it')
  t.same([...(await bodies(connections))], ['before'], "every worker sends to the generation before's server")
  t.equal(served.get('after') ?? 0, 0, 'none to the server of the generations not applied')
  t.ok((await status()).workers.workers.every((w) => w.generation === first), 'every worker serves the generation before')
})

t.test('each generation a worker cannot apply is said once, however often the primary sends it again', async (t) => {
  const pids = await workerPids()
  t.same(
    pids.map((pid) => workerRejections(pid).length),
    [0, 0],
    'no worker says it at info (its primary does)',
  )
  // At debug, each worker's try shows: wait for two more tries of each (the primary sends it every few seconds).
  await setLevel(t, 'debug')
  const since = pids.map((pid) => workerRejections(pid).length)
  await until(() => pids.every((pid, i) => workerRejections(pid).length >= (since[i] as number) + 2), 'two more tries in each worker')
  await setLevel(t, 'info')
  const current = (await status()).servers.generation
  t.equal(couldNotApply(first + 1).length, 2, 'the reload: one line per worker')
  t.equal(couldNotApply(current).length, 2, "the fleet's generation: one line per worker")
  t.same([...(await bodies(connections))], ['before'], 'and the generation before still serves')
  t.equal(served.get('after') ?? 0, 0)
})

/** The primary's lines about slot 0 with this message (each carries the pid of the worker it is about), from `since`. */
const said = (msg: string, since = 0): Record<string, unknown>[] => cli.lines.slice(since).filter((l) => l['worker'] === 0 && l['msg'] === msg)
const slot0 = async (): Promise<WorkerRow> => (await status()).workers.workers[0] as WorkerRow

t.test('a worker killed meanwhile: its replacement starts on the generation the other serves, whole, and is sent the current one again', async (t) => {
  const victim = await slot0()
  const since = cli.lines.length
  process.kill(victim.pid, 'SIGKILL')
  await until(async () => {
    const row = await slot0()
    return row.serving && row.pid !== victim.pid
  }, 'a replacement to serve')
  const current = (await status()).servers.generation
  t.equal(said('worker exited; starting a new one', since).length, 1, 'the kill')
  const failed = said('worker could not start; starting a new one', since)
  t.equal(failed.length, 1, 'one start on the current generation fails (its port is held), and is said')
  t.match(failed[0], { failedStarts: 1, code: 1, signal: null, err: /listeners\[2\]\.address/ }, 'with the reason, exit code 1')
  t.match(said('worker serving', since), [{ failedStarts: 1, generation: first, behind: current }], 'the next serves the generation before, and says so')
  t.match(await slot0(), { serving: true, generation: first, failedStarts: 0 }, 'the status page shows the generation it serves')
  t.same([...(await bodies([], 6))], ['before'], "both workers send to the generation before's server")
  t.equal(served.get('after') ?? 0, 0)
})

t.test('a replacement that cannot start on any generation (its key file gone): said until it loops, then once; shown', async (t) => {
  renameSync(certs.keyFile, keyAway)
  const victim = await slot0()
  const since = cli.lines.length
  process.kill(victim.pid, 'SIGKILL')
  // Started again at once (100 ms) while it has failed fewer than five times in a row, then every 2 s: wait for
  // one try after the fifth.
  await until(async () => (await slot0()).failedStarts >= 6, 'six starts in a row to fail', 60_000)
  t.equal(said('worker exited; starting a new one', since).length, 1, 'the kill')
  const failed = said('worker could not start; starting a new one', since)
  t.equal(failed.length, 4, 'the first four failed starts are said, each')
  t.match(failed[0], { failedStarts: 1, err: /listeners\[1\]/ }, 'with the reason: the key file')
  t.ok(
    failed.every((l) => l['code'] === 1 && l['signal'] === null),
    'each failed worker exited with code 1',
  )
  const looping = said('worker keeps failing to start; starting a new one every few seconds until one serves', since)
  t.equal(looping.length, 1, 'the fifth says it keeps failing, once; the tries after it are debug lines')
  t.match(looping[0], { failedStarts: 5, retryEveryMs: 2000, err: /listeners\[1\]/ })
  const row = await slot0()
  t.match(row, { worker: 0, serving: false, startError: /listeners\[1\]/ }, 'the status page shows the slot failing, with the reason')
  t.ok(row.restarts >= 8, `its restarts (${row.restarts}) count every try`)
  t.match((await get(`${admin}/status?format=html`)).body, /<th>failed starts<\/th>/, 'the html page too')
  t.same([...(await bodies([]))], ['before'], 'the other worker serves the generation before')
  renameSync(keyAway, certs.keyFile)
  await until(async () => (await slot0()).serving, 'the slot to serve once its key is back', 15_000)
  t.match(said('worker serving', since), [{ generation: first }], 'on the generation before: its port is still held')
})

t.test('once the port is free, every worker applies the current generation: the new server alone serves', async (t) => {
  await release()
  const current = (await status()).servers.generation
  await until(async () => (await status()).workers.workers.every((w) => w.serving && w.generation === current), 'every worker to serve it', 15_000).catch(async (e) => {
    console.error(JSON.stringify(cli.lines.slice(-15)))
    console.error(JSON.stringify(await status()))
    throw e
  })
  const back = said('worker serving').at(-1) as { failedStarts: number } | undefined
  t.ok((back?.failedStarts ?? 0) >= 6, 'the slot that kept failing says it serves again, after how many failed starts')
  t.match((await status()).workers.workers[0], { failedStarts: 0, serving: true }, 'and counts afresh')
  t.notOk('startError' in ((await status()).workers.workers[0] as WorkerRow), 'no start error any more')
  connections = await onEveryWorker()
  const beforeCount = served.get('before') ?? 0
  t.same([...(await bodies(connections))], ['after'], 'every worker sends to the new server')
  t.equal((await get(`http://${held}/`)).body, 'after', 'the new listener serves')
  t.equal(served.get('before'), beforeCount, 'the old server gets nothing more')
  const retried = (): number => cli.lines.filter((l) => l['msg'] === 'the worker applied the generation on a retry').length
  // Both serve the generation before until now (worker 0's process started on it): each applies it on a retry.
  await until(() => retried() >= 2, 'the retries to be said')
  t.equal(retried(), 2, 'the retry that worked is said once per worker')
})

t.test('SIGTERM stops the cluster', async (t) => {
  process.kill(primary, 'SIGTERM')
  t.equal(await cli.exited, 0)
})
