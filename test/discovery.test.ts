// Discovery from DNS end to end: a local DNS server the test controls, vigil's real resolver, real providers.
import t from 'tap'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import { get, spawnProvider } from './helpers/index.js'
import { dnsServer } from './helpers/dns.js'
import { liveSet, proxyConfig, startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'
import type { Config } from '../src/index.js'

function warnings(): { logger: pino.Logger; messages: string[] } {
  const messages: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') messages.push((JSON.parse(l) as { msg: string }).msg)
      cb()
    },
  })
  return { logger: pino({ level: 'warn' }, stream), messages }
}

t.test('A records: resolved before serving, re-resolved on TTL, last good answer kept on failure', async (t) => {
  const dns = await dnsServer(t)
  const a = await spawnProvider(t, 'a', ['--host', '127.0.0.2'])
  // The same port on another loopback address: one DNS name, one port, two providers.
  await spawnProvider(t, 'b', ['--host', '127.0.0.3', '--port', String(a.port)])
  dns.zone.set('api.test', { A: [{ address: '127.0.0.2', ttl: 0 }] })
  const config = (extra: string[] = []): Config =>
    proxyConfig([], {
      resolver: { servers: [dns.address], minTtl: '50ms', maxTtl: '1s', timeout: '500ms' },
      upstreams: { api: { servers: [{ address: `api.test:${a.port}`, resolve: true, weight: 2 }, ...extra.map((address) => ({ address }))] } },
    })
  const { logger, messages } = warnings()
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), config(), logger)
  t.same(liveSet(proxy.vigil), [`127.0.0.2:${a.port}`], 'resolved before the listener opened')
  t.equal(proxy.vigil.upstreams.get('api')?.peers[0]?.weight, 2, 'the entry settings apply to what it resolves to')
  t.equal((await get(proxy.url)).headers['x-provider'], 'a')

  dns.zone.set('api.test', { A: [{ address: '127.0.0.2', ttl: 0 }, { address: '127.0.0.3', ttl: 0 }] })
  await until(() => liveSet(proxy.vigil).length === 2, 'the new answer')
  const seen = new Set<unknown>()
  for (let i = 0; i < 4; i++) seen.add((await get(proxy.url)).headers['x-provider'])
  t.same([...seen].sort(), ['a', 'b'])
  const peerA = proxy.vigil.upstreams.get('api')?.find(`127.0.0.2:${a.port}`)

  dns.failing = true
  const asked = dns.queries.get('A api.test') ?? 0
  await until(() => (dns.queries.get('A api.test') ?? 0) >= asked + 2, 'queries during the outage')
  await until(() => messages.includes('DNS resolution failed; keeping the last good answer'), 'the failure to be logged')
  t.same(liveSet(proxy.vigil), [`127.0.0.2:${a.port}`, `127.0.0.3:${a.port}`], 'the last good answer stays')
  dns.failing = false
  dns.zone.set('api.test', { A: [] })
  const empty = dns.queries.get('A api.test') ?? 0
  await until(() => (dns.queries.get('A api.test') ?? 0) >= empty + 2, 'queries while the name has no records')
  t.equal(liveSet(proxy.vigil).length, 2, 'an empty answer does not empty the group')

  // A file reload keeps the entry's answer (no empty window) and its peers' state.
  writeConfig(proxy.file, config(['127.0.0.1:1']))
  t.equal((await get(`${proxy.admin}/reload`, { method: 'POST' })).status, 200)
  t.same(liveSet(proxy.vigil), [`127.0.0.2:${a.port}`, `127.0.0.3:${a.port}`, '127.0.0.1:1'])
  t.equal(proxy.vigil.upstreams.get('api')?.find(`127.0.0.2:${a.port}`), peerA, 'kept peers keep their Peer')

  dns.zone.set('api.test', { A: [{ address: '127.0.0.3', ttl: 3600 }] })
  await until(() => liveSet(proxy.vigil).length === 2, 'a removed address to leave')
  t.same(liveSet(proxy.vigil), [`127.0.0.3:${a.port}`, '127.0.0.1:1'])
  // A TTL of an hour is still re-asked within maxTtl.
  const longTtl = dns.queries.get('A api.test') ?? 0
  await until(() => (dns.queries.get('A api.test') ?? 0) >= longTtl + 2, 'maxTtl to bound a long TTL')
  t.ok(proxy.vigil.generation >= 4)
})

t.test('SRV records give hosts, ports and weights; lower priorities are backups', async (t) => {
  const dns = await dnsServer(t)
  const [a, b] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  dns.zone.set('_http._tcp.api.test', {
    SRV: [
      { priority: 10, weight: 5, port: a.port, target: 'a.api.test', ttl: 0 },
      { priority: 20, weight: 1, port: b.port, target: 'b.api.test', ttl: 0 },
    ],
  })
  dns.zone.set('a.api.test', { A: [{ address: '127.0.0.1', ttl: 0 }] })
  dns.zone.set('b.api.test', { A: [{ address: '127.0.0.1', ttl: 0 }] })
  const proxy = await startProxyFromFile(
    t,
    join(tempDir(t), 'vigil.json'),
    proxyConfig([], { resolver: { servers: [dns.address], minTtl: '50ms' }, upstreams: { api: { servers: [{ address: '_http._tcp.api.test', resolve: true }] } } }),
  )
  const peers = proxy.vigil.upstreams.get('api')?.peers ?? []
  t.same(
    peers.map((p) => [p.address, p.weight, p.backup]),
    [
      [a.address, 5, false],
      [b.address, 1, true],
    ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
  )
  for (let i = 0; i < 3; i++) t.equal((await get(proxy.url)).headers['x-provider'], 'a', 'the backup waits')
  await get(`${proxy.admin}/upstreams/api/servers/${a.address}/disable`, { method: 'POST' })
  t.equal((await get(proxy.url)).headers['x-provider'], 'b', 'the lower priority takes over')
})

t.test('AAAA records become bracketed IPv6 servers', async (t) => {
  const dns = await dnsServer(t)
  const a = await spawnProvider(t, 'a6', ['--host', '::1'])
  dns.zone.set('v6.test', { AAAA: [{ address: '::1', ttl: 0 }] })
  const proxy = await startProxyFromFile(
    t,
    join(tempDir(t), 'vigil.json'),
    proxyConfig([], { resolver: { servers: [dns.address] }, upstreams: { api: { servers: [{ address: `v6.test:${a.port}`, resolve: true }] } } }),
  )
  t.same(liveSet(proxy.vigil), [`[::1]:${a.port}`])
  t.equal((await get(proxy.url)).headers['x-provider'], 'a6')
})

t.test('a SRV name without resolve: true is a config error', async (t) => {
  const { parseConfig } = await import('../src/index.js')
  let error: unknown
  try {
    parseConfig(JSON.stringify(proxyConfig(['_http._tcp.api.test'])))
  } catch (err) {
    error = err
  }
  t.match(error, { issues: [{ path: 'upstreams.api.servers[0].address', expected: 'host:port, or "resolve": true beside a SRV name' }] })
})
