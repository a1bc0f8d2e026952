// `workers: 2` end to end: the real CLI forks a primary and two workers; real providers on loopback; real
// connections, which the cluster hands to the workers in turn (a keep-alive connection stays on its worker).
// One cluster serves every subtest, in order: the ejection decided once for both workers, the cap across
// workers, one status page and /metrics with the totals, a reload in every worker (one switching a group to h2c),
// a worker SIGKILLed with requests in flight, a worker that stops answering, graceful shutdown.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { createServer, type Server } from 'node:net'
import { createServer as createH2Server } from 'node:http2'
import { Agent } from 'undici'
import type { Config } from '../src/config/schema.js'
import { get, httpServer } from './helpers/index.js'
import { tempDir, until, writeConfig } from './helpers/config-file.js'
import { connectionMaker, startClusterCli, workerThatServed } from './helpers/workers.js'

interface WorkerRow {
  worker: number
  pid: number
  generation: number
  version: number
  serving: boolean
  requests: number
  restarts: number
}
interface Status {
  servers: { generation: number; server: { name: string; passive: string; requests: number; inflight: number; upstream: string }[] }
  workers: { workers: WorkerRow[]; generation: number; version: number; propagation: { measured: number } }
}

const dir = tempDir(t)
const file = join(dir, 'vigil.json')
/** Every request a provider answered, by its name. */
const served = new Map<string, number>()
const named = async (name: string, status: number, slow = 0): Promise<string> => {
  const { address } = await httpServer(t, (req, res) => {
    served.set(name, (served.get(name) ?? 0) + 1)
    const wait = req.url?.includes('slow') === true ? slow : 0
    setTimeout(() => res.writeHead(status).end(name), wait)
  })
  return address
}
const [bad1, bad2, bad3, probe, spare, busy, sick, well] = await Promise.all([
  named('bad1', 503),
  named('bad2', 503),
  named('bad3', 503),
  named('probe', 200, 800),
  named('spare', 200),
  named('busy', 200),
  named('sick', 503, 300),
  named('well', 200),
])

/** A loopback port held by a plain TCP server (a listener vigil cannot bind, or a server that refuses once closed). */
const held = async (): Promise<{ server: Server; address: string }> => {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(() => resolve(undefined))))
  return { server, address: `127.0.0.1:${(server.address() as { port: number }).port}` }
}
// Nothing listens there: every request to it fails to connect, and each worker logs it (a warn line).
const gone = await held()
await new Promise((resolve) => gone.server.close(resolve))

const config = (extra: Partial<Config> = {}, api: string[] = [bad1, bad2, bad3]): Config => ({
  workers: 2,
  listeners: [
    {
      address: '127.0.0.1:0',
      routes: [
        { pathPrefix: '/probe', upstream: 'probe' },
        { pathPrefix: '/busy', upstream: 'busy' },
        { pathPrefix: '/trial', upstream: 'trial' },
        { pathPrefix: '/gone', upstream: 'gone' },
        { pathPrefix: '/', upstream: 'api' },
      ],
    },
  ],
  admin: { address: '127.0.0.1:0' },
  reload: { watch: false },
  shutdown: { grace: '10s' },
  upstreams: {
    // Three providers that answer 503: nginx mode, two failures eject, the cap lets one of three out.
    api: { balance: 'round_robin', servers: api.map((address) => ({ address })), retry: { tries: 1 }, passive: { maxFails: 2, failTimeout: '1h', failOn: ['error', 'timeout', 'http_503'], maxEjectPercent: 50, recoveryProbe: false } },
    probe: { servers: [{ address: probe }], retry: { tries: 1 } },
    // Checked often, but a server real requests answered within trafficInterval is left out (the checks run in the
    // primary, the requests in the workers).
    busy: { servers: [{ address: busy }], active: { type: 'http', interval: '100ms', trafficInterval: '1h', rise: 1, fall: 3, http: { path: '/healthz' } } },
    gone: { servers: [{ address: gone.address }], retry: { tries: 1 } },
    // One failure ejects sick for 200 ms, then one trial request (which fails: ejected again), and so on.
    trial: {
      // Requests with one key go to one server while it is eligible: during a trial, to sick, from every worker.
      balance: 'hash',
      hashKey: 'header:x-key',
      servers: [{ address: sick }, { address: well }],
      retry: { tries: 1 },
      passive: { maxFails: 1, failTimeout: '200ms', failOn: ['error', 'timeout', 'http_503'], recoveryProbe: false },
    },
  },
  ...extra,
})
writeConfig(file, config())

const started = await startClusterCli(t, file)
const { cli, admin, primary } = started
const url = `http://${started.listeners[0] as string}`
const status = async (): Promise<Status> => JSON.parse((await get(`${admin}/status?format=json`)).body) as Status
/** Every worker applied the primary's current state version. */
const converged = async (): Promise<boolean> => {
  const s = await status()
  return s.workers.workers.length === 2 && s.workers.workers.every((w) => w.serving && w.version === s.workers.version)
}
let sent = 0
const request = async (path: string, agent: Agent): Promise<{ status: number; body: string }> => {
  sent++
  return get(`${url}${path}`, { dispatcher: agent })
}
const agent = connectionMaker(t)

/** A keep-alive connection on the worker with pid `other` (or on any worker); returns it and its worker's pid. */
async function connectionOn(notPid?: number): Promise<{ agent: Agent; pid: number }> {
  for (;;) {
    const a = agent()
    const pid = await workerThatServed(status, () => request('/probe', a), 'the probe request to be reported')
    if (pid !== notPid) return { agent: a, pid }
  }
}

const ejectedLines = (server: string): Record<string, unknown>[] => cli.lines.filter((l) => l['event'] === 'ejected' && l['server'] === server)

const pair: { a?: { agent: Agent; pid: number }; b?: { agent: Agent; pid: number } } = {}

t.test('failures on two workers add up to one ejection, decided by the primary for both', async (t) => {
  t.same(started.workers.length, 2, 'two workers')
  const a = await connectionOn()
  const b = await connectionOn(a.pid)
  t.not(a.pid, b.pid, 'two connections on two workers')
  // Each worker's round robin starts at bad1: one failure from each worker, maxFails 2.
  t.equal((await request('/', a.agent)).body, 'bad1')
  t.equal((await request('/', b.agent)).body, 'bad1')
  await until(() => ejectedLines(bad1).length > 0, 'bad1 to be ejected')
  const line = ejectedLines(bad1)[0] as { pid: number; evidence: { failures: number } }
  t.equal(line.pid, primary, 'the primary decided it')
  t.equal(line.evidence.failures, 2, 'on two failures, one from each worker')
  await until(converged, 'every worker to apply the state')
  const before = served.get('bad1')
  for (let i = 0; i < 4; i++) for (const c of [a, b]) t.not((await request('/', c.agent)).body, 'bad1', 'no worker sends to bad1 any more')
  t.equal(served.get('bad1'), before)
  t.equal(ejectedLines(bad1).length, 1, 'one ejection, logged once')
  const s = await status()
  t.ok(s.workers.propagation.measured > 0, 'the propagation time is measured')
  t.equal(s.servers.server.find((x) => x.name === bad1)?.passive, 'ejected', 'the status page shows it')
  Object.assign(pair, { a, b })
})

t.test('the cap holds across workers: no second server of three leaves, whichever worker fails', async (t) => {
  const { a, b } = pair as Required<typeof pair>
  for (let i = 0; i < 6; i++) for (const c of [a, b]) t.equal((await request('/', c.agent)).status, 503)
  await until(() => cli.lines.some((l) => l['event'] === 'capped'), 'the cap to hold')
  await until(converged, 'every worker to apply the state')
  const capped = cli.lines.filter((l) => l['event'] === 'capped')
  t.ok(capped.every((l) => l['pid'] === primary), 'the primary applies the cap')
  t.same(ejectedLines(bad2).concat(ejectedLines(bad3)), [], 'bad2 and bad3 stay in')
  t.same((await status()).servers.server.filter((x) => x.upstream === 'api' && x.passive !== 'ok').map((x) => x.name), [bad1], 'one of three out')
})

t.test('one status page and one /metrics count the requests of both workers', async (t) => {
  await until(async () => (await status()).servers.server.reduce((n, x) => n + x.requests, 0) === sent, 'every request to be reported')
  const s = await status()
  t.equal(s.workers.workers.reduce((n, w) => n + w.requests, 0), sent, 'per worker, adding up')
  t.ok(s.workers.workers.every((w) => w.requests > 0), 'both workers forwarded')
  const metrics = (await get(`${admin}/metrics`)).body
  const total = [...metrics.matchAll(/^vigil_requests_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0)
  t.equal(total, sent, 'vigil_requests_total adds up both workers')
  t.equal([...metrics.matchAll(/^vigil_server_up\{/gm)].length, 8, 'health series once per server (the primary decides them)')
  t.match(metrics, /^vigil_server_up\{upstream="api",server="[^"]+"\} 1$/m)
  t.match(metrics, /^vigil_state_propagation_seconds_count \d+$/m)
  const html = (await get(`${admin}/status?format=html`)).body
  t.match(html, /<h2>workers<\/h2>/, 'the html page lists the workers')
})

t.test("active.trafficInterval: the primary's checks are left out while the workers' requests are answered", async (t) => {
  const skips = async (): Promise<number> => {
    const m = new RegExp(`^vigil_check_skips_total\\{server="${busy}",type="http",reason="traffic"\\} (\\d+)$`, 'm').exec((await get(`${admin}/metrics`)).body)
    return Number(m?.[1] ?? 0)
  }
  t.equal(await skips(), 0, 'no traffic yet: every due check runs')
  const { a, b } = pair as Required<typeof pair>
  // Requests through both workers until the primary hears of their answers (each worker's batch) and skips a check.
  const bodies = new Set<string>()
  await until(async () => {
    for (const c of [a, b]) bodies.add((await request('/busy', c.agent)).body)
    return (await skips()) > 0
  }, 'a check left out for traffic')
  t.same([...bodies], ['busy'], 'every request answered by the busy server')
  const s = (await status()).servers.server.find((x) => x.name === busy) as unknown as { checksSkipped: { traffic: number } }
  t.ok(s.checksSkipped.traffic > 0, 'the status page counts it too')
})

t.test('after an ejection, one trial request for the whole proxy, not one per worker', async (t) => {
  const { a, b } = pair as Required<typeof pair>
  const trials = (): number => cli.lines.filter((l) => l['event'] === 'trial' && l['server'] === sick).length
  // A key that maps to sick: its first request fails and ejects it.
  let key = ''
  for (let i = 0; key === ''; i++) if ((await get(`${url}/trial`, { dispatcher: a.agent, headers: { 'x-key': String(i) } })).body === 'sick') key = String(i)
  await until(() => ejectedLines(sick).length > 0, 'sick to be ejected')
  // No traffic, no trial: what sick served so far stays.
  await until(converged, 'every worker to apply the state')
  const [served0, trials0] = [served.get('sick') ?? 0, trials()]
  // Traffic on both workers at once while sick is ejected, tried, ejected again, several times. Its answers take
  // 300 ms: while one worker's trial runs, the other has requests to send too.
  await until(async () => {
    await Promise.all([a, b].map((c) => get(`${url}/trial/slow`, { dispatcher: c.agent, headers: { 'x-key': key } })))
    return trials() >= trials0 + 6
  }, 'six trials of sick')
  t.ok(ejectedLines(sick).every((l) => l['pid'] === primary), 'the primary decides')
  // Each trial is one request, from one worker (with a trial per worker, sick would serve twice as many).
  const sent = (): number => (served.get('sick') ?? 0) - served0
  await until(() => sent() === trials() - trials0, 'one request per trial')
  t.equal(sent(), trials() - trials0, `${sent()} requests for ${trials() - trials0} trials`)
})

t.test('a reload reaches every worker; workers is restart-only', async (t) => {
  const before = (await status()).servers.generation
  writeConfig(file, config({ workers: 3 }, [bad1, bad2, bad3, spare]))
  process.kill(primary, 'SIGHUP')
  await until(async () => {
    const s = await status()
    return s.servers.generation === before + 1 && s.workers.workers.every((w) => w.generation === before + 1)
  }, 'every worker to serve the new generation')
  const warning = cli.lines.find((l) => l['msg'] === 'these settings change at the next restart') as { settings: string[]; pid: number } | undefined
  t.same(warning?.settings, ['workers'], 'the restart warning names workers')
  t.equal((await status()).workers.workers.length, 2, 'still two workers')
  const { a, b } = pair as Required<typeof pair>
  // The kept servers keep their state: bad1 is still out; the added one serves on both workers.
  const bodies = new Set<string>()
  for (let i = 0; i < 4; i++) for (const c of [a, b]) bodies.add((await request('/', c.agent)).body)
  t.ok(bodies.has('spare') && !bodies.has('bad1'), `the new server serves, bad1 stays out (${[...bodies].join(' ')})`)
  writeConfig(file, '{ "listeners": [] ')
  process.kill(primary, 'SIGHUP')
  await until(() => cli.lines.some((l) => l['msg'] === 'config reload rejected; the running config stays'), 'the bad file to be rejected')
  await sleep(200)
  const s = await status()
  t.ok(s.workers.workers.every((w) => w.generation === before + 1), 'a rejected file reaches no worker')
  writeConfig(file, config({}, [bad1, bad2, bad3, spare]))
})

t.test('a generation the workers cannot apply is sent to them again until they apply it', async (t) => {
  const busyPort = await held()
  const before = (await status()).servers.generation
  const next = config({}, [bad1, bad2, bad3, spare])
  next.listeners.push({ address: busyPort.address, upstream: 'probe' })
  writeConfig(file, next)
  process.kill(primary, 'SIGHUP')
  const failed = (): Record<string, unknown>[] => cli.lines.filter((l) => (l['msg'] as string).startsWith('a worker could not apply the generation') && l['generation'] === before + 1)
  await until(() => failed().length === 2, 'both workers to fail to bind the new listener')
  const s = await status()
  t.equal(s.servers.generation, before + 1, 'the primary applied it (it binds no listener)')
  t.ok(s.workers.workers.every((w) => w.generation === before), 'the workers serve the generation before')
  t.equal((await request('/probe', agent())).status, 200, 'and keep serving')
  await new Promise((resolve) => busyPort.server.close(resolve))
  await until(async () => (await status()).workers.workers.every((w) => w.generation === before + 1), 'every worker to apply it on a retry')
  // The status may show a worker's generation before its log line has come through the primary's stdout.
  const retried = (): number => cli.lines.filter((l) => l['msg'] === 'the worker applied the generation on a retry').length
  await until(() => retried() >= 2, 'both retries to be said')
  t.equal(retried(), 2, 'each retry that worked is said, once')
  t.equal(failed().length, 2, 'each failure said once')
  t.equal((await get(`http://${busyPort.address}/probe`)).status, 200, 'the new listener serves')
  writeConfig(file, config({}, [bad1, bad2, bad3, spare]))
  process.kill(primary, 'SIGHUP')
  await until(async () => (await status()).workers.workers.every((w) => w.generation === before + 2), 'back to one listener')
})

t.test("a reload that changes a group's protocol: every worker sends its requests over the new one", async (t) => {
  const h1 = await named('over http/1.1', 200)
  const h2 = createH2Server()
  h2.on('stream', (stream) => {
    stream.respond({ ':status': 200 })
    stream.end('over h2c')
  })
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => h2.close(resolve)))
  const h2c = `127.0.0.1:${(h2.address() as { port: number }).port}`
  const { a, b } = pair as Required<typeof pair>
  const withProto = (upstream: Config['upstreams'][string]): Config => {
    const next = config({}, [bad1, bad2, bad3, spare])
    next.listeners[0]?.routes?.unshift({ pathPrefix: '/proto', upstream: 'proto' })
    next.upstreams['proto'] = upstream
    return next
  }
  const apply = async (next: Config): Promise<void> => {
    const before = (await status()).servers.generation
    writeConfig(file, next)
    process.kill(primary, 'SIGHUP')
    await until(async () => (await status()).workers.workers.every((w) => w.generation === before + 1), 'every worker to serve the new generation')
  }
  await apply(withProto({ servers: [{ address: h1 }] }))
  for (const c of [a, b]) t.equal((await request('/proto', c.agent)).body, 'over http/1.1', 'each worker: HTTP/1.1 first')
  await apply(withProto({ protocol: 'h2c', servers: [{ address: h2c }] }))
  for (const c of [a, b]) t.equal((await request('/proto', c.agent)).body, 'over h2c', 'each worker: h2c after the reload')
  await apply(config({}, [bad1, bad2, bad3, spare]))
})

t.test('PUT /log sets the level of every worker', async (t) => {
  const refused = (): number => cli.lines.filter((l) => l['msg'] === 'upstream request failed' && l['peer'] === gone.address).length
  const { a, b } = pair as Required<typeof pair>
  const level = async (l: string): Promise<void> => {
    t.equal((await get(`${admin}/log`, { method: 'PUT', body: JSON.stringify({ level: l }) })).status, 200)
    // A scrape waits for every worker's answer, and a worker reads the primary's messages in order: it holds the level.
    await get(`${admin}/metrics`)
  }
  await level('error')
  const quiet = refused()
  for (const c of [a, b]) t.equal((await request('/gone', c.agent)).status, 502)
  await level('info')
  for (const c of [a, b]) t.equal((await request('/gone', c.agent)).status, 502)
  await until(() => refused() >= quiet + 2, "both workers' warnings at info")
  t.equal(refused(), quiet + 2, 'none while the level was error: each worker took it')
})

t.test('a worker SIGKILLed with requests in flight is replaced; the other worker finishes its requests', async (t) => {
  const slow = Array.from({ length: 6 }, () => agent())
  const replies = slow.map((a) =>
    request('/probe/slow', a).then(
      (r) => (r.status === 200 && r.body === 'probe' ? 'ok' : `status ${r.status}`),
      (err: Error) => `failed: ${err.message}`,
    ),
  )
  await until(async () => (await status()).servers.server.find((x) => x.upstream === 'probe')?.inflight === 6, 'six slow requests in flight')
  const victim = (await status()).workers.workers[0] as WorkerRow
  process.kill(victim.pid, 'SIGKILL')
  const outcomes = await Promise.all(replies)
  const ok = outcomes.filter((o) => o === 'ok').length
  t.ok(ok >= 1, `the other worker's requests complete (${outcomes.join(', ')})`)
  t.ok(ok < 6, "the killed worker's requests end with it")
  await until(async () => {
    const w = (await status()).workers.workers.find((x) => x.worker === victim.worker)
    return w !== undefined && w.pid !== victim.pid && w.serving && w.restarts === 1
  }, 'a new worker in its place')
  t.ok(cli.lines.some((l) => l['msg'] === 'worker exited; starting a new one' && l['signal'] === 'SIGKILL'), 'the exit is logged')
  await until(converged, 'the new worker to take the state')
  for (let i = 0; i < 4; i++) t.equal((await request('/probe', agent())).status, 200, 'both workers serve')
})

t.test('a worker that stops answering (SIGSTOP) is killed and replaced', async (t) => {
  const victim = (await status()).workers.workers[1] as WorkerRow
  process.kill(victim.pid, 'SIGSTOP')
  await until(async () => {
    const w = (await status()).workers.workers.find((x) => x.worker === victim.worker)
    return w !== undefined && w.pid !== victim.pid && w.serving
  }, 'a new worker in place of the silent one')
  t.ok(cli.lines.some((l) => l['msg'] === 'worker stopped answering; killing it for a new one' && l['worker'] === victim.worker), 'the primary says why')
  await until(converged, 'the new worker to take the state')
  for (let i = 0; i < 4; i++) t.equal((await request('/probe', agent())).status, 200, 'both workers serve')
})

t.test('SIGTERM: both workers finish their requests in flight, then every process exits 0', async (t) => {
  const pids = (await status()).workers.workers.map((w) => w.pid)
  const inflight = Array.from({ length: 4 }, () => request('/probe/slow', agent()).then((r) => `${r.status} ${r.body}`, (err: Error) => `failed: ${err.message}`))
  await until(async () => (await status()).servers.server.find((x) => x.upstream === 'probe')?.inflight === 4, 'four slow requests in flight')
  process.kill(primary, 'SIGTERM')
  t.same(await Promise.all(inflight), Array(4).fill('200 probe'), 'every request in flight completes')
  t.equal(await cli.exited, 0, 'the primary exits 0')
  const alive = pids.filter((pid) => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  })
  t.same(alive, [], 'no worker is left')
})
