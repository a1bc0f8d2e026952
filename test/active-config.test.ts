// The `active` block in the config: every key accepted, bad values named by their JSON path.
import t from 'tap'
import { ConfigError, parseConfig } from '../src/index.js'

const doc = (active: unknown): string =>
  JSON.stringify({ listeners: [{ address: '127.0.0.1:8080', upstream: 'api' }], upstreams: { api: { servers: [{ address: '127.0.0.1:9001' }], active } } }, null, 2)

function issues(text: string): { path: string; found: string; expected: string }[] {
  try {
    parseConfig(text)
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues]
    throw err
  }
  return []
}

t.test('a complete active block is valid', async (t) => {
  const active = {
    type: 'https',
    interval: '2s',
    timeout: 500,
    rise: 2,
    fall: 3,
    defaultDown: true,
    port: 8443,
    fastInterval: '500ms',
    downInterval: '10s',
    jitter: 0.2,
    maxInFlight: 16,
    unejectOnPass: false,
    http: { method: 'GET', path: '/healthz', host: 'svc.local', headers: { 'x-check': '1' }, expectStatus: ['2xx', '301'], expectBody: '^ok' },
    tls: { serverName: 'svc.local', skipVerify: true },
  }
  t.same(issues(doc(active)), [])
  t.same(issues(doc({ type: 'tcp', tcp: { send: 'PING\r\n', expect: '+PONG' } })), [])
})

t.test('bad active settings are reported with their path', async (t) => {
  t.match(issues(doc({ http: { expectBody: '(unclosed' } })), [{ path: 'upstreams.api.active.http.expectBody', found: '"(unclosed"', expected: 'a valid regular expression' }])
  t.match(issues(doc({ jitter: 0.9 })), [{ path: 'upstreams.api.active.jitter', expected: /0.5/ }])
  t.match(issues(doc({ type: 'udp' })), [{ path: 'upstreams.api.active.type' }])
  t.match(issues(doc({ tcp: { sned: 'x' } })), [{ path: 'upstreams.api.active.tcp.sned', found: 'unknown key "sned"' }])
  t.match(issues(doc({ http: { expectStatus: ['200', '6xx'] } })), [{ path: 'upstreams.api.active.http.expectStatus[1]' }])
  t.match(issues(doc({ http: { headers: { 'bad header': 'x' } } })), [{ path: /upstreams\.api\.active\.http\.headers/ }])
})
