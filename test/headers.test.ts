import t from 'tap'
import { requestHeaders, responseHeaders, trailerPairs } from '../src/proxy/headers.js'

const fwd = { clientAddress: '10.1.2.3', proto: 'http' as const, host: 'svc.local', originalHost: 'svc.local' }
const pairs = (flat: string[]): Record<string, string> => Object.fromEntries(flat.flatMap((v, i) => (i % 2 === 0 ? [[v.toLowerCase(), flat[i + 1] as string]] : [])))

t.test('request: hop-by-hop and Connection-named headers are dropped, end-to-end ones kept', async (t) => {
  const raw = [
    'Host', 'svc.local',
    'Connection', 'keep-alive, X-Secret, close',
    'Keep-Alive', 'timeout=5',
    'X-Secret', 'hop',
    'Proxy-Authorization', 'Basic abc',
    'Proxy-Connection', 'keep-alive',
    'TE', 'trailers',
    'Trailer', 'x-sum',
    'Transfer-Encoding', 'chunked',
    'Upgrade', 'h2c',
    'Expect', '100-continue',
    'Accept', 'text/plain',
    'Cookie', 'a=1',
  ]
  const out = pairs(requestHeaders(raw, 'keep-alive, X-Secret, close', fwd))
  t.same(Object.keys(out).sort(), ['accept', 'cookie', 'forwarded', 'host', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto'])
})

t.test('request: a hop that adds none (forwardedHeaders false) passes the client\'s own on, repeated ones joined', async (t) => {
  const raw = ['X-Forwarded-For', '6.6.6.6', 'X-Forwarded-For', '7.7.7.7', 'Forwarded', 'for=6.6.6.6', 'Accept', '*/*']
  t.same(pairs(requestHeaders(raw, undefined, { ...fwd, addHop: false })), { 'x-forwarded-for': '6.6.6.6, 7.7.7.7', forwarded: 'for=6.6.6.6', accept: '*/*', host: 'svc.local' })
  t.same(pairs(requestHeaders(['Accept', '*/*'], undefined, { ...fwd, addHop: false })), { accept: '*/*', host: 'svc.local' })
})

t.test('request: X-Forwarded-* and Forwarded replace what the client sent', async (t) => {
  const out = requestHeaders(['X-Forwarded-For', '6.6.6.6', 'x-forwarded-proto', 'https', 'X-Forwarded-Host', 'evil', 'Forwarded', 'for=6.6.6.6'], undefined, fwd)
  t.same(pairs(out), {
    host: 'svc.local',
    'x-forwarded-for': '10.1.2.3',
    'x-forwarded-proto': 'http',
    'x-forwarded-host': 'svc.local',
    forwarded: 'for=10.1.2.3;proto=http;host=svc.local',
  })
  t.equal(out.filter((h) => h.toLowerCase() === 'x-forwarded-for').length, 1)
})

t.test('request: the upstream Host override replaces Host, X-Forwarded-Host keeps the original', async (t) => {
  const out = pairs(requestHeaders(['Host', 'a.example'], undefined, { ...fwd, host: 'internal', originalHost: 'a.example' }))
  t.equal(out['host'], 'internal')
  t.equal(out['x-forwarded-host'], 'a.example')
})

t.test('response: hop-by-hop and Connection-named headers are dropped', async (t) => {
  const raw = ['Content-Type', 'text/plain', 'Connection', 'X-Internal', 'X-Internal', '1', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'].map((s) => Buffer.from(s))
  const out = responseHeaders(raw)
  t.same(out, ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'], 'repeated headers are kept in order')
})

t.test('trailers drop hop-by-hop names', async (t) => {
  t.same(trailerPairs(['x-checksum', 'abc', 'transfer-encoding', 'chunked']), [['x-checksum', 'abc']])
})

t.test('request head: one pass gives Host and its count, Connection joined as Node joins it, the body framing', async (t) => {
  const { readRequestHead } = await import('../src/proxy/headers.js')
  const head = readRequestHead(['HOST', 'a.example', 'Content-Length', '12', 'connection', 'keep-alive', 'User-Agent', 'x', 'Connection', 'X-Secret', 'host', 'b.example'])
  t.equal(head.host, 'a.example', 'the first Host routes')
  t.equal(head.hosts, 2, 'and the second is counted, for the limits to reject')
  t.equal(head.connection, 'keep-alive, X-Secret')
  t.equal(head.contentLength, '12')
  t.equal(head.chunked, false)
  t.same(head.list, ['Content-Length', '12', 'User-Agent', 'x'], 'end-to-end headers in order, nothing else')
  t.equal(readRequestHead(['Transfer-Encoding', 'chunked']).chunked, true)
  t.equal(readRequestHead([]).hosts, 0)
})

t.test('request: a trusted client\'s forwarding header named in Connection is dropped, not appended to', async (t) => {
  const raw = ['Connection', 'X-Forwarded-For', 'X-Forwarded-For', '6.6.6.6', 'Forwarded', 'for=5.5.5.5']
  const out = pairs(requestHeaders(raw, 'X-Forwarded-For', { ...fwd, trusted: true }))
  t.equal(out['x-forwarded-for'], '10.1.2.3', 'the named one is hop-by-hop: only this hop')
  t.equal(out['forwarded'], 'for=5.5.5.5, for=10.1.2.3;proto=http;host=svc.local', 'the unnamed one is appended to')
})

t.test('client hop: the Forwarded element is computed once per connection and again only when the Host changes', async (t) => {
  const { ClientHop, forwardedElement } = await import('../src/proxy/headers.js')
  const hop = new ClientHop('::1', 'https', false)
  const first = hop.elementFor('a b')
  t.equal(first, forwardedElement({ clientAddress: '::1', proto: 'https', host: undefined, originalHost: 'a b' }))
  t.equal(first, 'for="[::1]";proto=https;host="a b"')
  t.equal(hop.elementFor('a b'), first)
  t.equal(hop.elementFor(undefined), 'for="[::1]";proto=https')
  t.equal(hop.elementFor('c'), 'for="[::1]";proto=https;host=c')
})
