// Config forms operators type: JSON with comments and trailing commas, the short listen addresses ":8080"
// (every interface) and "8080" (loopback), and messages that show the expected form.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { loadConfigFile, parseConfig, Vigil } from '../src/index.js'
import { issuesOf } from './helpers/config-error.js'
import { cliScript, get, httpServer, silent } from './helpers/index.js'
import { tempDir } from './helpers/config-file.js'


const JSONC = `// vigil in front of the api: a comment with "quotes", [brackets] and {braces} that are not JSON
{
  /* one listener on loopback, written the short way */
  "listeners": [{ "address": "0", "upstream": "api" },],
  "admin": { "address": "0" }, // the admin listener, loopback too
  "reload": { "watch": false },
  "log": { "level": "silent" },
  "upstreams": {
    "api": {
      "servers": [
        { "address": "ADDRESS" }, // the only provider
      ],
    },
  },
}
`

t.test('a JSON file with comments and trailing commas is a config: check accepts it and start serves from it', async (t) => {
  const up = await httpServer(t, (_req, res) => res.end('from the provider'))
  const file = join(tempDir(t), 'vigil.jsonc')
  writeFileSync(file, JSONC.replace('ADDRESS', up.address))
  const check = spawnSync(process.execPath, [cliScript, 'check', '-c', file], { encoding: 'utf8', timeout: 30_000 })
  t.equal(check.status, 0, check.stderr)
  t.match(check.stdout, /vigil\.jsonc: ok \(1 listener, 1 upstream, 1 server\)/)
  const config = loadConfigFile(file)
  t.same(config.upstreams['api']?.servers, [{ address: up.address }])
  const vigil = await new Vigil(config, { logger: silent, configFile: file }).start()
  t.teardown(() => vigil.stop(1_000))
  const bound = vigil.listenerAddresses[0] as AddressInfo
  t.equal(bound.address, '127.0.0.1', '"0" listens on loopback only')
  t.equal((vigil.adminAddress as AddressInfo).address, '127.0.0.1')
  t.equal((await get(`http://127.0.0.1:${bound.port}/`)).body, 'from the provider')
  // A reload reads the same form.
  const r = await vigil.reload()
  t.equal(r.ok, true)
})

t.test('a syntax error inside a commented file is still located', async (t) => {
  const [issue] = issuesOf(() => parseConfig('// comment\n{\n  "listeners": [ /* x */ }\n'))
  t.match(issue, { path: '', line: 3 })
  // An unterminated comment is not a way around the depth limit, nor a crash.
  t.match(issuesOf(() => parseConfig('{ "listeners": [] /* never closed'))[0], { path: '' })
})

t.test('":PORT" listens on every interface, "PORT" on loopback', async (t) => {
  const up = await httpServer(t, (_req, res) => res.end('ok'))
  const vigil = await new Vigil(
    { listeners: [{ address: ':0', upstream: 'api' }, { address: '0', upstream: 'api' }], admin: { address: ':0' }, upstreams: { api: { servers: [{ address: up.address }] } } },
    { logger: silent },
  ).start()
  t.teardown(() => vigil.stop(1_000))
  const [all, loopback] = vigil.listenerAddresses as [AddressInfo, AddressInfo]
  t.match(all.address, /^(::|0\.0\.0\.0)$/, 'the unspecified address: every interface')
  t.equal(loopback.address, '127.0.0.1')
  t.match((vigil.adminAddress as AddressInfo).address, /^(::|0\.0\.0\.0)$/)
  for (const port of [all.port, loopback.port]) t.equal((await get(`http://127.0.0.1:${port}/`)).body, 'ok')
})

t.test('errors show the form: host:port with an example, and the short forms where vigil listens', async (t) => {
  const doc = (listener: string, server: string, admin = '127.0.0.1:9901'): string =>
    JSON.stringify({ listeners: [{ address: listener, upstream: 'api' }], admin: { address: admin }, upstreams: { api: { servers: [{ address: server }] } } })
  const issues = issuesOf(() => parseConfig(doc('localhost', 'no-port', 'nowhere:')))
  t.same(
    issues.map((i) => [i.path, i.found, i.expected]),
    [
      ['listeners[0].address', 'string "localhost"', 'host:port, e.g. 127.0.0.1:8080 (or ":8080" for every interface, "8080" for loopback)'],
      ['admin.address', 'string "nowhere:"', 'host:port, e.g. 127.0.0.1:8080 (or ":8080" for every interface, "8080" for loopback)'],
      ['upstreams.api.servers[0].address', 'string "no-port"', 'host:port, e.g. 127.0.0.1:8080 or DNS SRV name like "_http._tcp.api.local" (with resolve: true)'],
    ],
  )
  t.notMatch(issues.map((i) => i.expected).join('\n'), /a string \(host:port/, 'no more "a string (host:port)"')
  // A short form for a provider would be a guess: servers stay host:port.
  t.match(issuesOf(() => parseConfig(doc('8080', '9001')))[0], { path: 'upstreams.api.servers[0].address' })
  t.match(issuesOf(() => parseConfig(doc('8080', '127.0.0.1:9001', '99999')))[0], { path: 'admin.address', expected: 'a port from 0 to 65535' })
})

t.test('"8080" and "127.0.0.1:8080" are the same address: a clash is reported', async (t) => {
  const doc = { listeners: [{ address: '8080', upstream: 'api' }, { address: '127.0.0.1:8080', upstream: 'api' }], admin: { address: '127.0.0.1:8080' }, upstreams: { api: { servers: [{ address: '127.0.0.1:9001' }] } } }
  t.same(
    issuesOf(() => parseConfig(JSON.stringify(doc))).map((i) => [i.path, i.expected]),
    [
      ['listeners[1].address', 'an address not already used by listeners[0]'],
      ['admin.address', 'an address not already used by listeners[0]'],
    ],
  )
  t.same(issuesOf(() => parseConfig(JSON.stringify({ ...doc, listeners: [{ address: ':8080', upstream: 'api' }, { address: '0.0.0.0:8081', upstream: 'api' }], admin: { address: ':8080' } }))).map((i) => i.path), ['admin.address'])
})
