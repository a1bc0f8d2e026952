import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { request } from 'undici'
import { cliScript, closedPort, httpServer, root } from './helpers/index.js'

const run = (...args: string[]) => spawnSync(process.execPath, [cliScript, ...args], { encoding: 'utf8', timeout: 30_000 })

t.test('--version, --help, usage errors', async (t) => {
  const v = run('--version')
  t.equal(v.status, 0)
  t.match(v.stdout, /^vigil \d+\.\d+\.\d+\n$/)
  const h = run('--help')
  t.equal(h.status, 0)
  t.match(h.stdout, /start --config FILE/)
  t.equal(run().status, 2)
  t.equal(run('frobnicate').status, 2)
  t.match(run('start').stderr, /--config FILE is required/)
  t.equal(run('start', '--bogus').status, 2)
})

t.test('check: a valid file prints a one-line summary and exits 0', async (t) => {
  const r = run('check', '--config', join(root, 'config/vigil.json'))
  t.equal(r.status, 0)
  t.match(r.stdout, /^.*vigil\.json: ok \(1 listener, 1 upstream, 3 servers\)\n$/)
})

t.test('check: every error with file, line, JSON path, found and expected; exit 2', async (t) => {
  const file = join(t.testdir(), 'bad.json')
  writeFileSync(
    file,
    JSON.stringify(
      { listeners: [{ address: '127.0.0.1:8080', upstream: 'nope', extra: 1 }], upstreams: { api: { servers: [{ address: 'no-port' }], timeouts: { idle: 'forever' } } } },
      null,
      2,
    ),
  )
  const r = run('check', '-c', file)
  t.equal(r.status, 2)
  const lines = r.stderr.trim().split('\n')
  t.match(lines[0], /bad\.json: 4 errors/)
  t.match(r.stderr, /bad\.json:\d+:\d+: listeners\[0\]\.extra: found unknown key "extra"/)
  t.match(r.stderr, /listeners\[0\]\.upstream: found "nope", expected the name of an upstream \(api\)/)
  t.match(r.stderr, /upstreams\.api\.servers\[0\]\.address: found string "no-port", expected host:port, e\.g\. 127\.0\.0\.1:8080 or DNS SRV name/)
  t.match(r.stderr, /upstreams\.api\.timeouts\.idle: found string "forever"/)
  const garbage = join(t.testdir(), 'garbage.json')
  writeFileSync(garbage, '{\n  "listeners": [\n')
  const g = run('check', '-c', garbage)
  t.equal(g.status, 2)
  t.match(g.stderr, /garbage\.json:3:1: \(document\): found end of file/)
})

t.test('start: serves, then SIGTERM lets the in-flight request finish and exits 0', async (t) => {
  let release: () => void = () => {}
  let arrived: () => void = () => {}
  const inFlight = new Promise<void>((r) => (arrived = r))
  const up = await httpServer(t, (req, res) => {
    if (req.url !== '/slow') return void res.end('fast')
    arrived()
    release = () => res.end('slow done')
  })
  const listenPort = await closedPort()
  const adminPort = await closedPort()
  const file = join(t.testdir(), 'vigil.json')
  writeFileSync(
    file,
    JSON.stringify({
      listeners: [{ address: `127.0.0.1:${listenPort}`, upstream: 'api' }],
      admin: { address: `127.0.0.1:${adminPort}` },
      upstreams: { api: { servers: [{ address: up.address }] } },
    }),
  )
  const child = spawn(process.execPath, [cliScript, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  t.teardown(() => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL')
    } catch {
      // exited already
    }
  })
  const logs: Record<string, unknown>[] = []
  await new Promise<void>((resolve) =>
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>
      logs.push(entry)
      if (entry['msg'] === 'vigil started') resolve()
    }),
  )
  const url = `http://127.0.0.1:${listenPort}`
  t.equal(await (await request(`${url}/`)).body.text(), 'fast')
  process.kill(child.pid as number, 'SIGHUP')
  t.equal(await (await request(`${url}/`)).body.text(), 'fast', 'SIGHUP does not stop a serving proxy')

  const slow = request(`${url}/slow`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }))
  await inFlight
  process.kill(child.pid as number, 'SIGTERM')
  // Stopped accepting: poll until a new connection is refused, then let the in-flight request finish.
  for (;;) {
    const refused = await request(`${url}/`).then(
      () => false,
      (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
    )
    if (refused) break
    await new Promise((r) => setTimeout(r, 20))
  }
  release()
  t.same(await slow, { status: 200, body: 'slow done' }, 'the in-flight request completed')
  t.equal(await exited, 0)
  t.ok(logs.some((l) => l['msg'] === 'vigil stopped'))
})

t.test('start: a port already in use is one line naming the listener, its address and the cause; exit 1', async (t) => {
  const busy = await httpServer(t, (_req, res) => res.end())
  const file = join(t.testdir(), 'vigil.json')
  const free = await closedPort()
  const other = await closedPort()
  writeFileSync(
    file,
    JSON.stringify({
      listeners: [{ address: `127.0.0.1:${other}`, upstream: 'api' }, { address: busy.address, upstream: 'api' }],
      admin: { address: `127.0.0.1:${free}` },
      upstreams: { api: { servers: [{ address: busy.address }] } },
    }),
  )
  const r = run('start', '-c', file)
  t.equal(r.status, 1)
  t.equal(r.stderr, `vigil: listeners[1].address ${busy.address}: address already in use\n`)
  t.equal(r.stdout, '', 'no log records, no stack')

  writeFileSync(file, JSON.stringify({ listeners: [{ address: `127.0.0.1:${free}`, upstream: 'api' }], admin: { address: busy.address }, upstreams: { api: { servers: [{ address: busy.address }] } } }))
  const a = run('start', '-c', file)
  t.equal(a.status, 1)
  t.equal(a.stderr, `vigil: admin.address ${busy.address}: address already in use\n`)

  const blocker = join(t.testdir(), 'not-a-dir')
  writeFileSync(blocker, '')
  writeFileSync(file, JSON.stringify({ listeners: [{ address: `127.0.0.1:${free}`, upstream: 'api' }], admin: { address: `127.0.0.1:${other}` }, log: { access: { path: join(blocker, 'access.log') } }, upstreams: { api: { servers: [{ address: busy.address }] } } }))
  const l = run('start', '-c', file)
  t.equal(l.status, 1)
  t.match(l.stderr, /^vigil: log\.access\.path .*not-a-dir\/access\.log: a parent is not a directory\n$/)
})
