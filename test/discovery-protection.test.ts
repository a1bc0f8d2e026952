// The protection rules against a registry that lies, on a real etcd: a mass removal waits for a second read, an
// empty list never empties a healthy group (unless allowed), a server that left the registry but passes its
// checks keeps traffic until a check fails or removalGrace passes.
import t from 'tap'
import { Etcd3 } from 'etcd3'
import type { Server as HttpServer } from 'node:http'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Config } from '../src/index.js'
import { get, httpServer, startProxy } from './helpers/index.js'
import { waitFor } from './helpers/wait.js'
import { addresses, startEtcd } from './helpers/registries.js'

const etcd = await startEtcd(t)
const kv = new Etcd3({ hosts: etcd.endpoint })
t.teardown(() => kv.close())

let n = 0
type EtcdSource = NonNullable<Config['upstreams'][string]['servers'][number]['etcd']>

/** Three providers registered under a fresh prefix. */
async function three(tt: Parameters<typeof httpServer>[0]): Promise<{ p: string; servers: string[] }> {
  const p = `/services/p${++n}/`
  const servers = await Promise.all(['a', 'b', 'c'].map(async (name) => (await httpServer(tt, (_req, res) => res.end(name))).address))
  for (const [i, s] of servers.entries()) await kv.put(`${p}${i}`).value(s)
  return { p, servers: servers.sort() }
}

const source = (p: string, extra: Partial<EtcdSource> = {}): EtcdSource => ({ endpoints: [etcd.endpoint], prefix: p, resyncInterval: '5s', ...extra })

interface Held {
  address: string
  reason: string
}
async function held(admin: string): Promise<Held[]> {
  const s = JSON.parse((await get(`${admin}/status?format=json`)).body) as { discovery: { upstreams: { held: Held[] }[] }[] }
  return s.discovery[0]?.upstreams[0]?.held ?? []
}

t.test('a list that drops 2 of 3 servers waits for a second read, then applies', async (t) => {
  const { p, servers } = await three(t)
  const { vigil, admin } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p, { confirmDelay: '1s' }) }] } } })
  const generation = vigil.generation
  await kv.if(`${p}0`, 'Version', '>', 0).then(kv.delete().key(`${p}0`), kv.delete().key(`${p}1`)).commit()
  await waitFor(() => vigil.registries.sources[0]?.targets?.length === 1)
  t.same(addresses(vigil), servers, 'not applied on the first read')
  t.same((await held(admin)).map((h) => h.reason), ['awaiting confirmation', 'awaiting confirmation'])
  await waitFor(() => addresses(vigil).length === 1)
  t.equal(vigil.generation, generation + 1, 'applied in one change once the second read confirmed it')
  t.same(await held(admin), [])
})

t.test('a mass removal that the second read does not confirm is never applied', async (t) => {
  const { p, servers } = await three(t)
  const { vigil } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p, { confirmDelay: '1s' }) }] } } })
  const generation = vigil.generation
  const gone = [await kv.get(`${p}0`).string(), await kv.get(`${p}1`).string()] as string[]
  await kv.if(`${p}0`, 'Version', '>', 0).then(kv.delete().key(`${p}0`), kv.delete().key(`${p}1`)).commit()
  await waitFor(() => vigil.registries.sources[0]?.targets?.length === 1)
  // The registry comes back (a restarted registry re-filled by its providers) before the confirming read.
  await kv.if(`${p}2`, 'Version', '>', 0).then(kv.put(`${p}0`).value(gone[0] as string), kv.put(`${p}1`).value(gone[1] as string)).commit()
  await waitFor(() => vigil.registries.sources[0]?.targets?.length === 3)
  await new Promise((r) => setTimeout(r, 1_500))
  t.same(addresses(vigil), servers)
  t.equal(vigil.generation, generation, 'no generation removed anything')
})

t.test('an empty list keeps a healthy group; with allowEmpty it empties it after the second read', async (t) => {
  const kept = await three(t)
  const allowed = await three(t)
  const { vigil, url, admin } = await startProxy(t, {
    upstreams: {
      api: { servers: [{ etcd: source(kept.p, { confirmDelay: '300ms' }) }] },
      allowed: { servers: [{ etcd: source(allowed.p, { confirmDelay: '300ms', allowEmpty: true }) }] },
    },
  })
  await kv.delete().prefix(kept.p)
  await kv.delete().prefix(allowed.p)
  await waitFor(() => addresses(vigil, 'allowed').length === 0)
  t.same(addresses(vigil), kept.servers, 'the healthy group keeps its servers')
  t.same(new Set((await held(admin)).map((h) => h.reason)), new Set(['empty list']))
  t.equal((await get(url)).status, 200, 'and serves')
  // A real list comes back: it applies at once.
  await kv.put(`${kept.p}x`).value(kept.servers[0] as string)
  await waitFor(() => addresses(vigil).length === 1)
  t.same(addresses(vigil), [kept.servers[0]])
})

/** A provider that can be stopped, so its checks fail. */
async function stoppable(tt: Parameters<typeof httpServer>[0]): Promise<{ address: string; server: HttpServer }> {
  const server = createServer((_req, res) => res.end('ok'))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  tt.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

t.test('a server that left the registry but passes its checks keeps traffic until a check fails', async (t) => {
  const p = `/services/p${++n}/`
  const [x, y] = [await stoppable(t), await stoppable(t)]
  await kv.put(`${p}x`).value(x.address)
  await kv.put(`${p}y`).value(y.address)
  const active = { type: 'http' as const, interval: '200ms', timeout: '500ms', rise: 1, fall: 1, http: { path: '/' } }
  const { vigil, admin } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p, { removalGrace: '1m' }) }], active } } })
  await kv.delete().key(`${p}x`)
  await waitFor(() => vigil.registries.sources[0]?.targets?.length === 1)
  await new Promise((r) => setTimeout(r, 600))
  t.same(addresses(vigil), [x.address, y.address].sort(), 'held while it passes its checks')
  t.match(await held(admin), [{ address: x.address, reason: 'passing checks' }])
  x.server.closeAllConnections()
  x.server.close()
  await waitFor(() => addresses(vigil).length === 1)
  t.same(addresses(vigil), [y.address], 'gone once a check failed')
})

t.test('... or until removalGrace passes', async (t) => {
  const p = `/services/p${++n}/`
  const [x, y] = [await stoppable(t), await stoppable(t)]
  await kv.put(`${p}x`).value(x.address)
  await kv.put(`${p}y`).value(y.address)
  const active = { type: 'tcp' as const, interval: '200ms', rise: 1, fall: 1 }
  const { vigil } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p, { removalGrace: '1s' }) }], active } } })
  await kv.delete().key(`${p}x`)
  await waitFor(() => vigil.registries.sources[0]?.targets?.length === 1)
  t.same(addresses(vigil), [x.address, y.address].sort(), 'held at first')
  await waitFor(() => addresses(vigil).length === 1)
  t.same(addresses(vigil), [y.address], 'removed when the grace ran out, though it still passes')
})

t.test('without active checks a server that leaves the registry is removed at once', async (t) => {
  const { p } = await three(t)
  const { vigil } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p) }] } } })
  await kv.delete().key(`${p}0`)
  await waitFor(() => addresses(vigil).length === 2)
  t.pass()
})
