// The admin API's manners end to end: GET / lists the routes; a wrong method is 405 with Allow; every error is one
// JSON shape; GET /ready follows start, first checks and draining; GET /config hides secrets; log levels by name.
import t, { type Test } from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { client, get, spawnProvider, startProxy, type Reply } from './helpers/index.js'
import { control, waitFor } from './helpers/health.js'
import { tempDir } from './helpers/config-file.js'
import { startCli } from './helpers/cli.js'

type Route = { method: string; path: string; description: string }

/** The one error shape: JSON with a message and a stable code. */
function isError(t: Test, r: Reply, status: number, code: string, what: string): Record<string, unknown> {
  t.equal(r.status, status, `${what}: status`)
  t.match(r.headers['content-type'], /^application\/json/, `${what}: JSON`)
  const body = JSON.parse(r.body) as Record<string, unknown>
  t.match(body, { error: String, code }, `${what}: {error, code}`)
  return body
}

t.test('GET / lists every route; a wrong method is 405 with Allow; OPTIONS and HEAD work', async (t) => {
  const p = await spawnProvider(t, 'r')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: p.address }] } } })
  const { routes } = JSON.parse((await get(`${proxy.admin}/`)).body) as { routes: Route[] }
  const listed = routes.map((r) => `${r.method} ${r.path}`)
  for (const r of ['GET /', 'GET /status', 'GET /metrics', 'GET /ready', 'GET /config', 'GET /log', 'PUT /log', 'GET /reload', 'POST /reload', 'POST /upstreams/NAME/servers/ADDRESS/drain|disable|enable', 'PUT /upstreams/NAME/servers/ADDRESS', 'DELETE /upstreams/NAME/servers/ADDRESS']) {
    t.ok(listed.includes(r), `lists ${r}`)
  }
  t.ok(routes.every((r) => r.description.length > 10), 'each with a description')

  const cases: [string, string, string][] = [
    ['DELETE', '/status', 'GET, HEAD, OPTIONS'],
    ['POST', '/metrics', 'GET, HEAD, OPTIONS'],
    ['POST', '/ready', 'GET, HEAD, OPTIONS'],
    ['PUT', '/config', 'GET, HEAD, OPTIONS'],
    ['POST', '/log', 'GET, PUT, HEAD, OPTIONS'],
    ['PATCH', '/reload', 'GET, POST, HEAD, OPTIONS'],
    ['GET', `/upstreams/api/servers/${p.address}/drain`, 'POST, OPTIONS'],
    ['POST', `/upstreams/api/servers/${p.address}`, 'PUT, DELETE, OPTIONS'],
  ]
  for (const [method, path, allow] of cases) {
    const r = await get(`${proxy.admin}${path}`, { method })
    const body = isError(t, r, 405, 'method_not_allowed', `${method} ${path}`)
    t.equal(r.headers['allow'], allow, `${method} ${path}: Allow`)
    t.same(body['allow'], allow.split(', '))
    const options = await get(`${proxy.admin}${path}`, { method: 'OPTIONS' })
    t.equal(options.status, 204)
    t.equal(options.headers['allow'], allow)
  }
  t.equal(proxy.vigil.upstreams.get('api')?.peers[0]?.operator, 'enabled', 'GET on an action did nothing')
  const head = await get(`${proxy.admin}/status`, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.body, '')
})

t.test('every error is JSON of one shape', async (t) => {
  const p = await spawnProvider(t, 'e')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: p.address }] } } })
  const base = proxy.admin
  isError(t, await get(`${base}/nowhere`), 404, 'not_found', 'unknown route')
  isError(t, await get(`${base}/upstreams/a%2fb/servers/x/drain`, { method: 'POST' }), 400, 'bad_path', 'encoded slash')
  isError(t, await get(`${base}/status?format=xml`), 400, 'bad_request', 'bad format')
  isError(t, await get(`${base}/upstreams/api/servers/127.0.0.1:1/drain`, { method: 'POST' }), 404, 'not_found', 'unknown server')
  isError(t, await get(`${base}/upstreams/api/servers/127.0.0.1:2`, { method: 'PUT', body: '{' }), 400, 'invalid_body', 'not JSON')
  const invalid = isError(t, await get(`${base}/upstreams/api/servers/127.0.0.1:2`, { method: 'PUT', body: '{"weight":0}' }), 400, 'invalid_body', 'bad weight')
  t.match(invalid['issues'], [{ path: 'weight', found: 'number 0', expected: 'an integer from 1 to 1000' }], 'issues as data')
  isError(t, await get(`${base}/upstreams/api/servers/127.0.0.1:2`, { method: 'PUT', body: 'x'.repeat(70_000) }), 413, 'body_too_large', 'huge body')
  isError(t, await get(`${base}/upstreams/api/servers/${p.address}`, { method: 'DELETE' }), 409, 'conflict', 'last server')
  isError(t, await get(`${base}/upstreams/nope/servers/127.0.0.1:2`, { method: 'DELETE' }), 404, 'not_found', 'unknown upstream')
  const reload = isError(t, await get(`${base}/reload`, { method: 'POST' }), 422, 'reload_rejected', 'reload without a file')
  t.match(reload, { ok: false, error: /without a config file/ })
  isError(t, await get(`${base}/log`, { method: 'PUT', body: '{"level":"loud"}' }), 400, 'invalid_body', 'unknown level')

  const guarded = await startProxy(t, { admin: { address: '127.0.0.1:0', token: 's3cret' }, upstreams: { api: { servers: [{ address: p.address }] } } })
  const denied = await get(`${guarded.admin}/status`)
  isError(t, denied, 401, 'unauthorized', 'no token')
  t.equal(denied.headers['www-authenticate'], 'Bearer')
})

t.test('GET /ready: 503 until the first checks ran, 200 once they did, 503 while draining', async (t) => {
  const p = await spawnProvider(t, 'ready')
  // Frozen: the kernel accepts the check's connection, the answer waits until the provider is continued.
  p.signal('SIGSTOP')
  const proxy = await startProxy(t, {
    upstreams: { api: { servers: [{ address: p.address }], active: { type: 'http', interval: '1m', timeout: '1m', rise: 1, fall: 1, http: { path: '/healthz' } } } },
  })
  const starting = await get(`${proxy.admin}/ready`)
  t.equal(starting.status, 503)
  t.same(JSON.parse(starting.body), { ready: false, state: 'starting', listening: true, awaitingFirstCheck: [`api/${p.address}`] })
  p.signal('SIGCONT')
  await waitFor('ready', async () => (await get(`${proxy.admin}/ready`)).status === 200)
  t.same(JSON.parse((await get(`${proxy.admin}/ready`)).body), { ready: true, state: 'ready', listening: true, awaitingFirstCheck: [] })

  // A request in flight keeps vigil draining after stop(); the admin listener still answers.
  await control(p, 'delay=60000')
  const slow = get(`${proxy.url}/`, { dispatcher: client(t) })
  await waitFor('request in flight', () => proxy.vigil.upstreams.get('api')?.peers[0]?.inflight === 1)
  const stopped = proxy.vigil.stop(60_000)
  const draining = await get(`${proxy.admin}/ready`)
  t.equal(draining.status, 503)
  t.match(JSON.parse(draining.body), { ready: false, state: 'draining' })
  await control(p, 'delay=0')
  p.signal('SIGKILL')
  await slow.catch(() => undefined)
  await stopped
})

t.test('GET /ready without checks: ready as soon as the listeners are bound', async (t) => {
  const p = await spawnProvider(t, 'nocheck')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: p.address }] } } })
  t.equal((await get(`${proxy.admin}/ready`)).status, 200)
})

t.test('GET /config: the running config with the token and credentials redacted', async (t) => {
  const p = await spawnProvider(t, 'cfg')
  const proxy = await startProxy(t, {
    admin: { address: '127.0.0.1:0', token: 'tok-s3cret' },
    upstreams: {
      api: {
        servers: [{ address: p.address, weight: 3 }],
        active: { type: 'http', interval: '1m', http: { path: '/healthz', headers: { authorization: 'Bearer chk-s3cret', 'x-api-key': 'key-s3cret', 'x-trace': 'kept' } } },
      },
    },
  })
  const r = await get(`${proxy.admin}/config`, { headers: { authorization: 'Bearer tok-s3cret' } })
  t.equal(r.status, 200)
  t.notMatch(r.body, /s3cret/, 'no secret anywhere in the answer')
  const config = JSON.parse(r.body) as { admin: { token: string }; upstreams: { api: { servers: unknown[]; active: { http: { headers: Record<string, string> } } } } }
  t.equal(config.admin.token, '[redacted]')
  t.same(config.upstreams.api.active.http.headers, { authorization: '[redacted]', 'x-api-key': '[redacted]', 'x-trace': 'kept' })
  t.same(config.upstreams.api.servers, [{ address: p.address, weight: 3 }], 'the rest as configured')
  t.equal(proxy.vigil.config.admin?.token, 'tok-s3cret', 'the running config itself is untouched')
})

t.test('log levels by name: GET and PUT /log, and "level":"info" in the log lines', async (t) => {
  const p = await spawnProvider(t, 'log')
  const file = join(tempDir(t), 'vigil.json')
  writeFileSync(file, JSON.stringify({ listeners: [{ address: '127.0.0.1:0', upstream: 'api' }], admin: { address: '127.0.0.1:0' }, upstreams: { api: { servers: [{ address: p.address }] } } }))
  const { child, lines, exited } = startCli(t, ['start', '-c', file])
  await waitFor('vigil started', () => lines.some((l) => l['msg'] === 'vigil started'))
  const started = lines.find((l) => l['msg'] === 'vigil started') as { level: unknown; admin: string }
  t.equal(started.level, 'info', 'the level by name')
  const admin = `http://${started.admin}`
  t.match(JSON.parse((await get(`${admin}/log`)).body), { level: 'info', levels: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] })
  const set = await get(`${admin}/log`, { method: 'PUT', body: '{"level":"debug"}' })
  t.same(JSON.parse(set.body), { level: 'debug', previous: 'info' })
  await waitFor('the change is logged', () => lines.some((l) => l['msg'] === 'log level set by the admin API'))
  t.match(lines.find((l) => l['msg'] === 'log level set by the admin API'), { level: 'warn', from: 'info', to: 'debug' })
  t.equal(JSON.parse((await get(`${admin}/log`)).body).level, 'debug')
  process.kill(child.pid as number, 'SIGTERM')
  await exited
  t.ok(lines.every((l) => typeof l['level'] === 'string'), 'every line names its level')
})
