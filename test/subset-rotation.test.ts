// A group with `subset`: which servers one vigil sends to (members, replacements below the cap's floor, standby),
// unit tests over Peers, then end to end with real providers and the real proxy: only the subset gets traffic and
// checks, a reload changing `of` moves it, members ejected past the floor are replaced from outside it, and with
// fleet registration (a real etcd) the place comes from the registered consumers.
import t, { type Test } from 'tap'
import { Peer } from '../src/upstream/peer.js'
import { SubsetRotation } from '../src/upstream/subset-rotation.js'
import { consumerAt, SubsetAssignment, subset } from '../src/upstream/subset.js'
import type { Config, Upstream as UpstreamConfig } from '../src/config/schema.js'
import type { Upstream } from '../src/upstream/upstream.js'
import { client, get, httpServer, spawnProvider, startProxy, type Provider, type ProxyHandle } from './helpers/index.js'
import { startCli } from './helpers/cli.js'
import { startEtcd } from './helpers/registries.js'
import { proxyConfig, startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'
import { statusOf } from './helpers/health.js'
import { join } from 'node:path'

const pool = { connectTimeout: 1000, responseTimeout: 1000, idleTimeout: 1000, keepAlive: 1000, connections: 1 }
const HALF = { maxEjectPercent: 50, ejectAtLeastOne: false }

function peers(t: Test, n: number, extra: (i: number) => { backup?: boolean; down?: boolean } = () => ({})): Peer[] {
  const out = Array.from({ length: n }, (_, i) => new Peer({ address: `10.0.0.${i + 1}:8080`, ...extra(i) }, pool))
  t.teardown(() => Promise.all(out.map((p) => p.close())))
  return out
}

const names = (ps: readonly Peer[]): string[] => ps.map((p) => p.address)

t.test('members are subset() of the primaries that are not down; backups and down servers have no role', async (t) => {
  const ps = peers(t, 12, (i) => ({ backup: i === 10, down: i === 11 }))
  const r = new SubsetRotation(ps, 4, consumerAt(1, 3), HALF)
  t.same(names([...r.members]), subset(names(ps.slice(0, 10)), consumerAt(1, 3), 4))
  t.same(names(r.rotation()), names([...r.members]), 'every member eligible: the rotation is the subset')
  t.equal(r.floor, 2, '4 members, half may be out: 2 must stay')
  t.equal(r.role(ps[10] as Peer), undefined, 'a backup is kept by every consumer')
  t.equal(r.role(ps[11] as Peer), undefined, 'a down server is in nobody\'s subset')
  t.equal(ps.filter((p) => r.role(p) === 'standby').length, 6)
})

t.test('replacements: only while fewer than the floor of members are eligible, from the ring after the window', async (t) => {
  const ps = peers(t, 10)
  const r = new SubsetRotation(ps, 4, consumerAt(0, 3), HALF)
  const members = [...r.members]
  ;(members[0] as Peer).passiveOk = false
  ;(members[1] as Peer).checkUp = false
  t.same(names(r.rotation()), names(members), 'two of four out: at the floor, no replacement')
  t.equal(r.replacements, 0)
  ;(members[2] as Peer).operator = 'draining'
  const one = r.rotation()
  t.equal(one.length, 5, 'three out: one replacement')
  const replacement = one[4] as Peer
  t.equal(r.role(replacement), 'replacement')
  // Which one: the server outside the subset that this consumer scores highest.
  const spares = new SubsetAssignment(names(ps), consumerAt(0, 3).ids, 4).spares('0')
  t.equal(replacement.address, spares[0], "the consumer's best-scoring server outside its subset")
  replacement.passiveOk = false
  const next = r.rotation()
  t.equal(next.length, 5, 'an ineligible replacement is passed over for the next one')
  t.not((next[4] as Peer).address, replacement.address)
  ;(members[0] as Peer).passiveOk = true
  t.same(names(r.rotation()), names(members), 'a member back: the replacement leaves')
  t.equal(r.role(next[4] as Peer), 'standby')
})

t.test('maxEjectPercent 0: every member that is out is replaced; a subset of one keeps one', async (t) => {
  const ps = peers(t, 6)
  const strict = new SubsetRotation(ps, 3, consumerAt(0, 2), { maxEjectPercent: 0, ejectAtLeastOne: false })
  t.equal(strict.floor, 3)
  ;[...strict.members][0]!.passiveOk = false
  t.equal(strict.rotation().length, 4)
  const single = new SubsetRotation(peers(t, 6), 1, consumerAt(0, 6), HALF)
  t.equal(single.floor, 1, 'the cap never lets a single server out')
  ;[...single.members][0]!.checkUp = false
  t.equal(single.replacements, 0)
  t.equal(single.rotation().length, 2, 'its replacement comes at once')
})

/** Requests each provider served and checks it received, from its own side. */
async function counts(ps: readonly Provider[]): Promise<Map<string, { served: number; healthz: number }>> {
  const out = new Map<string, { served: number; healthz: number }>()
  for (const p of ps) {
    const r = JSON.parse((await get(`http://${p.address}/_control`)).body) as { served: number; healthz: number }
    out.set(p.address, r)
  }
  return out
}

t.test('end to end: traffic and checks go to the subset only; a reload changing `of` moves it; ejected members are replaced', async (t) => {
  const ps = await Promise.all(Array.from({ length: 6 }, (_, i) => spawnProvider(t, `s${i}`)))
  const all = ps.map((p) => p.address)
  const group = (of: number): UpstreamConfig => ({
    servers: all.map((address) => ({ address })),
    subset: { size: 2, id: 0, of },
    // A 503 ejects at once and for long: only the replacement rule brings other servers in.
    passive: { maxFails: 1, failTimeout: '1h', failOn: ['error', 'timeout', 'http_503'], maxEjectPercent: 50, recoveryProbe: false },
    active: { type: 'http', interval: '100ms', rise: 1, fall: 2, unejectOnPass: false, http: { path: '/healthz' } },
    retry: { tries: 1 },
  })
  const config = (of: number): Config => proxyConfig([], { upstreams: { api: group(of) } })
  const dir = tempDir(t)
  const proxy = await startProxyFromFile(t, join(dir, 'vigil.json'), config(3))
  const agent = client(t)
  const upstream = (): Upstream => proxy.vigil.upstreams.get('api') as Upstream
  const send = async (n: number): Promise<number[]> => {
    const statuses: number[] = []
    for (let i = 0; i < n; i++) statuses.push((await get(proxy.url, { dispatcher: agent })).status)
    return statuses
  }

  // Consumer 0 of 3 with size 2 over 6 servers.
  const first = subset(all, consumerAt(0, 3), 2)
  t.equal(first.length, 2)
  // Checks of the members have run (several intervals); the standby ones were checked once at start, if at all.
  await until(async () => [...(await counts(ps.filter((p) => first.includes(p.address)))).values()].every((c) => c.healthz >= 3), 'members checked')
  const before = await counts(ps)
  t.same((await send(40)).filter((s) => s !== 200), [], 'every request answered')
  await until(async () => [...(await counts(ps.filter((p) => first.includes(p.address)))).values()].every((c) => c.healthz >= 6), 'members checked again')
  const after = await counts(ps)
  for (const p of ps) {
    const b = before.get(p.address) as { served: number; healthz: number }
    const a = after.get(p.address) as { served: number; healthz: number }
    if (first.includes(p.address)) t.ok(a.served > b.served, `${p.name} (member) served ${a.served - b.served}`)
    else {
      t.equal(a.served, b.served, `${p.name} (standby) served nothing`)
      t.equal(a.healthz, b.healthz, `${p.name} (standby) was not checked while members were checked 3 more times`)
    }
  }
  const status = await statusOf(proxy.admin)
  t.same(status.filter((r) => r.subset === 'member').map((r) => r.name).sort(), [...first].sort(), 'the status page names the members')
  t.equal(status.filter((r) => r.subset === 'standby').length, 4)
  const json = JSON.parse((await get(`${proxy.admin}/status?format=json`)).body) as { subsets: { upstream: string; size: number; consumer: string; index: number; count: number; members: number; floor: number }[] }
  t.match(json.subsets, [{ upstream: 'api', size: 2, consumer: '0', index: 0, count: 3, members: 2, floor: 1 }])
  const metrics = (await get(`${proxy.admin}/metrics`)).body
  t.match(metrics, /vigil_subset_servers\{upstream="api",role="member"\} 2/)
  t.match(metrics, /vigil_check_skips_total\{server="[^"]+",type="http",reason="standby"\} [1-9]/)

  // A reload changing `of`: the subset is recomputed in the swap; traffic follows it.
  writeConfig(proxy.file, config(2))
  t.equal((await proxy.vigil.reload('api')).ok, true)
  const second = subset(all, consumerAt(0, 2), 2)
  t.equal(second.length, 3, 'ceil(6 / 2): two consumers cover every server')
  t.same(names([...(upstream().subset?.members ?? [])]).sort(), [...second].sort(), 'the live subset is the new one')
  const beforeSecond = await counts(ps)
  await send(60)
  const afterSecond = await counts(ps)
  for (const p of ps) {
    const got = (afterSecond.get(p.address)?.served ?? 0) - (beforeSecond.get(p.address)?.served ?? 0)
    if (second.includes(p.address)) t.ok(got > 0, `${p.name} (member under of=2) served ${got}`)
    else t.equal(got, 0, `${p.name} (standby under of=2) served nothing`)
  }

  // Members fail: the first one ejected leaves 2 of 3 (the floor is 3 − 1 = 2): no replacement. A second one
  // ejected: one replacement joins from outside the subset, and gets traffic.
  const [m0, m1] = second.map((a) => ps.find((p) => p.address === a) as Provider)
  /** The member answers 503 from now on; requests until passive health ejected it. */
  const fail = async (m: Provider): Promise<void> => {
    await get(`http://${m.address}/_control?status=503`)
    await until(async () => {
      await send(3)
      return upstream().find(m.address)?.passive?.state === 'ejected'
    }, `${m.name} ejected`)
  }
  await fail(m0 as Provider)
  t.equal(upstream().subset?.replacements, 0, 'one of three out: at the floor')
  await fail(m1 as Provider)
  t.equal(upstream().subset?.replacements, 1, 'two of three out: one replacement')
  const replacement = (await statusOf(proxy.admin)).find((r) => r.subset === 'replacement')
  t.ok(replacement !== undefined && !second.includes(replacement.name), `the replacement ${replacement?.name} is from outside the subset`)
  const beforeReplacement = await counts(ps)
  t.same((await send(30)).filter((s) => s !== 200), [], 'the clients see no error')
  const afterReplacement = await counts(ps)
  const served = (a: string): number => (afterReplacement.get(a)?.served ?? 0) - (beforeReplacement.get(a)?.served ?? 0)
  t.ok(served(replacement?.name as string) > 0, `the replacement served ${served(replacement?.name as string)}`)
  for (const a of all) if (a !== replacement?.name && !second.includes(a)) t.equal(served(a), 0, `${a} (standby) still served nothing`)
})

t.test('with fleet registration (a real etcd): the subsets are keyed by the registered consumer ids, and a vigil leaving moves the others\' subsets', async (t) => {
  const etcd = await startEtcd(t)
  const ps = await Promise.all(Array.from({ length: 3 }, (_, i) => spawnProvider(t, `f${i}`)))
  const all = ps.map((p) => p.address)
  const registry = { etcd: { endpoints: [etcd.endpoint], resyncInterval: '500ms', connectTimeout: '2s' } }
  const start = (id: string): Promise<ProxyHandle> =>
    startProxy(t, { upstreams: { api: { servers: all.map((address) => ({ address })), subset: { size: 1 } } }, fleet: { registry, path: '/vigil/subset', id, ttl: '2s' } })
  const proxies = [await start('a'), await start('b'), await start('c')]
  const members = (p: ProxyHandle): string[] => names([...((p.vigil.upstreams.get('api') as Upstream).subset?.members ?? [])])
  await until(() => proxies.every((p) => p.vigil.fleet?.consumers.view.count === 3), 'three consumers registered')
  await Promise.all(proxies.map((p) => p.vigil.updates.idle()))
  const expected = ['a', 'b', 'c'].map((id) => subset(all, { id, ids: ['a', 'b', 'c'] }, 1))
  t.same(proxies.map(members), expected, 'consumer id of [a, b, c] uses subset(servers, id of them)')
  t.equal(new Set(proxies.flatMap(members)).size, 3, 'size 1 × 3 consumers: every server has exactly one consumer')
  const agent = client(t)
  const before = await counts(ps)
  for (let i = 0; i < 10; i++) t.equal((await get(proxies[1]!.url, { dispatcher: agent })).status, 200)
  const after = await counts(ps)
  const servedBy = all.filter((a) => (after.get(a)?.served ?? 0) > (before.get(a)?.served ?? 0))
  t.same(servedBy, expected[1], "b's requests reach only b's subset")
  const records = proxies[0]!.vigil.updates.records
  t.ok(records.some((r) => r.source === 'fleet' && r.change.upstreams.changed.some((c) => c.startsWith('api (subset: consumer 0 of 3)'))), 'a fleet generation names the move')

  await proxies[2]!.vigil.stop(0)
  await until(() => proxies[0]!.vigil.fleet?.consumers.view.count === 2 && proxies[1]!.vigil.fleet?.consumers.view.count === 2, 'c left')
  await Promise.all(proxies.slice(0, 2).map((p) => p.vigil.updates.idle()))
  t.same(proxies.slice(0, 2).map(members), ['a', 'b'].map((id) => subset(all, { id, ids: ['a', 'b'] }, 1)), 'consumer id of [a, b] now')
  t.ok(proxies.slice(0, 2).every((p) => members(p).length === 2), 'two consumers for three servers: subsets grow to ceil(3 / 2)')
})

t.test('workers with fleet registration: every worker serves the subset the primary computes from the registered ids, and follows a consumer joining', async (t) => {
  const etcd = await startEtcd(t)
  const served = new Map<string, number>()
  const all = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const s = await httpServer(t, (_req, res) => {
        served.set(s.address, (served.get(s.address) ?? 0) + 1)
        res.end('ok')
      })
      return s.address
    }),
  )
  const registry = { etcd: { endpoints: [etcd.endpoint], resyncInterval: '500ms', connectTimeout: '2s' } }
  const fleet = { registry, path: '/vigil/subset-workers', ttl: '2s' }
  const api = { servers: all.map((address) => ({ address })), subset: { size: 1 }, retry: { tries: 1 } }
  const file = join(tempDir(t), 'vigil.json')
  writeConfig(file, { workers: 2, listeners: [{ address: '127.0.0.1:0', upstream: 'api' }], admin: { address: '127.0.0.1:0' }, reload: { watch: false }, upstreams: { api }, fleet: { ...fleet, id: 'b' } } as Config)
  const cli = startCli(t, ['start', '-c', file])
  await until(() => cli.lines.some((l) => l['msg'] === 'vigil started'), 'the cluster to start')
  const started = cli.lines.find((l) => l['msg'] === 'vigil started') as { listeners: string[]; admin: string }
  const admin = `http://${started.admin}`
  type Json = { servers: { generation: number }; subsets: { consumer: string; count: number; members: number }[]; workers: { workers: { generation: number; serving: boolean }[] } }
  const status = async (): Promise<Json> => JSON.parse((await get(`${admin}/status?format=json`)).body) as Json
  /** The servers that answered `n` requests on new connections (the cluster hands them to both workers). */
  const servedBy = async (n: number): Promise<string[]> => {
    served.clear()
    for (let i = 0; i < n; i++) t.equal((await get(`http://${started.listeners[0] as string}/`, { headers: { connection: 'close' } })).status, 200)
    return [...served.keys()].sort()
  }
  const settled = async (count: number): Promise<boolean> => {
    const s = await status()
    return s.subsets[0]?.count === count && s.workers.workers.length === 2 && s.workers.workers.every((w) => w.serving && w.generation === s.servers.generation)
  }
  await until(() => settled(1), 'the cluster registered, alone')
  t.same(await servedBy(20), [...all].sort(), 'a fleet of one: every server')

  // Another consumer joins: the primary's fleet view moves, and each worker recomputes the subset from it.
  await startProxy(t, { upstreams: { api }, fleet: { ...fleet, id: 'a' } })
  await until(() => settled(2), 'both consumers registered, every worker on the new generation')
  const expected = subset(all, { id: 'b', ids: ['a', 'b'] }, 1)
  t.equal(expected.length, 2, 'two consumers for four servers: two each')
  t.match((await status()).subsets[0], { consumer: 'b', count: 2, members: 2 }, 'the primary shows it')
  t.same(await servedBy(20), [...expected].sort(), "the cluster's requests, from both workers, reach only b's subset")
})
