// The ten update-path bugs of issue 12 and the reload-status signals of issue 17 (item 3), end to end: real
// providers, the real proxy (library and CLI), real files, real sockets. Each test failed on the main of its day.
import t from 'tap'
import { mkdirSync } from 'node:fs'
import { connect, createServer as createNetServer, type Server as NetServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { createServer, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import pino from 'pino'
import { client, control, get, silent, spawnProvider } from './helpers/index.js'
import { dnsServer } from './helpers/dns.js'
import { liveSet, proxyConfig, startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'
import { startCli } from './helpers/cli.js'
import { Vigil, type Config } from '../src/index.js'

type Tap = { teardown(fn: () => unknown): void }

async function postReload(admin: string): Promise<{ status: number; body: { ok: boolean; error?: string; generation: number } }> {
  const r = await get(`${admin}/reload`, { method: 'POST' })
  return { status: r.status, body: JSON.parse(r.body) as { ok: boolean; error?: string; generation: number } }
}

/** A server whose requests wait until the test releases them: no timing, the test decides when they end. */
async function holdServer(t: Tap): Promise<{ address: string; held: ServerResponse[]; arrived: Promise<void>[]; release(): void }> {
  const held: ServerResponse[] = []
  const waiters: (() => void)[] = []
  const arrived = Array.from({ length: 8 }, () => new Promise<void>((resolve) => waiters.push(resolve)))
  const server = createServer((_req, res) => {
    held.push(res)
    waiters.shift()?.()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    held,
    arrived,
    release: () => {
      for (const r of held.splice(0)) r.end('released')
    },
  }
}

async function busyPort(t: Tap): Promise<{ port: number; server: NetServer }> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return { port: (server.address() as AddressInfo).port, server }
}

t.test('case 1: new passive settings while a server is ejected: it comes back into rotation', async (t) => {
  const [a, b, c] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b'), spawnProvider(t, 'c')])
  const config = (maxFails: number): Config =>
    proxyConfig([], { upstreams: { api: { passive: { maxFails, failTimeout: '1m' }, retry: { tries: 3 }, servers: [a, b, c].map((p) => ({ address: p.address })) } } })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), config(1))
  const agent = client(t)
  c.signal('SIGKILL')
  await c.exited
  const peerC = proxy.vigil.upstreams.get('api')?.find(c.address)
  await until(async () => {
    await get(proxy.url, { dispatcher: agent })
    return peerC?.passive?.state === 'ejected'
  }, 'c to be ejected')
  await spawnProvider(t, 'c2', ['--port', String(c.port)])
  writeConfig(proxy.file, config(2))
  t.match((await postReload(proxy.admin)).body, { ok: true })
  const served = new Map<string, number>()
  for (let i = 0; i < 60; i++) {
    const r = await get(proxy.url, { dispatcher: agent })
    const name = String(r.headers['x-provider'])
    served.set(name, (served.get(name) ?? 0) + 1)
  }
  t.ok((served.get('c2') ?? 0) > 0, `the restarted server gets traffic again (${JSON.stringify([...served])})`)
  t.equal(peerC?.eligible, true, 'and is eligible')
})

t.test('case 2: a request vigil answers itself during the drain does not cut the in-flight ones', async (t) => {
  const hold = await holdServer(t)
  const config: Config = {
    ...proxyConfig([hold.address]),
    listeners: [{ address: '127.0.0.1:0', routes: [{ pathPrefix: '/api', upstream: 'api' }] }],
    shutdown: { grace: '10s' },
  }
  const vigil = await new Vigil(config, { logger: silent }).start()
  t.teardown(() => vigil.stop(1_000))
  const port = (vigil.listenerAddresses[0] as AddressInfo).port
  const socket = connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  let received = ''
  socket.on('data', (d: Buffer) => (received += d.toString()))
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.write('GET /api/slow HTTP/1.1\r\nHost: x\r\n\r\n')
  await hold.arrived[0]
  const stopped = vigil.stop(10_000)
  // The second request comes on the same (busy) connection, pipelined, while the first is still in flight.
  const server = (vigil as unknown as { listeners: { server: import('node:http').Server }[] }).listeners[0]?.server
  const answered = new Promise<void>((resolve) => server?.once('request', () => resolve()))
  socket.write('GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n')
  await answered
  hold.release()
  await Promise.race([closed, until(() => /released/.test(received) && /404/.test(received), 'both responses')])
  t.match(received, /HTTP\/1\.1 200 OK[\s\S]*released/, 'the in-flight request got its response')
  t.match(received, /HTTP\/1\.1 404/, 'the 404 was answered too')
  await stopped
})

t.test('case 3: a reload whose upstream tls.ca is a directory is rejected and the process lives (SIGHUP and POST /reload)', async (t) => {
  const a = await spawnProvider(t, 'a')
  const dir = tempDir(t)
  const caDir = join(dir, 'ca-dir')
  mkdirSync(caDir)
  const file = join(dir, 'vigil.json')
  writeConfig(file, proxyConfig([a.address]))
  const { child, lines, exited: exit } = startCli(t, ['start', '--config', file])
  let code: number | null | undefined
  const exited = exit.then((c) => void (code = c))
  await until(() => lines.some((l) => l['msg'] === 'vigil started'), 'the CLI to start')
  const started = lines.find((l) => l['msg'] === 'vigil started') as { listeners: string[]; admin: string }
  const admin = `http://${started.admin}`
  const rejected = (): number => lines.filter((l) => l['msg'] === 'config reload rejected; the running config stays').length

  // A kept group turns TLS on with a CA that is a directory.
  writeConfig(file, proxyConfig([], { upstreams: { api: { tls: { ca: caDir }, servers: [{ address: a.address }] } } }))
  process.kill(child.pid as number, 'SIGHUP')
  await Promise.race([exited, until(() => rejected() === 1, 'the SIGHUP rejection')])
  t.equal(code, undefined, 'the process is still running')
  const status = JSON.parse((await get(`${admin}/reload`)).body) as { generation: number; last: { ok: boolean; error: string } }
  t.match(status, { generation: 1, last: { ok: false } })
  t.match(status.last.error, /tls\.ca/, 'the error names the setting')
  t.equal((await get(`http://${started.listeners[0]}`)).headers['x-provider'], 'a', 'the old config serves')

  // A new group with the same setting, through POST /reload.
  writeConfig(file, proxyConfig([a.address], { upstreams: { api: { servers: [{ address: a.address }] }, other: { tls: { ca: caDir }, servers: [{ address: a.address }] } } }))
  const r = await Promise.race([exited.then(() => undefined), postReload(admin)])
  t.equal(code, undefined, 'still running')
  t.match(r, { status: 422, body: { ok: false, generation: 1 } })
  writeConfig(file, proxyConfig([a.address], { upstreams: { api: { servers: [{ address: a.address, weight: 2 }] } } }))
  t.match(await postReload(admin), { status: 200, body: { ok: true, generation: 2 } }, 'the next good file applies on top of the running config')
})

t.test('case 4: a new slowStart window while a server ramps: the ramp ends', async (t) => {
  const [a, b] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  const config = (servers: string[], slowStart: string): Config => proxyConfig([], { upstreams: { api: { slowStart, servers: servers.map((address) => ({ address, weight: 10 })) } } })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), config([a.address], '1h'))
  writeConfig(proxy.file, config([a.address, b.address], '1h'))
  t.match((await postReload(proxy.admin)).body, { ok: true })
  const peerB = proxy.vigil.upstreams.get('api')?.find(b.address)
  t.equal(peerB?.effectiveWeight, 1, 'b starts its ramp at 10%')
  writeConfig(proxy.file, config([a.address, b.address], '100ms'))
  t.match((await postReload(proxy.admin)).body, { ok: true })
  await until(() => peerB?.effectiveWeight === 10, 'b to reach its full weight under the new window', 10_000)
  t.pass('b ramped to its full weight')
})

t.test('case 5: turning on tls, or changing ewmaDecay, applies to the whole group, never a mixture', async (t) => {
  const [a, b] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([], { upstreams: { api: { balance: 'ewma', servers: [{ address: a.address }] } } }))
  writeConfig(proxy.file, proxyConfig([], { upstreams: { api: { balance: 'ewma', tls: { verify: false }, ewmaDecay: '3s', servers: [{ address: a.address }, { address: b.address }] } } }))
  t.match((await postReload(proxy.admin)).body, { ok: true })
  const peers = proxy.vigil.upstreams.get('api')?.peers ?? []
  t.same(peers.map((p) => p.origin), [`https://${a.address}`, `https://${b.address}`], 'every server connects with TLS')
  t.same(peers.map((p) => p.rtt.decay), [3_000, 3_000], 'every server uses the new decay')
})

t.test('case 6: a reload leaves the level of a logger passed in by the caller alone', async (t) => {
  const a = await spawnProvider(t, 'a')
  const logger = pino({ level: 'warn' })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([a.address], { log: { level: 'warn' } }), logger)
  writeConfig(proxy.file, proxyConfig([a.address], { log: { level: 'debug' } }))
  t.match((await postReload(proxy.admin)).body, { ok: true })
  t.equal(logger.level, 'warn', "the caller's logger keeps its level")
})

t.test('case 7: a watched reload that failed for a transient reason is retried on the next trigger', async (t) => {
  const a = await spawnProvider(t, 'a')
  const blocker = await busyPort(t)
  const base = proxyConfig([a.address], { reload: { debounce: '20ms' } })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), base)
  const next: Config = { ...base, listeners: [...base.listeners, { address: `127.0.0.1:${blocker.port}`, upstream: 'api' }] }
  writeConfig(proxy.file, next)
  await until(() => proxy.vigil.reloadStatus.last?.ok === false, 'the reload to fail (port in use)')
  await new Promise((resolve) => blocker.server.close(resolve))
  writeConfig(proxy.file, next) // the same content again: a new trigger
  await until(() => proxy.vigil.reloadStatus.last?.ok === true, 'the retried reload to apply', 10_000)
  t.equal(proxy.vigil.config.listeners.length, 2, 'the new listener is live')
  t.equal((await get(`http://127.0.0.1:${blocker.port}/`)).headers['x-provider'], 'a')
})

t.test('case 8: waiters in the queue of a removed group are answered at once, not left to time out', async (t) => {
  const [a, hold] = await Promise.all([spawnProvider(t, 'a'), holdServer(t)])
  const config = (withSlow: boolean): Config => ({
    ...proxyConfig([a.address]),
    listeners: [{ address: '127.0.0.1:0', routes: [...(withSlow ? [{ pathPrefix: '/slow', upstream: 'slow' }] : []), { pathPrefix: '/', upstream: 'api' }] }],
    upstreams: {
      api: { servers: [{ address: a.address }] },
      ...(withSlow ? { slow: { queue: { size: 5, timeout: '10m' }, servers: [{ address: hold.address, maxConns: 1 }] } } : {}),
    },
  })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), config(true))
  const first = get(`${proxy.url}/slow/1`, { dispatcher: client(t) })
  await hold.arrived[0]
  let second: { status: number; headers: Record<string, unknown> } | undefined
  const queued = get(`${proxy.url}/slow/2`, { dispatcher: client(t) }).then((r) => (second = r))
  await until(() => proxy.vigil.upstreams.get('slow')?.queue?.length === 1, 'the second request to wait in the queue')
  writeConfig(proxy.file, config(false))
  t.match((await postReload(proxy.admin)).body, { ok: true })
  await until(() => second !== undefined, 'the waiter to be answered while the first request is still held', 10_000)
  t.equal(second?.status, 503)
  t.equal(second?.headers['x-vigil-error'], 'upstream_removed')
  t.equal(hold.held.length, 1, 'the waiter never reached the removed server')
  hold.release()
  t.equal((await first).status, 200, 'the in-flight request on the removed group finishes')
  await queued
})

t.test('case 9: DNS entries primed for a reload that fails are dropped', async (t) => {
  const dns = await dnsServer(t)
  const a = await spawnProvider(t, 'a')
  dns.zone.set('other.test', { A: [{ address: '127.0.0.1', ttl: 0 }] })
  dns.zone.set('third.test', { A: [{ address: '127.0.0.1', ttl: 0 }] })
  const blocker = await busyPort(t)
  const caDir = join(tempDir(t), 'ca-dir')
  mkdirSync(caDir)
  const base = proxyConfig([a.address], { resolver: { servers: [dns.address], minTtl: '20ms', maxTtl: '20ms', timeout: '500ms' } })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), base)
  const queries = (name: string): number => dns.queries.get(`A ${name}`) ?? 0
  const failures: [string, Config][] = [
    ['a new listener cannot bind', { ...base, listeners: [...base.listeners, { address: `127.0.0.1:${blocker.port}`, upstream: 'other' }], upstreams: { ...base.upstreams, other: { servers: [{ address: `other.test:${a.port}`, resolve: true }] } } }],
    ['a new group cannot read its CA', { ...base, upstreams: { ...base.upstreams, third: { tls: { ca: caDir }, servers: [{ address: `third.test:${a.port}`, resolve: true }] } } }],
  ]
  for (const [why, config] of failures) {
    const name = why.startsWith('a new listener') ? 'other.test' : 'third.test'
    writeConfig(proxy.file, config)
    const r = await postReload(proxy.admin)
    t.match(r.body, { ok: false }, `${why}: rejected`)
    t.ok(queries(name) > 0, `${why}: the entry was resolved while preparing`)
    const after = queries(name)
    // With a 20 ms TTL a kept entry is asked again ~25 times in this half second; a dropped one never.
    await new Promise((resolve) => setTimeout(resolve, 500))
    t.equal(queries(name), after, `${why}: the entry is not resolved any more`)
  }
  t.same(liveSet(proxy.vigil), [a.address])
})

t.test('case 10: a changed check keeps the check state of a server that is down by check', async (t) => {
  const a = await spawnProvider(t, 'a')
  const b = await spawnProvider(t, 'b')
  const config = (interval: string): Config =>
    proxyConfig([], { upstreams: { api: { active: { type: 'http', interval, rise: 2, fall: 1, http: { path: '/' } }, servers: [{ address: a.address }, { address: b.address }] } } })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), config('100ms'))
  await control(b, 'status=503')
  const peerB = proxy.vigil.upstreams.get('api')?.find(b.address)
  await until(() => peerB?.checkUp === false, 'b to be down by check')
  writeConfig(proxy.file, config('150ms'))
  t.match((await postReload(proxy.admin)).body, { ok: true })
  t.equal(peerB?.checkUp, false, 'b is still down right after the reload')
  const status = JSON.parse((await get(`${proxy.admin}/status?format=json`)).body) as { servers: { server: { name: string; status: string }[] } }
  t.equal(status.servers.server.find((s) => s.name === b.address)?.status, 'down', 'and on the status page')
  for (let i = 0; i < 6; i++) t.equal((await get(proxy.url)).headers['x-provider'], 'a')
  await control(b, 'status=200')
  await until(() => peerB?.checkUp === true, 'b to come back once the new check passes rise times')
})

t.test('issue 17.3: no last-reload-success series before the first reload', async (t) => {
  const a = await spawnProvider(t, 'a')
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([a.address]))
  const metrics = (await get(`${proxy.admin}/metrics`)).body
  t.notMatch(metrics, /^vigil_config_last_reload_success /m, 'absent, as its help says')
  t.notMatch(metrics, /^vigil_config_last_reload_timestamp_seconds /m)
  t.match(metrics, /^vigil_config_generation 1$/m)
  await postReload(proxy.admin)
  t.match((await get(`${proxy.admin}/metrics`)).body, /^vigil_config_last_reload_success 1$/m, 'present after one')
})

t.test('issue 17.3: restoring the running file after a rejected reload clears "last reload failed" (watch)', async (t) => {
  const a = await spawnProvider(t, 'a')
  const good = proxyConfig([a.address], { reload: { debounce: '20ms' } })
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), good)
  writeConfig(proxy.file, '{ "listeners": [')
  await until(() => proxy.vigil.reloadStatus.last?.ok === false, 'the bad file to be rejected')
  writeConfig(proxy.file, good)
  await until(() => proxy.vigil.reloadStatus.last?.ok === true, 'the restored file to count as a good reload', 10_000)
  t.match((await get(`${proxy.admin}/metrics`)).body, /^vigil_config_last_reload_success 1$/m)
  t.equal(proxy.vigil.generation, 1, 'nothing changed, so no new generation')
})
