// The access log end to end: the real proxy (in-process, and the CLI as a child for SIGUSR1), real providers,
// real sockets; lines read back from the file they were written to.
import t from 'tap'
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { closedPort, get, httpServer, startProxy } from './helpers/index.js'
import { exchange } from './helpers/raw.js'
import { startCli } from './helpers/cli.js'
import { waitFor } from './helpers/wait.js'
import WebSocket, { WebSocketServer } from 'ws'
import type { AddressInfo } from 'node:net'

interface Line {
  time: string
  client: string
  method: string | null
  host: string | null
  path: string | null
  status: number
  bytesIn: number
  bytesOut: number
  ms: number
  upstream: string | null
  attempts: number
  tries: { address: string; status: number | string; ms: number }[]
  error: string | null
  aborted: boolean
}

const lines = (file: string): string[] => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [])
const json = (file: string): Line[] => lines(file).map((l) => JSON.parse(l) as Line)

t.test('json: one line per request, vigil\'s own answers included, every field', async (t) => {
  const ok = await httpServer(t, (req, res) => {
    req.resume()
    req.on('end', () => res.end(req.url?.startsWith('/big') === true ? 'x'.repeat(1000) : 'ok'))
  })
  const unavailable = await httpServer(t, (_req, res) => {
    res.statusCode = 503
    res.end('busy')
  })
  const dead = await closedPort()
  const file = join(t.testdir(), 'access.log')
  const p = await startProxy(t, {
    listeners: [
      {
        address: '127.0.0.1:0',
        routes: [
          { host: 'api.local', upstream: 'api' },
          { host: 'dead.local', upstream: 'dead' },
        ],
      },
    ],
    log: { access: { path: file } },
    upstreams: {
      // The 503 provider first: the request is retried on the good one.
      api: { balance: 'round_robin', servers: [{ address: unavailable.address }, { address: ok.address }], retry: { on: ['error', 'timeout', 'http_503'] } },
      dead: { servers: [{ address: `127.0.0.1:${dead}` }] },
    },
  })
  const big = await get(`${p.url}/big?q=1`, { method: 'PUT', headers: { host: 'api.local', 'user-agent': 'tap' }, body: 'hello' })
  t.equal(big.status, 200)
  t.equal((await get(`${p.url}/nowhere`, { headers: { host: 'other.local' } })).status, 404)
  t.equal((await get(`${p.url}/`, { headers: { host: 'dead.local' } })).status, 502)
  const hostile = await exchange(p.port, { send: 'GET / HTTP/1.1\r\nHost: api.local\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' })
  t.equal(hostile.status, 400)
  await waitFor(() => lines(file).length >= 4)
  const [first, noRoute, badGateway, rejected] = json(file)
  t.match(first, {
    client: '127.0.0.1',
    method: 'PUT',
    host: 'api.local',
    path: '/big?q=1',
    status: 200,
    upstream: 'api',
    attempts: 2,
    tries: [
      { address: unavailable.address, status: 503 },
      { address: ok.address, status: 200 },
    ],
    error: null,
    aborted: false,
  })
  t.ok(first && first.bytesIn > 'hello'.length && first.bytesOut > 1000, 'bytes on the connection: headers and body, both ways')
  t.ok(first && first.ms >= 0 && first.tries.every((x) => x.ms >= 0))
  t.ok(first && !Number.isNaN(Date.parse(first.time)) && first.time.endsWith('Z'), 'ISO 8601 time in UTC')
  t.match(noRoute, { status: 404, host: 'other.local', upstream: null, attempts: 0, error: 'no_route' })
  t.match(badGateway, { status: 502, upstream: 'dead', attempts: 1, tries: [{ address: `127.0.0.1:${dead}`, status: 'connect_refused' }], error: 'connect_refused' })
  t.match(rejected, { status: 400, client: '127.0.0.1', error: 'bad_request' }, 'input Node\'s parser refused has a line too')
  t.equal(lines(file).length, 4, 'nothing else')
})

t.test('a single request at low traffic reaches the file without more traffic (timed flush)', async (t) => {
  const up = await httpServer(t, (_req, res) => res.end('ok'))
  const file = join(t.testdir(), 'access.log')
  const p = await startProxy(t, { log: { access: { path: file } }, upstreams: { api: { servers: [{ address: up.address }] } } })
  const sent = Date.now()
  await get(`${p.url}/one`)
  await waitFor(() => lines(file).length === 1)
  // A generous bound: the flush timer runs every 250 ms; a buffer that waited for a full batch (32 KiB) would never get here.
  t.ok(Date.now() - sent < 5_000, `written after ${Date.now() - sent} ms`)
  t.match(json(file)[0], { path: '/one', status: 200 })
})

t.test('combined format: nginx\'s combined line, then the proxy fields as key=value', async (t) => {
  const up = await httpServer(t, (_req, res) => res.end('ok'))
  const file = join(t.testdir(), 'access.log')
  const p = await startProxy(t, { log: { access: { path: file, format: 'combined' } }, upstreams: { api: { servers: [{ address: up.address }] } } })
  await get(`${p.url}/a%20b?x=1`, { headers: { 'user-agent': 'curl/8 "quoted"', referer: 'http://r/' } })
  await waitFor(() => lines(file).length === 1)
  t.match(
    lines(file)[0],
    new RegExp(
      `^127\\.0\\.0\\.1 - - \\[\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z\\] "GET /a%20b\\?x=1 HTTP/1\\.1" 200 \\d+ "http://r/" "curl/8 \\\\x22quoted\\\\x22" ` +
        `host="127\\.0\\.0\\.1:${p.port}" in=\\d+ time=\\d+\\.\\d{3} upstream=api addr=${up.address.replace(/\./g, '\\.')} ustatus=200 utime=\\d+\\.\\d{3} attempts=1 error=-$`,
    ),
  )
})

t.test('a reload turns the access log on and off for listeners that stay', async (t) => {
  const up = await httpServer(t, (_req, res) => res.end('ok'))
  const file = join(t.testdir(), 'access.log')
  const p = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  await get(`${p.url}/before`)
  await p.vigil.access.configure({ path: file })
  await get(`${p.url}/during`)
  await waitFor(() => lines(file).length === 1)
  await p.vigil.access.configure(false)
  await get(`${p.url}/after`)
  t.same(
    json(file).map((l) => l.path),
    ['/during'],
  )
})

t.test('upgrades: a tunnel has its line when it closes (101), a refused upgrade at once', async (t) => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise((r) => wss.once('listening', r))
  t.teardown(() => new Promise((r) => wss.close(r)))
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(m)))
  const address = `127.0.0.1:${(wss.address() as AddressInfo).port}`
  const file = join(t.testdir(), 'access.log')
  const p = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', routes: [{ pathPrefix: '/ws', upstream: 'api' }] }],
    log: { access: { path: file } },
    upstreams: { api: { servers: [{ address }] } },
  })
  const ws = new WebSocket(`ws://127.0.0.1:${p.port}/ws/chat`)
  await new Promise((r) => ws.once('open', r))
  ws.send('hi')
  await new Promise((r) => ws.once('message', r))
  ws.close()
  await new Promise((r) => ws.once('close', r))
  const refused = new WebSocket(`ws://127.0.0.1:${p.port}/elsewhere`)
  refused.on('error', () => {})
  await new Promise((r) => refused.once('close', r))
  await waitFor(() => lines(file).length === 2)
  const byPath = Object.fromEntries(json(file).map((l) => [l.path, l]))
  t.match(byPath['/ws/chat'], { method: 'GET', status: 101, upstream: 'api', attempts: 1, tries: [{ address, status: 101 }], error: null })
  t.match(byPath['/elsewhere'], { status: 404, error: 'no_route', upstream: null })
})

t.test('CLI: SIGUSR1 reopens the file after it was moved (log rotation)', async (t) => {
  const up = await httpServer(t, (_req, res) => res.end('ok'))
  const dir = t.testdir()
  const file = join(dir, 'access.log')
  const [port, admin] = [await closedPort(), await closedPort()]
  const config = join(dir, 'vigil.json')
  writeFileSync(
    config,
    JSON.stringify({
      listeners: [{ address: `127.0.0.1:${port}`, upstream: 'api' }],
      admin: { address: `127.0.0.1:${admin}` },
      log: { access: { path: file } },
      upstreams: { api: { servers: [{ address: up.address }] } },
    }),
  )
  const { child, exited, lines: logs } = startCli(t, ['start', '-c', config])
  await waitFor(() => logs.some((l) => l.msg === 'vigil started'))
  t.ok(logs.every((l) => typeof l.time === 'string' && l.time.endsWith('Z')), 'the main log uses the same ISO time')
  await get(`http://127.0.0.1:${port}/one`)
  await waitFor(() => lines(file).length === 1)
  renameSync(file, `${file}.1`)
  await get(`http://127.0.0.1:${port}/two`)
  await waitFor(() => lines(`${file}.1`).length === 2)
  process.kill(child.pid as number, 'SIGUSR1')
  await waitFor(() => logs.some((l) => l.msg === 'access log reopened'))
  await get(`http://127.0.0.1:${port}/three`)
  await waitFor(() => lines(file).length === 1)
  // Until the reopen, lines go on to the moved file, like nginx's.
  t.same(
    json(`${file}.1`).map((l) => l.path),
    ['/one', '/two'],
  )
  t.same(
    json(file).map((l) => l.path),
    ['/three'],
  )
  process.kill(child.pid as number, 'SIGTERM')
  t.equal(await exited, 0, 'SIGUSR1 did not stop it (nor start the inspector)')
})
