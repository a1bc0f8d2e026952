import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseConfig, loadConfigFile } from '../src/config/load.js'
import { ConfigError, type ConfigIssue } from '../src/config/errors.js'
import { ms } from '../src/config/duration.js'
import { jsonSchema } from '../src/config/schema.js'
import { root } from './helpers/index.js'

const valid = {
  listeners: [
    { address: '127.0.0.1:8080', upstream: 'api' },
    { address: '127.0.0.1:8081', routes: [{ host: 'billing.local', pathPrefix: '/v1', upstream: 'billing' }, { pathPrefix: '/', upstream: 'api' }] },
  ],
  admin: { address: '127.0.0.1:9901', token: 'secret' },
  log: { level: 'info', access: false },
  upstreams: {
    api: {
      balance: 'round_robin',
      servers: [{ address: '127.0.0.1:9001', weight: 5 }, { address: '127.0.0.1:9002' }, { address: '127.0.0.1:9003', backup: true }, { address: '[::1]:9004', down: true }],
      timeouts: { connect: '2s', response: 30000, idle: '1m' },
    },
    billing: { servers: [{ address: 'localhost:7000' }] },
  },
}

function issuesOf(doc: unknown): ConfigIssue[] {
  try {
    parseConfig(typeof doc === 'string' ? doc : JSON.stringify(doc, null, 2), 'test.json')
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues]
    throw err
  }
  return []
}

const mutate = (f: (c: typeof valid & Record<string, unknown>) => void): unknown => {
  const c = structuredClone(valid) as typeof valid & Record<string, unknown>
  f(c)
  return c
}

t.test('the example from DESIGN.md is valid', async (t) => {
  t.same(issuesOf(valid), [])
  t.same(issuesOf(readFileSync(join(root, 'config/vigil.json'), 'utf8')), [], 'config/vigil.json is valid')
})

t.test('unknown keys name the path, the key and the keys allowed', async (t) => {
  const [i] = issuesOf(mutate((c) => ((c.upstreams.api as Record<string, unknown>)['maxFails'] = 3)))
  t.equal(i?.path, 'upstreams.api.maxFails')
  t.match(i?.found, /unknown key "maxFails"/)
  t.match(i?.expected, /balance.*servers/)
})

t.test('wrong types', async (t) => {
  const [i] = issuesOf(mutate((c) => ((c.upstreams.api.servers[0] as Record<string, unknown>)['weight'] = 'heavy')))
  t.equal(i?.path, 'upstreams.api.servers[0].weight')
  t.match(i?.found, /string "heavy"/)
  t.match(i?.expected, /integer/)
})

t.test('bad addresses and out-of-range ports', async (t) => {
  const issues = issuesOf(
    mutate((c) => {
      c.listeners[0]!.address = '127.0.0.1'
      c.upstreams.api.servers[1]!.address = '127.0.0.1:70000'
    }),
  )
  t.same(issues.map((i) => i.path).sort(), ['listeners[0].address', 'upstreams.api.servers[1].address'])
  t.match(issues.find((i) => i.path === 'upstreams.api.servers[1].address')?.expected, /port from 0 to 65535/)
})

t.test('references to undefined upstreams', async (t) => {
  const issues = issuesOf(mutate((c) => (c.listeners[1]!.routes![0]!.upstream = 'payments')))
  t.equal(issues.length, 1)
  t.equal(issues[0]?.path, 'listeners[1].routes[0].upstream')
  t.match(issues[0]?.expected, /api, billing/)
})

t.test('duplicate listener addresses and duplicate servers', async (t) => {
  const issues = issuesOf(
    mutate((c) => {
      c.listeners[1]!.address = '127.0.0.1:8080'
      c.upstreams.billing.servers.push({ address: 'localhost:7000' })
      c.admin.address = '127.0.0.1:8080'
    }),
  )
  t.same(issues.map((i) => i.path).sort(), ['admin.address', 'listeners[1].address', 'upstreams.billing.servers[1].address'])
})

t.test('a listener needs exactly one of upstream or routes', async (t) => {
  const issues = issuesOf(mutate((c) => ((c.listeners[1] as Record<string, unknown>)['upstream'] = 'api')))
  t.equal(issues[0]?.path, 'listeners[1]')
  t.match(issues[0]?.found, /both/)
})

t.test('every error is reported, each with a line and column', async (t) => {
  const issues = issuesOf(
    mutate((c) => {
      c.upstreams.api.timeouts.connect = '2 seconds'
      ;(c as Record<string, unknown>)['listener'] = []
      c.upstreams.billing.servers[0]!.address = 'nope'
      c.listeners[0]!.upstream = 'ghost'
    }),
  )
  t.equal(issues.length, 4)
  for (const i of issues) {
    t.type(i.line, 'number')
    t.type(i.column, 'number')
  }
  t.match(issues.find((i) => i.path === 'upstreams.api.timeouts.connect')?.expected, /"2s"/)
})

t.test('JSON syntax errors name line and column', async (t) => {
  // A missing comma (trailing commas and comments are allowed: see config-forms.test.ts).
  const issues = issuesOf('{\n  "listeners": [\n    { "address": "127.0.0.1:1" "upstream": "api" }\n  ]\n}')
  t.equal(issues.length, 1)
  t.equal(issues[0]?.line, 3)
  t.equal(issues[0]?.column, 32)
  t.equal(issues[0]?.found, '"\\"upstream\\""')
  t.same(issuesOf('').map((i) => i.expected), ['a JSON value'])
})

t.test('unreadable files are a ConfigError naming the file', async (t) => {
  const err = t.throws(() => loadConfigFile('/nonexistent/vigil.json')) as ConfigError
  t.equal(err.file, '/nonexistent/vigil.json')
  t.match(err.message, /ENOENT/)
})

t.test('durations', async (t) => {
  t.equal(ms(1500), 1500)
  t.equal(ms('1500ms'), 1500)
  t.equal(ms('2s'), 2000)
  t.equal(ms('1.5s'), 1500)
  t.equal(ms('5m'), 300_000)
  t.equal(ms('1h'), 3_600_000)
  t.throws(() => ms('2 s'))
})

t.test('config/schema.json is the generated schema', async (t) => {
  const file = join(root, 'config/schema.json')
  t.same(JSON.parse(readFileSync(file, 'utf8')), JSON.parse(JSON.stringify(jsonSchema())), 'run npm run build to regenerate')
})

t.test('a file on disk with an error points into that file', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'vigil.json')
  writeFileSync(file, JSON.stringify(mutate((c) => (c.upstreams.api.servers[0]!.weight = 0)), null, 2))
  const err = t.throws(() => loadConfigFile(file)) as ConfigError
  t.match(err.message, new RegExp(`${file}:\\d+:\\d+: upstreams.api.servers\\[0\\].weight: found number 0, expected an integer from 1 to 1000`))
})

t.test('port 0 never clashes: the kernel picks a free port for each', async (t) => {
  t.same(issuesOf(mutate((c) => {
    c.listeners[0]!.address = '127.0.0.1:0'
    c.listeners[1]!.address = '127.0.0.1:0'
    c.admin.address = '127.0.0.1:0'
  })), [])
})

t.test('a maxEjectTime below the ejectTime it caps is an error, not silently raised', async (t) => {
  const passive = (p: Record<string, unknown>) => mutate((c) => ((c.upstreams.api as Record<string, unknown>)['passive'] = p))
  const [explicit] = issuesOf(passive({ mode: 'window', ejectTime: '30s', maxEjectTime: '10s' }))
  t.equal(explicit?.path, 'upstreams.api.passive.maxEjectTime')
  t.match(explicit?.found, /"10s", less than ejectTime, 30000 ms/)
  t.match(explicit?.expected, /at least 30000 ms/)
  const [fromFailTimeout] = issuesOf(passive({ failTimeout: 20000, maxEjectTime: 5000 }))
  t.match(fromFailTimeout?.found, /5000, less than ejectTime \(failTimeout unless set\), 20000 ms/)
  const [fromDefault] = issuesOf(passive({ maxEjectTime: '1s' }))
  t.match(fromDefault?.found, /less than ejectTime \(failTimeout unless set\), 10000 ms/)
  t.same(issuesOf(passive({ ejectTime: '30s', maxEjectTime: '30s' })), [], 'equal is fine: no growth')
  t.same(issuesOf(passive({ ejectTime: '1s' })), [], 'no maxEjectTime: the default is used')
  const bad = issuesOf(passive({ ejectTime: 'soon', maxEjectTime: '1s' }))
  t.equal(bad.length, 1, 'a malformed duration is reported once, by the schema')
  t.equal(bad[0]?.path, 'upstreams.api.passive.ejectTime')
})

t.test('subset: size, and this vigil\'s place as id < of; errors name the JSON path', async (t) => {
  const subset = (s: unknown) => mutate((c) => ((c.upstreams.api as Record<string, unknown>)['subset'] = s))
  t.same(issuesOf(subset({ size: 2, id: 0, of: 3 })), [])
  const [high] = issuesOf(subset({ size: 2, id: 3, of: 3 }))
  t.equal(high?.path, 'upstreams.api.subset.id')
  t.match(high?.expected, /below "of" \(0 to 2\)/)
  const [alone] = issuesOf(subset({ size: 2, of: 3 }))
  t.equal(alone?.path, 'upstreams.api.subset.of')
  t.match(alone?.found, /without "id"/)
  const [neither] = issuesOf(subset({ size: 2 }))
  t.equal(neither?.path, 'upstreams.api.subset')
  t.match(neither?.expected, /"id" and "of"/)
  const fleet = { registry: { etcd: { endpoints: ['http://127.0.0.1:2379'] } }, path: '/vigil/api' }
  t.same(issuesOf(mutate((c) => {
    ;(c.upstreams.api as Record<string, unknown>)['subset'] = { size: 2 }
    c['fleet'] = fleet
  })), [], 'with fleet registration, id and of may be left out')
  const [zero] = issuesOf(subset({ size: 0, id: 0, of: 1 }))
  t.equal(zero?.path, 'upstreams.api.subset.size')
  const [unknown] = issuesOf(subset({ size: 1, id: 0, of: 1, seed: 4 }))
  t.equal(unknown?.path, 'upstreams.api.subset.seed')
  const bad = issuesOf(subset({ size: 1, id: 'x', of: 2 }))
  t.equal(bad.length, 1, 'a malformed id is reported once, by the schema')
  t.equal(bad[0]?.path, 'upstreams.api.subset.id')
})

t.test('active.trafficInterval shorter than interval is an error', async (t) => {
  const active = (a: unknown) => mutate((c) => ((c.upstreams.api as Record<string, unknown>)['active'] = a))
  t.same(issuesOf(active({ interval: '2s', trafficInterval: '30s' })), [])
  t.same(issuesOf(active({ interval: '2s', trafficInterval: 2000 })), [], 'equal is allowed')
  const [short] = issuesOf(active({ interval: '2s', trafficInterval: '1s' }))
  t.equal(short?.path, 'upstreams.api.active.trafficInterval')
  t.match(short?.found, /"1s", shorter than interval \(2000 ms\)/)
  const [fromDefault] = issuesOf(active({ trafficInterval: '10s' }))
  t.match(fromDefault?.found, /shorter than interval \(30000 ms\)/, 'the default interval is 30 s')
})
