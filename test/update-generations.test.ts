// Generations: every applied change (file reload, admin call) builds a new immutable group over the servers' lasting
// state; kept groups get their next generation (and any new pools) at the commit, from connection settings read by
// the prepare, so a rotated CA file is new pools even when the config text is the same, and a prepare that fails
// leaves no pool behind. Real providers, the real proxy started from a real file, real sockets.
import t from 'tap'
import { copyFileSync, mkdirSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { client, get, httpServer } from './helpers/index.js'
import { proxyConfig, startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'
import { makeCerts } from './helpers/tls.js'
import type { Config } from '../src/index.js'
import type { Upstream } from '../src/upstream/upstream.js'
import type { Peer } from '../src/upstream/peer.js'

type Tap = { teardown(fn: () => unknown): void }

t.test('a rotated upstream CA file under an unchanged config text gets new pools on reload', async (t) => {
  const dir = tempDir(t)
  const mkdir = (name: string): string => {
    mkdirSync(join(dir, name))
    return join(dir, name)
  }
  const served = makeCerts(mkdir('served'))
  const other = makeCerts(mkdir('other'))
  const server = createHttpsServer({ cert: served.cert, key: served.key }, (_req, res) => res.end('tls ok'))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`
  // The bundle starts as the wrong CA, as after a botched rotation: the fix is to replace the file and reload.
  const ca = join(dir, 'upstream-ca.pem')
  copyFileSync(other.caFile, ca)
  const config = proxyConfig([], { upstreams: { api: { servers: [{ address }], tls: { ca, servername: 'provider.test' } } } })
  const proxy = await startProxyFromFile(t, join(dir, 'vigil.json'), config)
  const agent = client(t)
  const refused = await get(proxy.url, { dispatcher: agent })
  t.equal(refused.headers['x-vigil-error'], 'tls_failed', 'the wrong CA fails the handshake')
  const before = proxy.vigil.upstreams.get('api') as Upstream
  const pool = (before.find(address) as Peer).pool

  copyFileSync(served.caFile, ca)
  const result = await proxy.vigil.reload('signal')
  t.equal(result.ok, true, result.error ?? '')
  t.same(result.change?.upstreams.changed, ['api (tls files)'], 'the reload says the TLS files changed')
  const after = proxy.vigil.upstreams.get('api') as Upstream
  t.not(after, before, 'a new generation')
  t.equal(after.find(address), before.find(address), 'the same server state')
  t.not((after.find(address) as Peer).pool, pool, 'a new pool, with the new CA')
  const answer = await get(proxy.url, { dispatcher: agent })
  t.equal(answer.status, 200, String(answer.headers['x-vigil-error'] ?? ''))
  t.equal(answer.body, 'tls ok')

  const again = await proxy.vigil.reload('signal')
  t.same(again.change?.upstreams.changed, [], 'the same files again: nothing changes')
  t.equal(((proxy.vigil.upstreams.get('api') as Upstream).find(address) as Peer).pool, (after.find(address) as Peer).pool, 'and the pool stays')
})

async function busyPort(t: Tap): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return (server.address() as AddressInfo).port
}

t.test('a reload that fails after its prepare (a new listener cannot bind) leaves no pool behind and changes nothing', async (t) => {
  const a = await httpServer(t, (_req, res) => res.end('a'))
  const dir = tempDir(t)
  const base = proxyConfig([a.address])
  const proxy = await startProxyFromFile(t, join(dir, 'vigil.json'), base)
  const before = proxy.vigil.upstreams.get('api') as Upstream
  const peer = before.find(a.address) as Peer
  const pool = peer.pool
  const generation = proxy.vigil.generation
  const port = await busyPort(t)
  // New connection settings for the kept group (new pools once applied), and a listener that cannot bind.
  const next: Config = {
    ...base,
    listeners: [...base.listeners, { address: `127.0.0.1:${port}`, upstream: 'api' }],
    upstreams: { api: { servers: [{ address: a.address }], timeouts: { connect: '3s' } } },
  }
  writeConfig(proxy.file, next)
  const result = await proxy.vigil.reload('signal')
  t.equal(result.ok, false, 'rejected')
  t.match(result.error, /listeners/)
  t.equal(proxy.vigil.generation, generation, 'no new generation')
  t.equal(proxy.vigil.upstreams.get('api'), before, 'the live generation stays')
  t.equal(peer.pool, pool, 'the server keeps its pool')
  t.equal(proxy.vigil.membership.retiringPools, 0, 'no pool was built and retired')
  t.equal((await get(proxy.url)).body, 'a', 'and it serves')

  writeConfig(proxy.file, { ...next, listeners: base.listeners })
  const ok = await proxy.vigil.reload('signal')
  t.equal(ok.ok, true, ok.error ?? '')
  t.not(peer.pool, pool, 'applied: the new connection settings are a new pool')
  t.equal((await get(proxy.url)).body, 'a')
})

t.test('an admin change is a new generation: a request routed before it picks from the live servers', async (t) => {
  const [a, b] = await Promise.all([httpServer(t, (_req, res) => res.end('a')), httpServer(t, (_req, res) => res.end('b'))])
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([a.address, b.address]))
  const before = proxy.vigil.upstreams.get('api') as Upstream
  const removed = await get(`${proxy.admin}/upstreams/api/servers/${b.address}`, { method: 'DELETE' })
  t.equal(removed.status, 200, removed.body)
  const after = proxy.vigil.upstreams.get('api') as Upstream
  t.not(after, before, 'a new generation')
  t.equal(after.group, before.group, 'of the same group')
  t.equal(after.find(a.address), before.find(a.address), 'the kept server is the same state')
  t.same(
    before.peers.map((p) => p.address),
    [a.address, b.address],
    'the replaced generation is unchanged',
  )
  // A retry of a request routed to the replaced generation: it never reaches the removed server.
  const picks = new Set(Array.from({ length: 8 }, () => before.select([])?.address))
  t.same([...picks], [a.address], 'picks only from the live servers')
  const bodies = new Set<string>()
  for (let i = 0; i < 8; i++) bodies.add((await get(proxy.url)).body)
  t.same([...bodies], ['a'])
})

t.test('a request waiting in the queue across a reload stays queued and is admitted when the server has room', async (t) => {
  const held: { res: import('node:http').ServerResponse; host: string | undefined }[] = []
  const arrived: (() => void)[] = []
  const a = await httpServer(t, (req, res) => {
    held.push({ res, host: req.headers.host })
    arrived.shift()?.()
  })
  const next = (): Promise<void> => new Promise((resolve) => arrived.push(resolve))
  const config = (host: string): Config => proxyConfig([], { upstreams: { api: { host, queue: { size: 4, timeout: '1m' }, servers: [{ address: a.address, maxConns: 1 }] } } })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), config('old.internal'))
  const agent = client(t)
  const first = next()
  const running = get(`${proxy.url}/first`, { dispatcher: agent })
  await first
  const before = proxy.vigil.upstreams.get('api') as Upstream
  const waiting = get(`${proxy.url}/second`, { dispatcher: agent })
  await until(() => before.queue?.length === 1, 'the second request waits in the queue')

  writeConfig(proxy.file, config('new.internal'))
  const result = await proxy.vigil.reload('signal')
  t.equal(result.ok, true, result.error ?? '')
  const after = proxy.vigil.upstreams.get('api') as Upstream
  t.not(after, before, 'a new generation')
  t.equal(after.queue, before.queue, 'the group keeps its wait queue')
  t.equal(after.queue?.length, 1, 'and the request waiting in it')

  const second = next()
  ;(held.shift() as { res: import('node:http').ServerResponse }).res.end('first')
  t.equal((await running).body, 'first')
  await second
  const admitted = held.shift() as { res: import('node:http').ServerResponse; host: string | undefined }
  // Accepted before the reload, it keeps the settings it was accepted under (as an nginx worker's requests do).
  t.equal(admitted.host, 'old.internal', 'admitted by the new generation, under its own settings')
  admitted.res.end('second')
  const answer = await waiting
  t.equal(answer.status, 200, String(answer.headers['x-vigil-error'] ?? ''))
  t.equal(answer.body, 'second')
  const third = next()
  const fresh = get(`${proxy.url}/third`, { dispatcher: agent })
  await third
  const late = held.shift() as { res: import('node:http').ServerResponse; host: string | undefined }
  t.equal(late.host, 'new.internal', 'a request after the reload goes with the new Host header')
  late.res.end('third')
  t.equal((await fresh).body, 'third')
})
