import t from 'tap'
import { Router } from '../src/proxy/router.js'
import type { Upstream } from '../src/upstream/upstream.js'

/** A generation as the router sees it: a name, and its group's live generation (itself until a swap). */
function generation(name: string): Upstream {
  const u = { name, group: { live: undefined as unknown } }
  u.group.live = u
  return u as unknown as Upstream
}
const api = generation('api')
const billing = generation('billing')
const wild = generation('wild')
const upstreams = new Map([['api', api], ['billing', billing], ['wild', wild]])

t.test('routes by host and path prefix, first match wins, port ignored', async (t) => {
  const r = new Router(
    {
      address: '127.0.0.1:1',
      routes: [
        { host: 'billing.local', pathPrefix: '/v1', upstream: 'billing' },
        { host: '*.example.com', upstream: 'wild' },
        { pathPrefix: '/', upstream: 'api' },
      ],
    },
    upstreams,
  )
  t.equal(r.match('billing.local', '/v1/invoices'), billing)
  t.equal(r.match('Billing.Local:8081', '/v1/x'), billing, 'case and port do not matter')
  t.equal(r.match('billing.local', '/v2/x'), api, 'falls through to the next route')
  t.equal(r.match('a.example.com', '/'), wild)
  t.equal(r.match('example.com', '/'), api, 'the wildcard needs a subdomain')
  t.equal(r.match(undefined, '/v1'), api, 'no Host header only matches host-less routes')
  t.equal(r.match('[::1]:8080', '/'), api)
})

t.test('no match gives undefined; a listener naming one upstream matches everything', async (t) => {
  const r = new Router({ address: '127.0.0.1:1', routes: [{ host: 'x', upstream: 'api' }] }, upstreams)
  t.equal(r.match('y', '/'), undefined)
  const direct = new Router({ address: '127.0.0.1:1', upstream: 'billing' }, upstreams)
  t.equal(direct.match('anything', '/any'), billing)
  t.throws(() => new Router({ address: '127.0.0.1:1', upstream: 'nope' }, upstreams))
})

t.test('a route names a group: after a swap it gives the generation live now', async (t) => {
  const u = generation('api')
  const r = new Router({ address: '127.0.0.1:1', upstream: 'api' }, new Map([['api', u]]))
  const next = generation('api')
  ;(u.group as { live: Upstream }).live = next
  t.equal(r.match(undefined, '/'), next)
})
