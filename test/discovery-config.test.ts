// Config errors of registry server entries: each names its JSON path, what was found and what was expected.
import t from 'tap'
import { parseConfig, ConfigError } from '../src/index.js'

function issues(server: unknown): { path: string; found: string; expected: string }[] {
  const doc = { listeners: [{ address: '127.0.0.1:0', upstream: 'api' }], upstreams: { api: { servers: [server] } } }
  try {
    parseConfig(JSON.stringify(doc))
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.issues.map(({ path, found, expected }) => ({ path, found, expected }))
  }
}

const zk = { servers: '127.0.0.1:2181', path: '/services/api/providers' }

t.test('valid entries', async (t) => {
  t.same(issues({ zookeeper: zk }), [])
  t.same(issues({ zookeeper: { ...zk, format: 'json', fields: { host: 'ip' } }, weight: 2 }), [])
  t.same(issues({ zookeeper: { ...zk, format: 'dubbo', resyncInterval: '10s', staleAfter: '1m', maxRemovalPercent: 30, removalGrace: '20s' } }), [])
  t.same(issues({ etcd: { endpoints: ['http://127.0.0.1:2379'], prefix: '/services/api/', username: 'u', password: 'p' } }), [])
})

t.test('exactly one of address, zookeeper, etcd', async (t) => {
  t.match(issues({ address: '127.0.0.1:1', zookeeper: zk }), [{ path: 'upstreams.api.servers[0]', found: '"address" and "zookeeper"', expected: 'exactly one of "address", "zookeeper" or "etcd"' }])
  t.match(issues({ weight: 2 }), [{ path: 'upstreams.api.servers[0]', found: 'none of "address", "zookeeper", "etcd"' }])
  t.match(issues({ zookeeper: zk, resolve: true }), [{ path: 'upstreams.api.servers[0].resolve' }])
})

t.test('settings that do not fit together', async (t) => {
  t.match(issues({ zookeeper: { ...zk, fields: { host: 'ip' } } }), [{ path: 'upstreams.api.servers[0].zookeeper.fields', found: '"fields" with format "hostport"' }])
  t.match(issues({ zookeeper: { ...zk, resyncInterval: '30s', staleAfter: '10s' } }), [{ path: 'upstreams.api.servers[0].zookeeper.staleAfter', found: /not more than resyncInterval \(30000 ms\)/ }])
  t.match(issues({ etcd: { endpoints: ['http://127.0.0.1:2379'], prefix: '/p/', username: 'u' } }), [{ path: 'upstreams.api.servers[0].etcd', found: '"username" alone' }])
  t.match(issues({ etcd: { endpoints: ['https://127.0.0.1:2379'], prefix: '/p/', tls: { ca: '/nonexistent/ca.pem' } } }), [{ path: 'upstreams.api.servers[0].etcd.tls.ca', found: /ENOENT/ }])
  t.match(issues({ etcd: { endpoints: ['http://127.0.0.1:2379'], prefix: '/p/', tls: {} } }), [{ path: 'upstreams.api.servers[0].etcd.tls', found: /"tls" with http:\/\/ endpoints/, expected: /https:\/\// }])
  t.match(issues({ etcd: { endpoints: ['https://a:2379', 'http://b:2379'], prefix: '/p/' } }), [{ path: 'upstreams.api.servers[0].etcd.endpoints', found: '["http://b:2379"] beside https:// endpoints' }])
})

t.test('the schema names the key and its place', async (t) => {
  t.match(issues({ zookeeper: { ...zk, format: 'xml' } }), [{ path: 'upstreams.api.servers[0].zookeeper.format' }])
  t.match(issues({ zookeeper: { ...zk, path: 'relative' } }), [{ path: 'upstreams.api.servers[0].zookeeper.path' }])
  t.match(issues({ etcd: { endpoints: ['127.0.0.1:2379'], prefix: '/p/' } }), [{ path: 'upstreams.api.servers[0].etcd.endpoints[0]' }])
  t.match(issues({ etcd: { endpoints: ['http://127.0.0.1:2379'], prefix: '/p/', format: 'dubbo' } }), [{ path: 'upstreams.api.servers[0].etcd.format' }])
  t.match(issues({ zookeeper: { ...zk, sesionTimeout: '1s' } }), [{ path: 'upstreams.api.servers[0].zookeeper.sesionTimeout', found: 'unknown key "sesionTimeout"' }])
})
