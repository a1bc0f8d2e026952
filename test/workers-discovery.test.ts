// `workers: 2` with a discovery group that is empty: the real CLI forks a primary and two workers, a real etcd
// serves the group's prefix, real providers on loopback. One process beside it, with the same settings
// without `workers`, is the reference: the cluster must answer what it answers. The group starts empty (the
// primary's etcd prefix has no key, no cache file), gets a provider, and is emptied again; every worker follows
// the primary's list, and none runs the source itself. A second group is a DNS name (a local DNS server the test
// controls): the primary resolves it, and every worker follows its answer.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Agent } from 'undici'
import { Etcd3 } from 'etcd3'
import type { Config } from '../src/config/schema.js'
import { cliScript, get, startProxy, type Reply } from './helpers/index.js'
import { startCli } from './helpers/cli.js'
import { tempDir, until, writeConfig } from './helpers/config-file.js'
import { startEtcd } from './helpers/registries.js'
import { dnsServer } from './helpers/dns.js'
import { countingProviders } from './helpers/workers.js'

interface Status {
  servers: { generation: number; server: { name: string; upstream: string }[] }
  workers: { workers: { worker: number; pid: number; generation: number; serving: boolean; requests: number }[] }
}

const etcd = await startEtcd(t)
const kv = new Etcd3({ hosts: etcd.endpoint })
t.teardown(() => kv.close())
const prefix = '/empty/'

/** Every request a provider answered, by its name. */
const { served, named } = countingProviders(t)
const [found, fixed] = await Promise.all([named('found'), named('fixed')])

/** A provider answering `name` on `host`:`port` (port 0: any); its port. */
async function onHost(name: string, host: string, port = 0): Promise<number> {
  const server = createServer((_req, res) => res.writeHead(200).end(name))
  await new Promise<void>((resolve) => server.listen(port, host, resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  return (server.address() as AddressInfo).port
}
// One name, one port, two loopback addresses: the name's answer picks the provider.
const dnsPort = await onHost('dns-a', '127.0.0.2')
await onHost('dns-b', '127.0.0.3', dnsPort)
const dns = await dnsServer(t)
dns.zone.set('named.test', { A: [{ address: '127.0.0.2', ttl: 0 }] })
const resolver: Config['resolver'] = { servers: [dns.address], minTtl: '50ms', maxTtl: '1s', timeout: '500ms' }

const upstreams: Config['upstreams'] = {
  // An empty list empties the group at once (no confirmation read), so the removal is one change to follow.
  api: { servers: [{ etcd: { endpoints: [etcd.endpoint], prefix, resyncInterval: '300ms', allowEmpty: true, maxRemovalPercent: 100 } }], retry: { tries: 1 } },
  fixed: { servers: [{ address: fixed }] },
  byname: { servers: [{ address: `named.test:${dnsPort}`, resolve: true }], retry: { tries: 1 } },
}
const listeners: Config['listeners'] = [
  { address: '127.0.0.1:0', routes: [{ pathPrefix: '/fixed', upstream: 'fixed' }, { pathPrefix: '/dns', upstream: 'byname' }, { pathPrefix: '/', upstream: 'api' }] },
]

const dir = tempDir(t)
const file = join(dir, 'vigil.json')
const fileConfig: Config = { workers: 2, listeners, admin: { address: '127.0.0.1:0' }, reload: { watch: false }, resolver, upstreams }
writeConfig(file, fileConfig)
const one = await startProxy(t, { listeners, resolver, upstreams })

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
async function connectionOn(t: Test, notPid?: number): Promise<{ agent: Agent; pid: number }> {
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
  const a = await connectionOn(t)
  workers = [a, await connectionOn(t, a.pid)]
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

t.test('a DNS name: the primary resolves it, and when its answer changes every worker follows', async (t) => {
  for (const w of workers) t.equal((await get(`${url}/dns`, { dispatcher: w.agent })).body, 'dns-a', `worker ${w.pid} sends where the name pointed at start`)
  dns.zone.set('named.test', { A: [{ address: '127.0.0.3', ttl: 0 }] })
  const names = async (): Promise<string[]> => (await status()).servers.server.filter((s) => s.upstream === 'byname').map((s) => s.name)
  await until(async () => (await names()).join() === `127.0.0.3:${dnsPort}`, 'the primary to take the new answer')
  generation = (await status()).servers.generation
  await until(() => settled(generation), 'every worker to serve the generation with it')
  for (const w of workers) t.equal((await get(`${url}/dns`, { dispatcher: w.agent })).body, 'dns-b', `worker ${w.pid} follows the new answer`)
  await until(async () => (await get(`${one.url}/dns`)).body === 'dns-b', 'one process to follow it too')
})

t.test('a worker replaced while the group is empty serves, and answers what one process answers', async (t) => {
  const [victim, survivor] = workers as [{ agent: Agent; pid: number }, { agent: Agent; pid: number }]
  process.kill(victim.pid, 'SIGKILL')
  await until(async () => {
    const s = await status()
    return s.workers.workers.length === 2 && s.workers.workers.every((w) => w.serving && w.pid !== victim.pid && w.generation === s.servers.generation)
  }, 'a new worker in its place, on the current generation')
  const fresh = await connectionOn(t, survivor.pid)
  t.same(seen(await get(`${url}/`, { dispatcher: fresh.agent })), seen(await get(`${one.url}/`)), 'the new worker answers 503 as one process does')
  t.notOk(cli.lines.some((l) => (l['msg'] as string).startsWith('worker could not start')), 'no worker failed to start')
  workers = [survivor, fresh]
})

/** TCP connections process `pid` holds to loopback port `port` (Linux: its socket descriptors found in /proc/net/tcp). */
function connectionsTo(pid: number, port: number): number {
  const sockets = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1]
      if (inode !== undefined) sockets.add(inode)
    } catch {
      // closed while listed
    }
  }
  let n = 0
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols.length > 9 && parseInt(cols[2]?.split(':')[1] ?? '', 16) === port && sockets.has(cols[9] as string)) n++
    }
  }
  return n
}

t.test('the primary runs the source: no worker holds a connection to etcd', async (t) => {
  const primary = cli.child.pid as number
  t.ok(connectionsTo(primary, etcd.port) > 0, 'the primary is connected to etcd')
  for (const w of (await status()).workers.workers) t.equal(connectionsTo(w.pid, etcd.port), 0, `worker ${w.worker} (pid ${w.pid}) is not`)
})

/** The CLI's exit code and error output for `vigil start` of `config` (the file written at `file`). */
async function startOf(config: Config): Promise<{ code: number; stderr: string }> {
  const at = join(dir, 'rejected.json')
  writeConfig(at, config)
  return new Promise((resolve) => execFile(process.execPath, [cliScript, 'start', '-c', at], (err, _stdout, stderr) => resolve({ code: typeof err?.code === 'number' ? err.code : 0, stderr })))
}

t.test('a file that lists no server is rejected as one process rejects it: at start, and on a reload', async (t) => {
  const none: Config = { ...fileConfig, upstreams: { ...upstreams, api: { servers: [] } } }
  // `workers` last, so the two files differ in no line before it and the errors can be compared as they are.
  const { workers: _, ...single } = none
  const cluster = await startOf({ ...single, workers: 2 })
  const alone = await startOf(single)
  t.not(cluster.code, 0, 'the cluster does not start')
  t.same(cluster, alone, 'with the same code and error as one process')
  t.match(cluster.stderr, /upstreams\.api\.servers/, 'the error names the setting')

  const before = (await status()).servers.generation
  writeConfig(file, none)
  process.kill(cli.child.pid as number, 'SIGHUP')
  await until(() => cli.lines.some((l) => l['msg'] === 'config reload rejected; the running config stays'), 'the reload to be rejected')
  const rejected = cli.lines.find((l) => l['msg'] === 'config reload rejected; the running config stays') as { issues: { path: string }[] }
  t.match(rejected.issues, [{ path: 'upstreams.api.servers' }], 'naming the setting')
  t.ok(await settled(before), 'every worker keeps the generation before')
  writeConfig(file, fileConfig)
})
