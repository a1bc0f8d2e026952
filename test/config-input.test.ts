// Config files that are not configs: too big, too deep, not UTF-8; and the values the schema alone cannot judge.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { loadConfigFile, parseConfig } from '../src/index.js'
import { issuesOf } from './helpers/config-error.js'
import { MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH } from '../src/config/load.js'

const base = (extra: Record<string, unknown> = {}, upstream: Record<string, unknown> = {}): string =>
  JSON.stringify({ listeners: [{ address: '127.0.0.1:8080', upstream: 'api', ...extra }], upstreams: { api: { servers: [{ address: '127.0.0.1:9001' }], ...upstream } } })


t.test('a file over the size limit is refused before it is read', async (t) => {
  const dir = t.testdir({})
  const file = `${dir}/huge.json`
  writeFileSync(file, Buffer.alloc(MAX_CONFIG_BYTES + 1, 0x20))
  const [issue] = issuesOf(() => loadConfigFile(file))
  t.match(issue, { path: '', found: `a file of ${MAX_CONFIG_BYTES + 1} bytes`, expected: /at most/ })
})

t.test('deep nesting is refused with its location, without overflowing the stack', async (t) => {
  const [issue] = issuesOf(() => parseConfig(`{"listeners":\n${'['.repeat(200_000)}`))
  t.match(issue, { path: '', found: /nested more than/, line: 2, column: MAX_CONFIG_DEPTH })
  t.ok(parseConfig(base()), 'a normal config is far below the limit')
})

t.test('bytes that are not UTF-8 are named with their line', async (t) => {
  const dir = t.testdir({})
  writeFileSync(`${dir}/latin1.json`, Buffer.concat([Buffer.from('{\n"listeners": "caf'), Buffer.from([0xe9]), Buffer.from('"}')]))
  t.match(issuesOf(() => loadConfigFile(`${dir}/latin1.json`))[0], { found: 'bytes that are not UTF-8', expected: 'a UTF-8 JSON file', line: 2 })
  writeFileSync(`${dir}/utf16.json`, Buffer.from('\ufeff{}', 'utf16le'))
  t.match(issuesOf(() => loadConfigFile(`${dir}/utf16.json`))[0], { found: 'UTF-16 text' })
  writeFileSync(`${dir}/bom.json`, `\ufeff${base()}`)
  t.ok(loadConfigFile(`${dir}/bom.json`), 'a UTF-8 byte order mark is fine')
})

t.test('trustedProxies entries must be addresses or CIDR blocks', async (t) => {
  t.ok(parseConfig(base({ trustedProxies: ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8'] })))
  const issues = issuesOf(() => parseConfig(base({ trustedProxies: ['10.0.0.0/33', '300.1.1.1', 'proxy.local'] })))
  t.same(
    issues.map((i) => i.path),
    ['listeners[0].trustedProxies[2]', 'listeners[0].trustedProxies[0]', 'listeners[0].trustedProxies[1]'],
  )
  t.match(issues[1], { found: '"10.0.0.0/33"', expected: /CIDR|prefix/ })
})

t.test('TLS files must be readable, and a client cert needs its key', async (t) => {
  const dir = t.testdir({ 'ca.pem': 'x', 'cert.pem': 'x' })
  const issues = issuesOf(() =>
    parseConfig(base({ tls: { cert: `${dir}/missing.pem`, key: `${dir}/cert.pem` } }, { tls: { ca: `${dir}/ca.pem`, cert: `${dir}/cert.pem` } })),
  )
  t.match(issues, [
    { path: 'listeners[0].tls.cert', found: /missing\.pem.*ENOENT/, expected: 'a readable PEM file' },
    { path: 'upstreams.api.tls', found: 'no "key"', expected: 'both "cert" and "key", or neither' },
  ])
  t.ok(parseConfig(base({}, { tls: true })), '"tls": true needs no files')
})
