// Pipelining clients over real sockets: slow readers that pipeline and leave must not leak upstream attempts,
// wedge the pool or count against healthy providers; requests pipelined behind one that closes are ignored.
import t from 'tap'
import type { ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { client, echo, get, httpServer, spawnProvider, startProxy } from './helpers/index.js'
import { exchange } from './helpers/raw.js'
import { waitFor } from './helpers/wait.js'

interface StatusRow {
  name: string
  inflight: number
  failures: number
  ejections: number
  passive: string
}

const statusRows = async (admin: string): Promise<StatusRow[]> =>
  (JSON.parse((await get(`${admin}/status?format=json`)).body) as { servers: { server: StatusRow[] } }).servers.server

/**
 * One misbehaving client connection: `pipeline` GETs of a 1 MiB body in one write, never read (the socket is
 * paused, so the kernel's receive buffer fills and stays full), then closed after `hold` ms.
 */
function slowPipeliner(port: number, pipeline: number, hold: number): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.on('error', () => {})
    s.once('connect', () => {
      s.pause()
      let bytes = ''
      for (let i = 0; i < pipeline; i++) bytes += `GET /big?bytes=1048576&n=${i} HTTP/1.1\r\nHost: x\r\n\r\n`
      s.write(bytes)
      setTimeout(() => {
        s.destroy()
        resolve()
      }, hold)
    })
  })
}

t.test('pipelined slow readers that leave end their upstream attempts', async (t) => {
  const providers = await Promise.all(['a', 'b', 'c'].map((n) => spawnProvider(t, n)))
  const logs: string[] = []
  const logger = (await import('pino')).default({ level: 'warn' }, { write: (line: string) => void logs.push(line) })
  const proxy = await startProxy(t, { upstreams: { api: { servers: providers.map((p) => ({ address: p.address })) } } }, logger)
  // 100 connections, 10 at a time, 6 pipelined 1 MiB GETs each: before the fix ~5 of the 6 attempts of every
  // connection never ended, enough to take all 256 pooled connections of the providers and then some.
  for (let round = 0; round < 10; round++) await Promise.all(Array.from({ length: 10 }, () => slowPipeliner(proxy.port, 6, 300)))

  await t.test('in flight goes back to 0 on the status page', async (t) => {
    await waitFor(() => proxy.vigil.upstreams.get('api')!.peers.every((p) => p.inflight === 0), 30_000).catch(() => {})
    const rows = await statusRows(proxy.admin)
    t.same(
      rows.map((r) => r.inflight),
      [0, 0, 0],
      'no attempt left in flight',
    )
    t.same(
      rows.map((r) => [r.failures, r.ejections, r.passive]),
      [
        [0, 0, 'ok'],
        [0, 0, 'ok'],
        [0, 0, 'ok'],
      ],
      'clients leaving counted nothing against the providers: no failure, no ejection',
    )
    t.same(
      logs.filter((l) => /upstream request failed|server capped|ejected/.test(l)),
      [],
      'no upstream failure, capped or ejected line logged',
    )
  })

  await t.test('10 of 10 plain GETs are answered afterwards', async (t) => {
    const agent = client(t)
    const replies = await Promise.all(Array.from({ length: 10 }, () => get(`${proxy.url}/plain`, { dispatcher: agent })))
    t.same(
      replies.map((r) => r.status),
      Array(10).fill(200),
    )
  })

  await t.test('a pipelining client that reads gets every response, in order', async (t) => {
    let bytes = ''
    for (let i = 0; i < 4; i++) bytes += `GET /n${i} HTTP/1.1\r\nHost: x\r\n\r\n`
    bytes += 'GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
    const r = await exchange(proxy.port, { send: bytes })
    t.equal(r.text.match(/^HTTP\/1\.1 200 /gm)?.length, 5, 'five responses')
    t.ok(r.closed, 'closed after the last one')
  })
})

t.test('bytes after a request that closes the connection are ignored; its own answer reaches the client', async (t) => {
  const seen: string[] = []
  const up = await httpServer(t, (req, res) => {
    seen.push(`${req.method} ${req.url}`)
    echo(req, res as ServerResponse)
  })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  const cases: [string, string, string][] = [
    ['Connection: close, then a second request', 'GET /echo?a=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /echo?a=2 HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /echo?a=1'],
    ['two HTTP/1.0 requests', 'GET /echo?b=1 HTTP/1.0\r\n\r\nGET /echo?b=2 HTTP/1.0\r\n\r\n', 'GET /echo?b=1'],
    [
      'a POST with Connection: close, its body, then a second request',
      'POST /echo?c=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhelloGET /echo?c=2 HTTP/1.1\r\nHost: x\r\n\r\n',
      'POST /echo?c=1',
    ],
  ]
  for (const [name, bytes, first] of cases) {
    await t.test(name, async (t) => {
      seen.length = 0
      const r = await exchange(proxy.port, { send: bytes })
      t.equal(r.status, 200, "the first request's real response")
      t.match(r.text, first.split(' ')[1] as string, 'it is the echo of the first request')
      t.equal(r.text.match(/^HTTP\/1\.[01] /gm)?.length, 1, 'one response only')
      t.ok(r.closed, 'then the connection is closed')
      t.same(seen, [first], 'the provider saw the first request only')
    })
  }
})

t.test('a pipelined POST then GET reach the provider in order', async (t) => {
  const seen: string[] = []
  const up = await httpServer(t, (req, res) => {
    seen.push(`${req.method} ${req.url}`)
    echo(req, res as ServerResponse)
  })
  // retry.tries > 1 (the default) buffers a small body so it can be sent again: the case that reordered them.
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  const bytes = 'POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
  const r = await exchange(proxy.port, { send: bytes })
  t.same(seen, ['POST /first', 'GET /second'], 'forwarded in the order the client sent them')
  t.match(r.text, /"url":"\/first"[\s\S]*"url":"\/second"/, 'answered in order')
})
