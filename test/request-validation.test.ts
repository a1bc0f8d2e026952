// RFC 9112 request validation over raw sockets: each case gets its status and x-vigil-error, nothing reaches the
// provider, and vigil serves the next request. TRACE and userinfo targets are settings (refused by default).
import t from 'tap'
import type { ServerResponse } from 'node:http'
import { echo, httpServer, startProxy } from './helpers/index.js'
import { exchange } from './helpers/raw.js'

t.test('request validation', async (t) => {
  const seen: string[] = []
  const up = await httpServer(t, (req, res) => {
    seen.push(`${req.method} ${req.url}`)
    echo(req, res as ServerResponse)
  })
  const proxy = await startProxy(t, {
    listeners: [
      { address: '127.0.0.1:0', upstream: 'api' },
      { address: '127.0.0.1:0', upstream: 'api', limits: { allowTrace: true, allowUserinfo: true } },
    ],
    upstreams: { api: { servers: [{ address: up.address }] } },
  })
  const relaxed = (proxy.vigil.listenerAddresses[1] as { port: number }).port
  const refused: [string, string, number, string][] = [
    ['Host with a space', 'GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n', 400, 'invalid_host'],
    ['Host with a comma list', 'GET / HTTP/1.1\r\nHost: a, b\r\nConnection: close\r\n\r\n', 400, 'invalid_host'],
    ['Host with a slash', 'GET / HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n\r\n', 400, 'invalid_host'],
    ['HTTP/1.0 with Transfer-Encoding: chunked', 'POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 400, 'bad_framing'],
    ['Transfer-Encoding: gzip, chunked', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 501, 'unsupported_transfer_coding'],
    ['a 20 KB URL', `GET /${'u'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414, 'uri_too_long'],
    ['TRACE', 'TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 405, 'method_not_allowed'],
    ['a target with userinfo', 'GET http://user:pw@x/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'userinfo_in_target'],
  ]
  for (const [name, bytes, status, code] of refused) {
    await t.test(`${name}: ${status}`, async (t) => {
      seen.length = 0
      const r = await exchange(proxy.port, { send: bytes })
      t.equal(r.status, status)
      t.equal(r.header('x-vigil-error'), code)
      t.same(seen, [], 'nothing reached the provider')
      const next = await exchange(proxy.port, { send: 'GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' })
      t.equal(next.status, 200, 'vigil serves the next request')
    })
  }

  await t.test('a malformed chunked body: the provider sees the request aborted, never a shorter body as complete', async (t) => {
    const complete: string[] = []
    const aborted: string[] = []
    const body = await httpServer(t, (req, res) => {
      let got = ''
      req.on('data', (d: Buffer) => (got += d.toString()))
      req.on('error', () => {})
      req.on('aborted', () => aborted.push(got))
      req.on('end', () => {
        complete.push(got)
        res.end('ok')
      })
    })
    const p = await startProxy(t, { upstreams: { api: { servers: [{ address: body.address }] } } })
    const head = 'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n'
    for (const bad of ['ZZ\r\nbad\r\n0\r\n\r\n', '3\r\nabcXX\r\n0\r\n\r\n']) {
      // The valid first chunk in its own write, so it has streamed to the provider before the bad one arrives.
      const r = await exchange(p.port, { send: [head, bad], gap: 200 })
      t.equal(r.status, 400, `${JSON.stringify(bad)}: 400`)
    }
    const down = Date.now() + 5_000
    while (aborted.length < 2 && Date.now() < down) await new Promise((r) => setTimeout(r, 20))
    t.same(complete, [], 'no body ever ended as complete')
    t.equal(aborted.length, 2, `the provider saw both requests aborted, after ${JSON.stringify(aborted)}`)
  })

  await t.test('a valid Host with a port, an IPv6 literal', async (t) => {
    for (const host of ['example.com:8080', '[::1]:80', 'a-b.c_d']) {
      const r = await exchange(proxy.port, { send: `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n` })
      t.equal(r.status, 200, host)
    }
  })

  await t.test('limits.allowTrace and limits.allowUserinfo forward them', async (t) => {
    seen.length = 0
    const trace = await exchange(relaxed, { send: 'TRACE /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' })
    t.equal(trace.status, 200)
    const userinfo = await exchange(relaxed, { send: 'GET http://user:pw@x/u HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' })
    t.equal(userinfo.status, 200)
    t.same(seen, ['TRACE /t', 'GET /u'], 'the provider got both, the userinfo dropped from the target')
  })
})
