// The admin listener under hostile requests: no token, wrong token, traversal and broken escapes in route names.
import t from 'tap'
import { get, httpServer, startProxy } from './helpers/index.js'
import { exchange } from './helpers/raw.js'
import { authorized, safeAdminPath } from '../src/admin/guard.js'

t.test('admin requests over raw sockets', async (t) => {
  const up = await httpServer(t, (_req, res) => res.end('ok'))
  const proxy = await startProxy(t, { admin: { address: '127.0.0.1:0', token: 's3cret' }, upstreams: { api: { servers: [{ address: up.address }] } } })
  const port = Number(new URL(proxy.admin).port)
  const auth = 'Authorization: Bearer s3cret\r\n'
  const ask = async (line: string, headers = ''): Promise<number | undefined> =>
    (await exchange(port, { send: `${line} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n${headers}\r\n` })).status
  const peer = proxy.vigil.upstreams.get('api')!.peers[0]!

  t.equal(await ask('GET /status'), 401, 'no token')
  t.equal(await ask('GET /status', 'Authorization: Bearer wrong\r\n'), 401, 'wrong token')
  t.equal(await ask('GET /status', 'Authorization: s3cret\r\n'), 401, 'token without the Bearer scheme')
  t.equal(await ask(`POST /upstreams/api/servers/${up.address}/disable`), 401, 'an action without a token')
  t.equal(peer.operator, 'enabled', 'and it did nothing')
  t.equal(await ask('GET /status', auth), 200, 'the right token')

  for (const path of [
    '/status/../status',
    '/upstreams/../../etc/passwd',
    `/upstreams/api/servers/%2e%2e/disable`,
    `/upstreams/api%2fx/servers/${up.address}/disable`,
    `/upstreams/api/servers/${up.address}%5c..%5c/disable`,
    '/upstreams/%E0%A4%A/servers/x/disable',
    '/upstreams/api/servers/a%00b/disable',
    '//status',
  ]) {
    t.equal(await ask(`POST ${path}`, auth), 400, `refused: ${path}`)
  }
  t.equal(peer.operator, 'enabled', 'no action went through')
  t.equal((await get(`${proxy.admin}/status`, { headers: { authorization: 'Bearer s3cret' } })).status, 200, 'the admin listener still serves')
  t.equal((await get(`${proxy.url}/`)).body, 'ok', 'and so does the proxy')
})

t.test('guard units', async (t) => {
  t.equal(authorized(undefined, undefined), true, 'no token configured: open (loopback by default)')
  t.equal(authorized(undefined, 'x'), false)
  t.equal(authorized('Bearer x', 'x'), true)
  t.equal(authorized('Bearer xx', 'x'), false)
  t.equal(safeAdminPath(undefined), false)
  t.equal(safeAdminPath('status'), false)
  t.equal(safeAdminPath('/status?format=json&x=%zz'), true, 'the query is parsed separately')
  t.equal(safeAdminPath('/upstreams/api/servers/127.0.0.1%3A9001/drain'), true, 'an encoded colon is fine')
})
