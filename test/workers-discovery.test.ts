// `workers: 2` with a discovery group that is empty: the real CLI forks a primary and two workers, a real etcd
// serves the group's prefix, real providers on loopback. One process beside it, started from the same file
// without `workers`, is the reference: the cluster must answer what it answers. The group starts empty (the
// primary's etcd prefix has no key, no cache file), gets a provider, and is emptied again; every worker follows
// the primary's list, and none runs the source itself.
import t from 'tap'
import { join } from 'node:path'
import { Agent } from 'undici'
import { Etcd3 } from 'etcd3'
import type { Config } from '../src/config/schema.js'
import { get, httpServer, startProxy, type Reply } from './helpers/index.js'
import { startCli } from './helpers/cli.js'
import { tempDir, until, writeConfig } from './helpers/config-file.js'
import { startEtcd } from './helpers/registries.js'

interface Status {
  servers: { generation: number; server: { name: string; upstream: string }[] }
  workers: { workers: { worker: number; pid: number; generation: number; serving: boolean; requests: number }[] }
}

const etcd = await startEtcd(t)
const kv = new Etcd3({ hosts: etcd.endpoint })
t.teardown(() => kv.close())
const prefix = '/empty/'

/** Every request a provider answered, by its name. */
const served = new Map<string, number>()
const named = async (name: string): Promise<string> => {
  const { address } = await httpServer(t, (_req, res) => {
    served.set(name, (served.get(name) ?? 0) + 1)
    res.writeHead(200).end(name)
  })
  return address
}
const [found, fixed] = await Promise.all([named('found'), named('fixed')])

const upstreams: Config['upstreams'] = {
  // An empty list empties the group at once (no confirmation read), so the removal is one change to follow.
  api: { servers: [{ etcd: { endpoints: [etcd.endpoint], prefix, resyncInterval: '300ms', allowEmpty: true, maxRemovalPercent: 100 } }], retry: { tries: 1 } },
  fixed: { servers: [{ address: fixed }] },
}
const listeners: Config['listeners'] = [{ address: '127.0.0.1:0', routes: [{ pathPrefix: '/fixed', upstream: 'fixed' }, { pathPrefix: '/', upstream: 'api' }] }]

const dir = tempDir(t)
const file = join(dir, 'vigil.json')
writeConfig(file, { workers: 2, listeners, admin: { address: '127.0.0.1:0' }, reload: { watch: false }, upstreams })
const one = await startProxy(t, { listeners, upstreams })

const cli = startCli(t, ['start', '-c', file])
const start = (): Record<string, unknown> | undefined => cli.lines.find((l) => l['msg'] === 'vigil started')
await Promise.race([until(() => start() !== undefined, 'the cluster to start'), cli.exited])
const started = start() as { msg: string; listeners: string[]; admin: string } | undefined
if (started?.msg !== 'vigil started') throw new Error(`the cluster did not start with the group empty (exit code ${String(await cli.exited)}; its error is on stderr)`)
const url = `http://${started.listeners[0] as string}`
const admin = `http://${started.admin}`
const status = async (): Promise<Status> => JSON.parse((await get(`${admin}/status?format=json`)).body) as Status

const agents: Agent[] = []
t.teardown(() => Promise.all(agents.map((a) => a.destroy())))
/** A keep-alive connection on a worker other than `notPid`: the cluster hands each connection to one worker. */
async function connectionOn(notPid?: number): Promise<{ agent: Agent; pid: number }> {
  for (;;) {
    const before = new Map((await status()).workers.workers.map((w) => [w.pid, w.requests]))
    const agent = new Agent({ connections: 1, keepAliveTimeout: 60_000 })
    agents.push(agent)
    t.equal((await get(`${url}/fixed`, { dispatcher: agent })).body, 'fixed', 'the static group serves')
    let pid = 0
    await until(async () => {
      pid = (await status()).workers.workers.find((w) => w.requests > (before.get(w.pid) ?? 0))?.pid ?? 0
      return pid !== 0
    }, 'the request to be reported')
    if (pid !== notPid) return { agent, pid }
  }
}

/** The reply's parts one process and the cluster must agree on. */
const seen = (r: Reply): { status: number; body: string; error: unknown } => ({ status: r.status, body: r.body, error: r.headers['x-vigil-error'] })
/** Every worker serves the primary's current generation. */
const settled = async (generation: number): Promise<boolean> => {
  const s = await status()
  return s.servers.generation === generation && s.workers.workers.length === 2 && s.workers.workers.every((w) => w.serving && w.generation === generation)
}

let workers: { agent: Agent; pid: number }[] = []
let generation = 0

t.test('the group empty at start: every worker answers what one process answers, the static group serves', async (t) => {
  const a = await connectionOn()
  workers = [a, await connectionOn(a.pid)]
  t.not(workers[0]?.pid, workers[1]?.pid, 'two connections on two workers')
  const reference = seen(await get(`${one.url}/`))
  t.equal(reference.status, 503, 'one process answers 503 for the empty group')
  for (const w of workers) t.same(seen(await get(`${url}/`, { dispatcher: w.agent })), reference, 'and so does each worker')
  generation = (await status()).servers.generation
  t.ok(await settled(generation), 'every worker serves the primary generation')
})

t.test('a provider registered under the prefix: every worker sends to it', async (t) => {
  await kv.put(`${prefix}a`).value(found)
  await until(async () => (await status()).servers.server.some((s) => s.upstream === 'api' && s.name === found), 'the primary to list it')
  generation = (await status()).servers.generation
  await until(() => settled(generation), 'every worker to serve the generation with it')
  for (const w of workers) t.equal((await get(`${url}/`, { dispatcher: w.agent })).body, 'found', `worker ${w.pid} sends to it`)
  await until(async () => (await get(`${one.url}/`)).body === 'found', 'one process to send to it too')
})

t.test('the group emptied again: no worker sends there any more, all on the new generation', async (t) => {
  await kv.delete().key(`${prefix}a`)
  await until(async () => (await status()).servers.generation > generation, 'the primary to apply the empty list')
  generation = (await status()).servers.generation
  t.notOk((await status()).servers.server.some((s) => s.upstream === 'api'), 'the status page lists no server in the group')
  await until(() => settled(generation), 'every worker to serve the new generation')
  await until(async () => (await get(`${one.url}/`)).status === 503, 'one process to empty the group too')
  const reference = seen(await get(`${one.url}/`))
  const before = served.get('found')
  for (const w of workers) t.same(seen(await get(`${url}/`, { dispatcher: w.agent })), reference, `worker ${w.pid} answers what one process answers`)
  t.equal(served.get('found'), before, 'the removed provider got no request')
  t.ok(await settled(generation), 'no worker kept the old generation')
  t.notOk(cli.lines.some((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('a worker could not apply')), 'no worker failed a generation')
})
