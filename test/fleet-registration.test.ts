// Consumer registration against real registries: each vigil of a fleet registers under <path>/consumers (an etcd
// lease key, a ZooKeeper ephemeral node) and takes its { index, count } from the sorted list; a clean stop
// deletes the record at once; a vigil killed with SIGKILL loses it when its lease (or session) runs out.
import t from 'tap'
import { join } from 'node:path'
import { Etcd3 } from 'etcd3'
import type { Config } from '../src/index.js'
import { validateConfig, type ConfigError, type Vigil } from '../src/index.js'
import { httpServer, startProxy } from './helpers/index.js'
import { startCli } from './helpers/cli.js'
import { proxyConfig, tempDir, writeConfig } from './helpers/config-file.js'
import { waitFor } from './helpers/wait.js'
import { startEtcd, startZooKeeper } from './helpers/registries.js'

type FleetConfig = NonNullable<Config['fleet']>

const provider = async (tt: Parameters<typeof httpServer>[0]): Promise<string> => (await httpServer(tt, (_req, res) => res.end('ok'))).address

async function fleetOf(tt: Parameters<typeof httpServer>[0], fleet: (id: string) => FleetConfig, ids: string[]): Promise<Vigil[]> {
  const address = await provider(tt)
  const out: Vigil[] = []
  for (const id of ids) out.push((await startProxy(tt, { upstreams: { api: { servers: [{ address }] } }, fleet: fleet(id) })).vigil)
  return out
}

const view = (v: Vigil): { index: number; count: number; registered: boolean } => {
  const c = v.fleet?.consumers.view
  return { index: c?.index ?? -1, count: c?.count ?? 0, registered: c?.registered ?? false }
}

t.test('etcd', async (t) => {
  const etcd = await startEtcd(t)
  const kv = new Etcd3({ hosts: etcd.endpoint })
  t.teardown(() => kv.close())
  const registry = { etcd: { endpoints: [etcd.endpoint], resyncInterval: '500ms', connectTimeout: '2s' } }

  t.test('three vigils see one sorted list; each has its own index; a stopped one leaves at once', async (t) => {
    const fleet = (id: string): FleetConfig => ({ registry, path: '/vigil/reg1', id, ttl: '2s' })
    const vigils = await fleetOf(t, fleet, ['c', 'a', 'b'])
    await waitFor(() => vigils.every((v) => view(v).count === 3 && view(v).registered))
    t.same(vigils.map((v) => view(v).index), [2, 0, 1], 'index in the sorted list of ids')
    t.same(vigils[0]?.fleet?.consumers.view.ids, ['a', 'b', 'c'])
    const keys = await kv.getAll().prefix('/vigil/reg1/consumers/').keys()
    t.same(keys.sort(), ['/vigil/reg1/consumers/a', '/vigil/reg1/consumers/b', '/vigil/reg1/consumers/c'])
    // Changes reach subscribers through the update queue, in order.
    const seen: number[] = []
    vigils[0]?.fleet?.consumers.subscribe((v) => void seen.push(v.count))
    await vigils[1]?.stop(0)
    await waitFor(() => view(vigils[0] as Vigil).count === 2)
    await vigils[0]?.updates.idle()
    t.same(seen, [2], 'the subscriber heard the change once')
    t.same(view(vigils[0] as Vigil), { index: 1, count: 2, registered: true }, 'c moves to index 1 of 2')
    t.equal((await kv.get('/vigil/reg1/consumers/a').string()), null, 'the stopped vigil revoked its lease: its key is gone at once')
  })

  t.test('a vigil killed with SIGKILL leaves when its lease runs out', async (t) => {
    const dir = tempDir(t)
    const address = await provider(t)
    const file = join(dir, 'vigil.json')
    writeConfig(file, proxyConfig([address], { fleet: { registry, path: '/vigil/reg2', id: 'killed', ttl: '2s' } }))
    const cli = startCli(t, ['start', '--config', file])
    const [survivor] = await fleetOf(t, (id) => ({ registry, path: '/vigil/reg2', id, ttl: '2s' }), ['survivor'])
    await waitFor(() => view(survivor as Vigil).count === 2, 20_000)
    process.kill(-(cli.child.pid as number), 'SIGKILL')
    await cli.exited
    t.not(await kv.get('/vigil/reg2/consumers/killed').string(), null, 'the key outlives the kill (its lease has not run out yet)')
    await waitFor(() => view(survivor as Vigil).count === 1, 20_000)
    t.equal(await kv.get('/vigil/reg2/consumers/killed').string(), null, 'etcd deleted it with the lease')
  })

  t.test('the registry away at start: the vigil starts as a fleet of one and registers when it answers', async (t) => {
    const [v] = await fleetOf(t, (id) => ({ registry: { etcd: { endpoints: ['http://127.0.0.1:1'], connectTimeout: '300ms' } }, path: '/vigil/reg3', id }), ['alone'])
    t.same(view(v as Vigil), { index: 0, count: 1, registered: false })
  })
})

t.test('zookeeper', async (t) => {
  const { server, admin } = await startZooKeeper(t)
  const registry = { zookeeper: { servers: server.connect, sessionTimeout: '4s', resyncInterval: '500ms', connectTimeout: '5s' } }

  t.test('ephemeral nodes under <path>/consumers; a stopped vigil leaves at once', async (t) => {
    const vigils = await fleetOf(t, (id) => ({ registry, path: '/vigil/zreg1', id }), ['b', 'a'])
    await waitFor(() => vigils.every((v) => view(v).count === 2 && view(v).registered), 20_000)
    t.same(vigils.map((v) => view(v).index), [1, 0])
    t.same((await admin.children('/vigil/zreg1/consumers')).sort(), ['a', 'b'])
    await vigils[1]?.stop(0)
    await waitFor(() => view(vigils[0] as Vigil).count === 1, 20_000)
    t.same(view(vigils[0] as Vigil), { index: 0, count: 1, registered: true })
  })

  t.test('shared observations through ZooKeeper: a quorum of two ejects a server at a vigil with no traffic of its own', async (t) => {
    const good = await provider(t)
    const bad = (await httpServer(t, (req, res) => res.writeHead(req.url === '/healthz' ? 503 : 200).end())).address
    const checked = { servers: [{ address: good }, { address: bad }], passive: { maxFails: 1, failTimeout: '1h', recoveryProbe: false }, active: { type: 'http' as const, interval: '200ms', fall: 1, rise: 1, http: { path: '/healthz' } } }
    const fleet = (id: string): FleetConfig => ({ registry, path: '/vigil/zobs', id, quorum: 2, writeJitter: '20ms' })
    for (const id of ['a', 'b']) await startProxy(t, { upstreams: { api: checked }, fleet: fleet(id) })
    const { vigil: c } = await startProxy(t, { upstreams: { api: { ...checked, active: undefined } }, fleet: fleet('c') })
    const peer = (): { passive?: { state: string; ejection(): { reason: string } | undefined } | undefined } | undefined => c.upstreams.get('api')?.find(bad)
    await waitFor(() => peer()?.passive?.state === 'ejected', 20_000)
    t.equal(peer()?.passive?.ejection()?.reason, 'fleet_quorum')
    t.same((await admin.children('/vigil/zobs/observations/api')).sort(), [`${encodeURIComponent(bad)}@a`, `${encodeURIComponent(bad)}@b`], 'one ephemeral node per observer')
  })

  t.test('enough has been said through ZooKeeper: a fourth observer of a failure three report writes no node until one leaves', async (t) => {
    let failing = false
    // a, b and c check /healthz (always 503); d checks /late, which fails once the test says so.
    const bad = (await httpServer(t, (req, res) => res.writeHead(req.url === '/healthz' || (req.url === '/late' && failing) ? 503 : 200).end())).address
    const group = (path: string) => ({ servers: [{ address: bad }], passive: { maxFails: 0 }, active: { type: 'http' as const, interval: '200ms', fall: 1, rise: 1, http: { path } } })
    const fleet = (id: string): FleetConfig => ({ registry, path: '/vigil/zenough', id, quorum: 2, writeJitter: '20ms' })
    const observers = []
    for (const id of ['a', 'b', 'c']) observers.push((await startProxy(t, { upstreams: { api: group('/healthz') }, fleet: fleet(id) })).vigil)
    const { vigil: d } = await startProxy(t, { upstreams: { api: group('/late') }, fleet: fleet('d') })
    const nodes = async (): Promise<string[]> => (await admin.children('/vigil/zenough/observations/api')).sort()
    await waitFor(() => d.fleet?.status().upstreams['api']?.[0]?.reporting === 3, 20_000)
    failing = true
    await waitFor(() => d.fleet?.writer.status().suppressed === 1, 20_000)
    t.equal(d.upstreams.get('api')?.find(bad)?.checkUp, false, 'd sees it down by its own check')
    t.same(await nodes(), ['a', 'b', 'c'].map((id) => `${encodeURIComponent(bad)}@${id}`), "three observers' nodes, none of d's")
    await observers[0]?.stop(0)
    await waitFor(() => d.fleet?.writer.status().written === 1, 20_000)
    t.same(await nodes(), ['b', 'c', 'd'].map((id) => `${encodeURIComponent(bad)}@${id}`), "a's node went with its session; d wrote its own")
  })

  t.test('a vigil killed with SIGKILL leaves when its session expires', async (t) => {
    const dir = tempDir(t)
    const address = await provider(t)
    const file = join(dir, 'vigil.json')
    writeConfig(file, proxyConfig([address], { fleet: { registry, path: '/vigil/zreg2', id: 'killed' } }))
    const cli = startCli(t, ['start', '--config', file])
    const [survivor] = await fleetOf(t, (id) => ({ registry, path: '/vigil/zreg2', id }), ['survivor'])
    await waitFor(() => view(survivor as Vigil).count === 2, 20_000)
    process.kill(-(cli.child.pid as number), 'SIGKILL')
    await cli.exited
    t.ok((await admin.children('/vigil/zreg2/consumers')).includes('killed'), 'the node outlives the kill (its session has not expired yet)')
    await waitFor(() => view(survivor as Vigil).count === 1, 30_000)
    t.same(await admin.children('/vigil/zreg2/consumers'), ['survivor'])
  })
})

t.test('fleet.registry names exactly one registry; a bad one is a config error with its path', async (t) => {
  const base = proxyConfig(['127.0.0.1:1'])
  const issues = (fleet: unknown): { path: string; found: string }[] => {
    try {
      validateConfig({ ...base, fleet })
      return []
    } catch (err) {
      return (err as ConfigError).issues.map((i) => ({ path: i.path, found: i.found }))
    }
  }
  t.same(issues({ registry: {}, path: '/v' }), [{ path: 'fleet.registry', found: 'neither "zookeeper" nor "etcd"' }])
  t.same(issues({ registry: { zookeeper: { servers: 'h:1' }, etcd: { endpoints: ['http://h:1'] } }, path: '/v' }), [{ path: 'fleet.registry', found: 'both "zookeeper" and "etcd"' }])
  t.match(issues({ registry: { etcd: { endpoints: ['http://h:1'], username: 'u' } }, path: '/v' }), [{ path: 'fleet.registry.etcd', found: '"username" alone' }])
  t.match(issues({ registry: { etcd: { endpoints: ['http://h:1'] } }, path: '/v/' }), [{ path: 'fleet.path' }], 'no trailing slash')
  t.same(issues({ registry: { etcd: { endpoints: ['http://h:1'] } }, path: '/v', quorum: 2, shareChecks: { k: 2 } }), [])
})
