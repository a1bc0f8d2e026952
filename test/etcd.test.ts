// etcd discovery against a real etcd server: read then watch from revision + 1, formats, a lost event caught by
// the resync, compaction while disconnected, a registry restart, the lease of a killed provider running out.
import t from 'tap'
import { Etcd3 } from 'etcd3'
import pino from 'pino'
import type { Config } from '../src/index.js'
import type { Subscription } from '../src/discovery/subscription.js'
import type { EtcdSubscription } from '../src/discovery/etcd.js'
import { get, httpServer, startProxy } from './helpers/index.js'
import { waitFor } from './helpers/wait.js'
import { addresses, relay, startEtcd } from './helpers/registries.js'

const etcd = await startEtcd(t)
const kv = new Etcd3({ hosts: etcd.endpoint })
t.teardown(() => kv.close())

let n = 0
const prefix = (): string => `/services/t${++n}/`

const provider = async (tt: Parameters<typeof httpServer>[0], name: string): Promise<string> =>
  (await httpServer(tt, (_req, res) => res.end(name))).address

type EtcdSource = NonNullable<Config['upstreams'][string]['servers'][number]['etcd']>
const source = (p: string, extra: Partial<EtcdSource> = {}): EtcdSource => ({ endpoints: [etcd.endpoint], prefix: p, resyncInterval: '300ms', connectTimeout: '2s', ...extra })

function memoryLog(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) })
  return { logger, lines }
}

t.test('each key under the prefix is a server; a put adds one, a delete removes it', async (t) => {
  const p = prefix()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await kv.put(`${p}a`).value(a)
  await kv.put(`/services/elsewhere/x`).value(b)
  const { vigil, url } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p) }] } } })
  t.same(addresses(vigil), [a], 'keys outside the prefix are not servers')
  t.equal((await get(url)).body, 'a')
  await kv.put(`${p}b`).value(b)
  await waitFor(() => addresses(vigil).length === 2)
  await kv.delete().key(`${p}a`)
  await waitFor(() => addresses(vigil).length === 1)
  t.same(addresses(vigil), [b])
  t.equal((await get(url)).body, 'b')
  const sub = vigil.registries.sources[0] as Subscription
  t.equal(sub.drifts, 0, 'the watch saw every change')
  t.match(sub.version, /^[0-9]+$/, 'the revision is shown')
})

t.test('JSON values with named fields; a record that does not parse is left out', async (t) => {
  const p = prefix()
  const a = await provider(t, 'a')
  const [host, port] = a.split(':')
  await kv.put(`${p}1`).value(JSON.stringify({ addr: host, p: port, load: 9 }))
  await kv.put(`${p}2`).value('{"addr": 5}')
  const { vigil } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p, { format: 'json', fields: { host: 'addr', port: 'p', weight: 'load' } }) }], passive: { maxFails: 0 } } } })
  t.same(vigil.upstreams.get('api')?.peers.map((x) => [x.address, x.weight]), [[a, 9]])
})

t.test('a lost watch event is caught by the resync, logged with both lists and counted', async (t) => {
  const p = prefix()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await kv.put(`${p}a`).value(a)
  const { logger, lines } = memoryLog()
  const { vigil, admin } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p) }] } } }, logger)
  const sub = vigil.registries.sources[0] as Subscription
  sub.loseEvents(1)
  await kv.put(`${p}b`).value(b)
  await waitFor(() => addresses(vigil).length === 2)
  t.equal(sub.drifts, 1)
  t.same(lines.find((l) => String(l['msg']).startsWith('registry drift'))?.['missing'], [b])
  t.match((await get(`${admin}/metrics`)).body, /vigil_discovery_drift_total\{kind="etcd",source="[^"]+"\} 1/)
  await kv.delete().key(`${p}b`)
  await waitFor(() => addresses(vigil).length === 1)
  t.equal(sub.drifts, 1, 'the new watch delivers the next change')
})

t.test('cut off while the registry changes and compacts: a full read and a new watch on return', async (t) => {
  const p = prefix()
  const [a, b, c] = [await provider(t, 'a'), await provider(t, 'b'), await provider(t, 'c')]
  await kv.put(`${p}a`).value(a)
  await kv.put(`${p}b`).value(b)
  const net = await relay(t, etcd.port)
  const { logger, lines } = memoryLog()
  const { vigil } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p, { endpoints: [`http://${net.address}`], resyncInterval: '1m' }) }] } } }, logger)
  const sub = vigil.registries.sources[0] as EtcdSubscription
  t.same(addresses(vigil), [a, b].sort())
  await waitFor(() => sub.watching)
  net.partition()
  await waitFor(() => !sub.connected, 30_000)
  await kv.put(`${p}c`).value(c)
  const del = await kv.delete().key(`${p}a`).exec()
  // Compact up to the latest revision: the watch's next revision is gone, so resuming it must fail.
  await kv.kv.compact({ revision: del.header.revision, physical: true })
  net.heal()
  await waitFor(() => addresses(vigil).join() === [b, c].sort().join(), 30_000)
  t.ok(sub.connected)
  t.ok(lines.some((l) => /reading again in full/.test(String(l['msg']))), 'a full read after the reconnect')
  t.equal(sub.drifts, 0)
  // And the new watch works.
  await kv.delete().key(`${p}c`)
  await waitFor(() => addresses(vigil).length === 1)
  t.same(addresses(vigil), [b])
})

t.test('a killed provider whose lease runs out leaves the group', async (t) => {
  const p = prefix()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await kv.put(`${p}a`).value(a)
  const owner = new Etcd3({ hosts: etcd.endpoint })
  const lease = owner.lease(2, { autoKeepAlive: true })
  await lease.put(`${p}b`).value(b)
  const { vigil } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p) }] } } })
  t.same(addresses(vigil), [a, b].sort())
  // The provider dies without deregistering: its keep-alives stop and etcd drops the key when the lease ends.
  lease.release()
  owner.close()
  await waitFor(() => addresses(vigil).length === 1, 30_000)
  t.same(addresses(vigil), [a])
})

t.test('registry restart: stale while down, the last good list keeps serving, re-read when back', async (t) => {
  const p = prefix()
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await kv.put(`${p}a`).value(a)
  const { vigil, url, admin } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: source(p, { staleAfter: '1s' }) }] } } })
  const sub = vigil.registries.sources[0] as Subscription
  await etcd.kill()
  t.teardown(() => (etcd.running ? undefined : etcd.start()))
  await waitFor(() => sub.stale, 30_000)
  t.equal((await get(url)).body, 'a', 'still serving')
  const status = JSON.parse((await get(`${admin}/status?format=json`)).body) as { discovery: { stale: boolean; kind: string; path: string }[] }
  t.match(status.discovery[0], { stale: true, kind: 'etcd', path: p })
  t.match((await get(`${admin}/status?format=html`)).body, /<table id="discovery">/)
  await etcd.start()
  await kv.put(`${p}b`).value(b)
  await waitFor(() => addresses(vigil).length === 2, 30_000)
  await waitFor(() => !sub.stale)
  t.pass('re-read after the restart')
})
