// ZooKeeper discovery against a real ZooKeeper server: atomic list+watch, formats, a shared subscription, session
// expiry, a lost event caught by the resync, registry restarts, stale marking, the cache file.
import t from 'tap'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { RegistryStartError, Vigil, type Config } from '../src/index.js'
import { ZooKeeperSubscription } from '../src/discovery/zookeeper.js'
import { get, httpServer, silent, startProxy } from './helpers/index.js'
import { waitFor } from './helpers/wait.js'
import zookeeper from 'node-zookeeper-client'
import { discard } from '../src/discovery/zookeeper-client.js'
import { providerRecords } from '../src/discovery/formats.js'
import { addresses, relay, Relay, startZooKeeper, ZooKeeperAdmin, ZooKeeperMember } from './helpers/registries.js'

const { server: zk, admin } = await startZooKeeper(t)

let n = 0
/** A fresh parent path per test, so tests never see each other's providers. */
async function parent(): Promise<string> {
  const path = `/services/t${++n}/providers`
  await admin.mkdirp(path)
  return path
}

const provider = async (tt: Parameters<typeof httpServer>[0], name: string): Promise<string> =>
  (await httpServer(tt, (_req, res) => res.end(name))).address

type ZkSource = NonNullable<Config['upstreams'][string]['servers'][number]['zookeeper']>
const source = (path: string, extra: Partial<ZkSource> = {}): ZkSource => ({ servers: zk.connect, path, resyncInterval: '300ms', sessionTimeout: '2s', connectTimeout: '3s', ...extra })

/** Log lines kept in memory, to assert on what vigil said. */
function memoryLog(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) })
  return { logger, lines }
}

t.test('each child "host:port" is a server; a new child is added and a deleted one removed', async (t) => {
  const path = await parent()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await admin.create(`${path}/${a}`, '', true)
  const { vigil, url } = await startProxy(t, { upstreams: { api: { servers: [{ zookeeper: source(path) }] } } })
  t.same(addresses(vigil), [a], 'started with the registered provider')
  t.equal((await get(url)).body, 'a')
  await admin.create(`${path}/${b}`, '', true)
  await waitFor(() => addresses(vigil).length === 2)
  t.same(addresses(vigil), [a, b].sort())
  await admin.remove(`${path}/${a}`)
  await waitFor(() => addresses(vigil).length === 1)
  t.same(addresses(vigil), [b])
  t.equal((await get(url)).body, 'b', 'traffic goes to the one left')
  t.equal(vigil.registries.sources[0]?.drifts, 0, 'the watch saw every change: no drift')
})

t.test('JSON data with named fields, and Dubbo provider URLs', async (t) => {
  const jsonPath = await parent()
  const dubboPath = await parent()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  const [ha, pa] = a.split(':')
  await admin.create(`${jsonPath}/member-1`, JSON.stringify({ ip: ha, listen: Number(pa), w: 7 }), true)
  await admin.create(`${jsonPath}/member-2`, 'not json', true)
  const [hb, pb] = b.split(':')
  await admin.create(`${dubboPath}/${encodeURIComponent(`dubbo://${hb}:${pb}/com.example.Api?anyhost=true&weight=300&side=provider`)}`, '', true)
  const { vigil } = await startProxy(t, {
    upstreams: {
      api: { servers: [{ zookeeper: source(jsonPath, { format: 'json', fields: { host: 'ip', port: 'listen', weight: 'w' } }) }] },
      dubbo: { servers: [{ zookeeper: source(dubboPath, { format: 'dubbo' }) }] },
    },
  })
  t.same(vigil.upstreams.get('api')?.peers.map((p) => [p.address, p.weight]), [[a, 7]], 'host, port and weight from the named fields; the bad record left out')
  t.same(vigil.upstreams.get('dubbo')?.peers.map((p) => [p.address, p.weight]), [[b, 300]], 'host, port and weight from the provider URL')
  // A changed weight in a child's data is seen too (its data watch was set by the read).
  await admin.setData(`${jsonPath}/member-1`, JSON.stringify({ ip: ha, listen: Number(pa), w: 3 }))
  await waitFor(() => vigil.upstreams.get('api')?.peers[0]?.weight === 3)
  t.pass('weight change applied')
})

t.test('two upstreams watching one path share one subscription, and both see every change', async (t) => {
  const path = await parent()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await admin.create(`${path}/${a}`, '', true)
  const { vigil } = await startProxy(t, {
    upstreams: {
      api: { servers: [{ zookeeper: source(path) }] },
      other: { servers: [{ zookeeper: source(path, { removalGrace: '1s' }) }], balance: 'least_conn' },
    },
  })
  t.equal(vigil.registries.sources.length, 1, 'one subscription')
  await admin.create(`${path}/${b}`, '', true)
  await waitFor(() => addresses(vigil, 'api').length === 2 && addresses(vigil, 'other').length === 2)
  await admin.remove(`${path}/${b}`)
  await waitFor(() => addresses(vigil, 'api').length === 1 && addresses(vigil, 'other').length === 1)
  t.same(addresses(vigil, 'other'), [a])
})

t.test('a lost watch notification is caught by the resync: applied, logged as a drift, counted', async (t) => {
  const path = await parent()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await admin.create(`${path}/${a}`, '', true)
  const { logger, lines } = memoryLog()
  const { vigil, admin: adminUrl } = await startProxy(t, { upstreams: { api: { servers: [{ zookeeper: source(path, { resyncInterval: '1s' }) }] } } }, logger)
  const sub = vigil.registries.sources[0] as ZooKeeperSubscription
  sub.loseEvents(1)
  await admin.create(`${path}/${b}`, '', true)
  await waitFor(() => addresses(vigil).length === 2)
  t.equal(sub.drifts, 1, 'one drift counted')
  const drift = lines.find((l) => String(l['msg']).startsWith('registry drift'))
  t.same(drift?.['missing'], [b], 'the drift line names the missed server')
  t.ok(Array.isArray(drift?.['delivered']) && Array.isArray(drift?.['registry']), 'and both lists')
  const metrics = (await get(`${adminUrl}/metrics`)).body
  t.match(metrics, /vigil_discovery_drift_total\{kind="zookeeper",source="[^"]+"\} 1/)
  // The watch is set again after a drift: the next change arrives without waiting for a resync.
  await admin.remove(`${path}/${b}`)
  await waitFor(() => addresses(vigil).length === 1)
  t.equal(sub.drifts, 1, 'no second drift: the re-armed watch delivered it')
})

t.test('an expired session gets a new client, which lists again (changes made meanwhile are seen)', async (t) => {
  const path = await parent()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await admin.create(`${path}/${a}`, '', true)
  const { logger, lines } = memoryLog()
  const net = await relay(t, zk.port)
  // A long session: the stuck-client rule (a new client after a session timeout disconnected) stays out of this.
  const { vigil } = await startProxy(t, { upstreams: { api: { servers: [{ zookeeper: source(path, { servers: net.address, resyncInterval: '1m', sessionTimeout: '10s' }) }] } } }, logger)
  const sub = vigil.registries.sources[0] as ZooKeeperSubscription
  const before = sub.session
  // vigil is cut off; meanwhile another client joins its session and closes it, and a change is made. Dialling
  // back, vigil's client is told its session expired.
  net.partition()
  const thief = await ZooKeeperAdmin.connect(zk.connect, { sessionTimeout: 10_000, ...sub.sessionCredentials() })
  await admin.create(`${path}/${b}`, '', true)
  const ended = new Promise<void>((resolve) => thief.client.once('disconnected', () => resolve()))
  thief.close()
  await ended
  net.heal()
  await waitFor(() => sub.session !== before && sub.connected, 30_000)
  await waitFor(() => addresses(vigil).length === 2)
  t.ok(lines.some((l) => String(l['msg']).startsWith('ZooKeeper session expired')), 'the expiry is logged')
  t.same(addresses(vigil), [a, b].sort(), 'the change made meanwhile is seen by the new client')
  t.equal(sub.drifts, 0)
})

t.test('a client given up while a reconnect is scheduled never dials again (its handshake answer would crash the library)', async (t) => {
  // The registry refuses connections, so each client waits out its spin delay between dials; it is given up
  // during such a wait and the registry comes back at once: the dial already scheduled must not reach it.
  const gate = await Relay.create(zk.port)
  const port = gate.port
  await gate.close()
  const clients = Array.from({ length: 5 }, () => zookeeper.createClient(`127.0.0.1:${port}`, { sessionTimeout: 4_000, spinDelay: 500 }))
  for (const c of clients) c.connect()
  await new Promise((r) => setTimeout(r, 300))
  for (const c of clients) discard(c)
  const back = await relay(t, zk.port, port)
  await new Promise((r) => setTimeout(r, 1_500))
  t.equal(back.forwarded, 0, 'no handshake of a given-up client reached the registry')
  t.ok(clients.every((c) => c.getState() !== zookeeper.State.SYNC_CONNECTED), 'none connected')
})

t.test('a provider killed without deregistering leaves when the server expires its session', async (t) => {
  const path = await parent()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await admin.create(`${path}/${a}`, '', true)
  // b's node hangs on a session of b's own process, as a real provider's does; 4 s leaves the check right
  // after the kill seconds of margin before the server can expire it.
  const member = await ZooKeeperMember.start(zk.connect, `${path}/${b}`, 4_000)
  t.teardown(() => member.kill())
  await member.register()
  const { vigil } = await startProxy(t, { upstreams: { api: { servers: [{ zookeeper: source(path) }] } } })
  t.same(addresses(vigil), [a, b].sort())
  await member.kill()
  t.ok((await admin.children(path)).includes(b), 'the kill closed nothing: the node is still there')
  await waitFor(() => addresses(vigil).length === 1, 30_000)
  t.same(addresses(vigil), [a])
  t.notOk((await admin.children(path)).includes(b), 'the node went with the expired session')
})

t.test('start: from the cache file when the registry is unreachable; a clear error without one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-cache-'))
  const cacheFile = join(dir, 'api.json')
  const path = await parent()
  const a = await provider(t, 'a')
  await admin.create(`${path}/${a}`, '', true)
  {
    const { vigil } = await startProxy(t, { upstreams: { api: { servers: [{ zookeeper: source(path, { cacheFile }) }] } } })
    await waitFor(() => {
      try {
        return (JSON.parse(readFileSync(cacheFile, 'utf8')) as { targets: { address: string }[] }).targets.length === 1
      } catch {
        return false
      }
    })
    await vigil.stop(100)
  }
  const dead = { servers: '127.0.0.1:1', path, connectTimeout: '500ms' }
  const { vigil, url, admin: adminUrl } = await startProxy(t, { upstreams: { api: { servers: [{ zookeeper: { ...dead, cacheFile } }] } } })
  t.same(addresses(vigil), [a], 'started from the cache')
  t.equal((await get(url)).body, 'a', 'serving at once')
  const status = JSON.parse((await get(`${adminUrl}/status?format=json`)).body) as { discovery: { upstreams: { fromCache: boolean }[] }[] }
  t.equal(status.discovery[0]?.upstreams[0]?.fromCache, true)

  const config: Config = { listeners: [{ address: '127.0.0.1:0', upstream: 'api' }], upstreams: { api: { servers: [{ zookeeper: dead }] } } }
  const err = await new Vigil(config, { logger: silent, admin: false }).start().catch((e: unknown) => e)
  t.type(err, RegistryStartError)
  t.match((err as Error).message, /upstreams\.api\.servers\[0\]\.zookeeper: zookeeper 127\.0\.0\.1:1 \/services\/t\d+\/providers is unreachable .* no cache/)
  writeFileSync(cacheFile, '{"half":')
  const bad = await new Vigil({ ...config, upstreams: { api: { servers: [{ zookeeper: { ...dead, cacheFile } }] } } }, { logger: silent, admin: false }).start().catch((e: unknown) => e)
  t.match((bad as Error).message, /not a vigil cache/, 'a broken cache file is named, not used')
})

t.test('a reconnect whose handshake is accepted but never answered is given up after the session timeout: a new client re-lists; the last good list serves meanwhile, marked stale', async (t) => {
  const path = await parent()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await admin.create(`${path}/${a}`, '', true)
  const { logger, lines } = memoryLog()
  const net = await relay(t, zk.port)
  const { vigil, url } = await startProxy(t, { upstreams: { api: { servers: [{ zookeeper: source(path, { servers: net.address, staleAfter: '1s' }) }] } } }, logger)
  const sub = vigil.registries.sources[0] as ZooKeeperSubscription
  const before = sub.session
  // The connection is cut; the client dials again, its TCP connect succeeds and its session handshake is never
  // answered (what a few clients met after real restarts, and what a black-holing network does). The library
  // has no timeout for that: on its own it would wait there for good.
  net.partition()
  await admin.create(`${path}/${b}`, '', true)
  await waitFor(() => sub.stale, 20_000)
  t.equal(sub.connected, false)
  t.equal((await get(url)).body, 'a', 'the last good list still serves')
  // New connections get through again; the one already held stays silent.
  net.heal({ keepStalled: true })
  await waitFor(() => sub.connected && sub.session !== before, 30_000)
  await waitFor(() => addresses(vigil).length === 2)
  t.same(addresses(vigil), [a, b].sort(), 'the new client re-listed: the change made meanwhile is seen')
  t.notOk(sub.stale, 'fresh again')
  const said = lines.filter((l) => String(l['msg']).startsWith('not connected to ZooKeeper for longer than the session timeout'))
  t.equal(said.length, 1, 'said once for the episode, however many clients it took')
  t.ok(lines.some((l) => String(l['msg']).startsWith('connected to ZooKeeper with a new client')))
})

t.test('registry down: the last good list keeps serving, marked stale; back up: re-listed, fresh again', async (t) => {
  const path = await parent()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await admin.create(`${path}/${a}`, '', false)
  const { vigil, url, admin: adminUrl } = await startProxy(t, { upstreams: { api: { servers: [{ zookeeper: source(path, { resyncInterval: '300ms', staleAfter: '1s', sessionTimeout: '6s' }) }] } } })
  const sub = vigil.registries.sources[0] as ZooKeeperSubscription
  await zk.kill()
  t.teardown(() => (zk.running ? undefined : zk.start()))
  await waitFor(() => sub.stale, 20_000)
  t.equal(sub.connected, false)
  t.equal((await get(url)).body, 'a', 'still serving the last good list')
  const status = JSON.parse((await get(`${adminUrl}/status?format=json`)).body) as { discovery: { stale: boolean; connected: boolean; servers: number }[] }
  t.match(status.discovery[0], { stale: true, connected: false, servers: 1 })
  t.match((await get(`${adminUrl}/metrics`)).body, /vigil_discovery_stale\{kind="zookeeper",source="[^"]+"\} 1/)
  await zk.start()
  // A change made right after the restart, before vigil's client is back, must be seen by its re-list.
  const late = await ZooKeeperAdmin.connect(zk.connect)
  await late.create(`${path}/${b}`, '', false)
  late.close()
  await waitFor(() => addresses(vigil).length === 2, 30_000)
  await waitFor(() => !sub.stale && sub.connected)
  t.pass('re-listed after the restart and fresh again')
})

t.test('real ZooKeeper restarts: every subscription gets back and re-lists (none is left holding a dead handshake)', async (t) => {
  // Twenty plain node-zookeeper-client clients left 2 to 5 of themselves connecting forever across such restarts
  // (their pre-restart session kept, no expiry ever reported); vigil's source must never be one of them.
  const path = await parent()
  const a = await provider(t, 'a')
  await admin.create(`${path}/${a}`, '', false)
  const settings = { servers: zk.connect, path, sessionTimeout: 4_000, auth: undefined, resyncInterval: 60_000, staleAfter: 120_000, connectTimeout: 3_000 }
  const subs = Array.from({ length: 20 }, () => new ZooKeeperSubscription(settings, providerRecords('hostport', undefined), silent))
  for (const s of subs) s.start()
  t.teardown(() => Promise.all(subs.map((s) => s.stop())))
  await waitFor(() => subs.every((s) => s.targets?.length === 1))
  for (let round = 1; round <= 2; round++) {
    await zk.kill()
    await new Promise((r) => setTimeout(r, 5_000))
    await zk.start()
    const late = await ZooKeeperAdmin.connect(zk.connect)
    const added = `127.0.0.1:${60000 + round}`
    await late.create(`${path}/${added}`, '', false)
    late.close()
    const back = (): ZooKeeperSubscription[] => subs.filter((s) => s.connected && s.targets?.some((x) => x.address === added) === true)
    await waitFor(() => back().length === subs.length, 40_000).catch(() => undefined)
    t.equal(back().length, subs.length, `round ${round}: all ${subs.length} connected again and re-listed`)
  }
})
