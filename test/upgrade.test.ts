// WebSocket upgrades end to end: balanced like requests, counted while open, cut cleanly when a provider dies.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { once } from 'node:events'
import WebSocket from 'ws'
import { waitFor } from './helpers/wait.js'
import { recordEvents, statusOf } from './helpers/health.js'
import { closedPort, get, httpServer, root, startProxy } from './helpers/index.js'
import { exchange, rawProvider } from './helpers/raw.js'

/** A WebSocket echo provider in its own process group (so it can be SIGKILLed), reporting its port on stdout. */
const WS_PROVIDER = `
const { WebSocketServer } = require('ws')
const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' }, () => console.log(JSON.stringify({ port: wss.address().port })))
wss.on('connection', (ws, req) => {
  ws.send(JSON.stringify({ name: process.argv[1], url: req.url, xff: req.headers['x-forwarded-for'], forwarded: req.headers['forwarded'] }))
  ws.on('message', (m) => ws.send('echo:' + m))
})
`

async function wsProvider(t: Test, name: string): Promise<{ address: string; kill(): Promise<void> }> {
  const child = spawn(process.execPath, ['-e', WS_PROVIDER, name], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  const exited = once(child, 'exit')
  const kill = async (): Promise<void> => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL')
    } catch {
      // already gone
    }
    await exited
  }
  t.teardown(kill)
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string]
  return { address: `127.0.0.1:${(JSON.parse(line) as { port: number }).port}`, kill }
}

interface Open {
  ws: WebSocket
  hello: { name: string; url: string; xff: string; forwarded: string }
}

async function open(url: string): Promise<Open> {
  const ws = new WebSocket(url)
  ws.on('error', () => {})
  const [data] = (await once(ws, 'message')) as [Buffer]
  return { ws, hello: JSON.parse(data.toString()) as Open['hello'] }
}

async function refused(url: string): Promise<{ status: number; code: string | undefined }> {
  const ws = new WebSocket(url)
  ws.on('error', () => {})
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage]
  res.resume()
  return { status: res.statusCode as number, code: res.headers['x-vigil-error'] as string | undefined }
}

t.test('upgrades are balanced across providers, tunnel both ways and count as in-flight while open', async (t) => {
  const a = await wsProvider(t, 'a')
  const b = await wsProvider(t, 'b')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: a.address }, { address: b.address }] } } })
  const peers = proxy.vigil.upstreams.get('api')!.peers
  const url = `${proxy.url.replace('http', 'ws')}/chat?room=1`
  const conns = [await open(url), await open(url), await open(url), await open(url)]
  t.same(conns.map((c) => c.hello.name).sort(), ['a', 'a', 'b', 'b'], 'round robin over the two providers')
  t.equal(conns[0]!.hello.url, '/chat?room=1')
  t.equal(conns[0]!.hello.xff, '127.0.0.1', 'forwarding headers as for any request')
  t.match(conns[0]!.hello.forwarded, /^for=127\.0\.0\.1;proto=http/)
  t.same(peers.map((p) => p.inflight), [2, 2], 'each open tunnel counts on its peer')
  const c = conns[0]!.ws
  c.send('ping')
  t.equal(String(((await once(c, 'message')) as [Buffer])[0]), 'echo:ping')
  for (const { ws } of conns) {
    ws.close()
    await once(ws, 'close')
  }
  await waitFor(() => peers.every((p) => p.inflight === 0))
  t.same(peers.map((p) => p.inflight), [0, 0], 'released when closed')
})

t.test('least_conn sees open tunnels: plain requests go to the peer without one', async (t) => {
  const a = await wsProvider(t, 'a')
  const b = await wsProvider(t, 'b')
  const proxy = await startProxy(t, { upstreams: { api: { balance: 'least_conn', servers: [{ address: a.address }, { address: b.address }] } } })
  const peers = proxy.vigil.upstreams.get('api')!.peers
  const tunnel = await open(`${proxy.url.replace('http', 'ws')}/`)
  const busy = peers.find((p) => p.address === (tunnel.hello.name === 'a' ? a.address : b.address))!
  const idle = peers.find((p) => p !== busy)!
  for (let i = 0; i < 4; i++) await get(`${proxy.url}/plain`)
  t.equal(idle.requests, 4, 'every plain request went to the peer without a tunnel')
  t.equal(busy.requests, 1, 'only the upgrade itself (upgrades count as requests)')
  tunnel.ws.close()
  await once(tunnel.ws, 'close')
})

t.test('a provider killed mid-connection closes the client side, and new upgrades go to the survivor', async (t) => {
  const a = await wsProvider(t, 'a')
  const b = await wsProvider(t, 'b')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: a.address }, { address: b.address }] } } })
  const url = `${proxy.url.replace('http', 'ws')}/`
  const first = await open(url)
  const second = await open(url)
  const onA = first.hello.name === 'a' ? first : second
  const closed = once(onA.ws, 'close')
  await a.kill()
  await closed
  t.pass('the client connection on the killed provider was closed')
  const peerA = proxy.vigil.upstreams.get('api')!.find(a.address)!
  await waitFor(() => peerA.inflight === 0)
  t.equal(peerA.inflight, 0)
  const other = onA === first ? second : first
  other.ws.send('still there?')
  t.equal(String(((await once(other.ws, 'message')) as [Buffer])[0]), 'echo:still there?', 'the other tunnel is untouched')
  proxy.vigil.upstreams.get('api')!.find(a.address)!.operator = 'disabled'
  proxy.vigil.upstreams.get('api')!.refresh()
  t.equal((await open(url)).hello.name, 'b', 'a new upgrade is balanced to the eligible provider')
})

/** Which provider took an upgrade, or how it was refused. */
function outcome(url: string): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url)
    ws.on('error', () => resolve('error'))
    ws.on('unexpected-response', (_req, res) => {
      res.resume()
      resolve(`${res.statusCode} ${String(res.headers['x-vigil-error'])}`)
    })
    ws.on('message', (data) => {
      resolve((JSON.parse(String(data)) as Open['hello']).name)
      ws.close()
    })
  })
}

t.test('a failed upgrade counts against its provider: a dead one is ejected and new upgrades avoid it', async (t) => {
  const a = await wsProvider(t, 'a')
  const b = await wsProvider(t, 'b')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: a.address }, { address: b.address }], passive: { maxFails: 1, failTimeout: '60s' } } } })
  const passive = recordEvents(proxy.vigil, 'passive')
  const url = `${proxy.url.replace('http', 'ws')}/`
  await a.kill()
  const seen: string[] = []
  // Round robin sends one of the first two upgrades to the dead provider; upgrades are never retried.
  for (let i = 0; i < 2 && !passive.some((e) => e.event === 'ejected'); i++) seen.push(await outcome(url))
  t.ok(seen.includes('502 connect_refused'), `the client saw the refusal (${seen.join(', ')})`)
  t.match(
    passive.filter((e) => e.event === 'ejected'),
    [{ server: a.address, reason: 'max_fails', evidence: { failure: 'connect_refused' } }],
  )
  for (let i = 0; i < 4; i++) t.equal(await outcome(url), 'b', 'new upgrades go to the survivor')
  const row = (await statusOf(proxy.admin)).find((r) => r.name === a.address)
  t.match(row, { passive: 'ejected', ejectionFailure: 'connect_refused', failures: 1, requests: 1 })
})

t.test('upgrades vigil cannot proxy get a clear HTTP answer', async (t) => {
  const dead = await closedPort()
  const plain = await httpServer(t, (_req, res) => {
    res.writeHead(404, { 'content-type': 'text/plain' })
    res.end('no websockets here')
  })
  const silent = await rawProvider(t, () => {})
  const proxy = await startProxy(t, {
    listeners: [
      {
        address: '127.0.0.1:0',
        routes: [
          { pathPrefix: '/silent', upstream: 'silent' },
          { pathPrefix: '/dead', upstream: 'dead' },
          { pathPrefix: '/none', upstream: 'none' },
          { pathPrefix: '/plain', upstream: 'plain' },
        ],
      },
    ],
    upstreams: {
      dead: { servers: [{ address: `127.0.0.1:${dead}` }] },
      none: { servers: [{ address: `127.0.0.1:${dead}`, down: true }] },
      plain: { servers: [{ address: plain.address }] },
      silent: { servers: [{ address: silent.address }], timeouts: { response: 300 } },
    },
  })
  const ws = proxy.url.replace('http', 'ws')
  t.same(await refused(`${ws}/dead`), { status: 502, code: 'connect_refused' })
  t.same(await refused(`${ws}/silent`), { status: 504, code: 'response_timeout' }, 'a provider that never answers the upgrade')
  t.same(await refused(`${ws}/none`), { status: 503, code: 'no_live_upstreams' })
  t.same(await refused(`${ws}/elsewhere`), { status: 404, code: 'no_route' })
  const twoHosts = await exchange(proxy.port, {
    send: 'GET /plain HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  })
  t.match(twoHosts, { status: 400, closed: true }, 'upgrades get the same request checks')
  t.equal(twoHosts.header('x-vigil-error'), 'duplicate_host')
  t.same(await refused(`${ws}/plain`), { status: 404, code: undefined }, "the provider's own refusal is passed on")
  await waitFor(() => proxy.vigil.upstreams.get('silent')!.peers[0]!.inflight === 0)
  t.same(
    ['dead', 'silent'].map((u) => proxy.vigil.upstreams.get(u)!.peers[0]!.inflight),
    [0, 0],
  )
})

t.test('stopping vigil closes open tunnels instead of waiting for them', async (t) => {
  const a = await wsProvider(t, 'a')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: a.address }] } } })
  const conn = await open(`${proxy.url.replace('http', 'ws')}/`)
  const closed = once(conn.ws, 'close')
  await proxy.vigil.stop(200)
  await closed
  t.pass('stopped, and the client saw its connection close')
})
