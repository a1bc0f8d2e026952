// Forwarding headers: replaced for ordinary clients, kept and appended to for trustedProxies.
import t, { type Test } from 'tap'
import { client, echo, get, httpServer, startProxy } from './helpers/index.js'
import { TrustedProxies, parseCidr } from '../src/proxy/trust.js'

const spoofed = {
  'x-forwarded-for': '6.6.6.6',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'evil.example',
  forwarded: 'for=6.6.6.6;proto=https',
  host: 'svc.local',
}

async function seen(t: Test, trustedProxies?: string[], listener: Record<string, unknown> = {}, headers: Record<string, string> = spoofed): Promise<Record<string, string>> {
  const up = await httpServer(t, echo)
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'api', ...listener, ...(trustedProxies === undefined ? {} : { trustedProxies }) }],
    upstreams: { api: { servers: [{ address: up.address }] } },
  })
  const r = await get(`${proxy.url}/`, { headers, dispatcher: client(t) })
  return (JSON.parse(r.body) as { headers: Record<string, string> }).headers
}

t.test('by default a client cannot claim another address: every forwarding header is replaced', async (t) => {
  const h = await seen(t)
  t.equal(h['x-forwarded-for'], '127.0.0.1')
  t.equal(h['x-forwarded-proto'], 'http')
  t.equal(h['x-forwarded-host'], 'svc.local')
  t.equal(h['forwarded'], 'for=127.0.0.1;proto=http;host=svc.local')
})

t.test('a client outside trustedProxies is treated the same', async (t) => {
  const h = await seen(t, ['10.0.0.0/8', '::1'])
  t.equal(h['x-forwarded-for'], '127.0.0.1')
  t.equal(h['forwarded'], 'for=127.0.0.1;proto=http;host=svc.local')
})

t.test('a trusted proxy keeps its forwarding headers and vigil appends itself', async (t) => {
  const h = await seen(t, ['127.0.0.0/8'])
  t.equal(h['x-forwarded-for'], '6.6.6.6, 127.0.0.1')
  t.equal(h['x-forwarded-proto'], 'https', 'the original scheme is kept')
  t.equal(h['x-forwarded-host'], 'evil.example', 'the original host is kept')
  t.equal(h['forwarded'], 'for=6.6.6.6;proto=https, for=127.0.0.1;proto=http;host=svc.local')
})

t.test('forwardedHeaders false: vigil adds none, and what the client sent goes on unchanged', async (t) => {
  const h = await seen(t, undefined, { forwardedHeaders: false })
  t.equal(h['x-forwarded-for'], '6.6.6.6')
  t.equal(h['x-forwarded-proto'], 'https')
  t.equal(h['x-forwarded-host'], 'evil.example')
  t.equal(h['forwarded'], 'for=6.6.6.6;proto=https')
  t.equal(h['host'], 'svc.local')
  const none = await seen(t, undefined, { forwardedHeaders: false }, { host: 'svc.local' })
  for (const name of ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']) t.equal(none[name], undefined, `no ${name}`)
})

t.test('CIDR matching', async (t) => {
  const trust = new TrustedProxies(['10.0.0.0/8', '192.168.1.7', 'fd00::/8'])
  t.equal(trust.has('10.1.2.3'), true)
  t.equal(trust.has('11.1.2.3'), false)
  t.equal(trust.has('::ffff:10.9.9.9'), true, 'IPv4-mapped IPv6 matches the IPv4 block')
  t.equal(trust.has('192.168.1.7'), true)
  t.equal(trust.has('192.168.1.8'), false)
  t.equal(trust.has('fd12::1'), true)
  t.equal(trust.has(undefined), false)
  t.equal(TrustedProxies.from([]), undefined)
  t.same(parseCidr('::1'), { address: '::1', prefix: 128, family: 'ipv6' })
  t.equal(parseCidr('1.2.3.4/'), undefined)
  t.equal(parseCidr('1.2.3.4/-1'), undefined)
  t.equal(parseCidr('host/8'), undefined)
})
