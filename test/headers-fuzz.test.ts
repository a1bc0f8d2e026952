// Header rules under generated input: hop-by-hop never crosses, forwarding headers are exactly vigil's, no CR/LF injection.
import t from 'tap'
import fc from 'fast-check'
import { requestHeaders, responseHeaders } from '../src/proxy/headers.js'
import { echo, httpServer, startProxy } from './helpers/index.js'
import { exchange } from './helpers/raw.js'

const HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']
const FORWARDING = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']

const randomCase = (s: string) => fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }).map((up) => [...s].map((c, i) => (up[i] ? c.toUpperCase() : c)).join(''))
const tchar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&\'*+-.^_`|~')
const token = fc.array(tchar, { minLength: 1, maxLength: 12 }).map((a) => a.join(''))
const headerName = fc.oneof(fc.constantFrom(...HOP, ...FORWARDING, 'host', 'expect', 'x-custom', 'cookie').chain(randomCase), token)
/** What Node's parser lets through as a field value: visible ASCII, obs-text, spaces and tabs inside, trimmed. */
const headerValue = fc
  .array(fc.oneof(fc.integer({ min: 0x21, max: 0x7e }), fc.constant(0x20), fc.constant(0x09), fc.integer({ min: 0x80, max: 0xff })), { maxLength: 30 })
  .map((codes) => String.fromCharCode(...codes).trim())
const rawHeaders = fc.array(fc.tuple(headerName, headerValue), { maxLength: 20 })
const address = fc.oneof(fc.ipV4(), fc.ipV6())

const names = (list: readonly string[]) => list.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())

t.test('request headers: hop-by-hop and Connection-named headers never forwarded, forwarding headers exactly once', async (t) => {
  fc.assert(
    fc.property(rawHeaders, fc.array(headerName, { maxLength: 4 }), address, fc.boolean(), fc.option(headerValue.filter((v) => v !== '')), (pairs, named, client, trusted, host) => {
      const connection = named.length === 0 ? undefined : named.join(', ')
      const raw = pairs.flat()
      if (connection !== undefined) raw.push('Connection', connection)
      const out = requestHeaders(raw, connection, { clientAddress: client, proto: 'http', host: host ?? undefined, originalHost: host ?? undefined, trusted })
      const outNames = names(out)
      for (const n of outNames) {
        if (HOP.includes(n)) throw new Error(`hop-by-hop ${n} forwarded`)
        if (named.some((c) => c.toLowerCase() === n && !FORWARDING.includes(n) && n !== 'host')) throw new Error(`${n} was named in Connection`)
      }
      for (const f of ['x-forwarded-for', 'x-forwarded-proto', 'forwarded']) {
        if (outNames.filter((n) => n === f).length !== 1) throw new Error(`${f} not exactly once`)
      }
      if (outNames.filter((n) => n === 'host').length > 1) throw new Error('two Host headers')
      const xff = out[out.findIndex((v, i) => i % 2 === 0 && v === 'x-forwarded-for') + 1] as string
      if (trusted ? !xff.endsWith(client) : xff !== client) throw new Error(`x-forwarded-for ${xff}`)
      for (const v of out) if (/[\r\n\0]/.test(v)) throw new Error(`CR, LF or NUL in ${JSON.stringify(v)}`)
    }),
    { numRuns: 2_000, seed: 8 },
  )
  t.pass()
})

t.test('response headers: hop-by-hop and Connection-named headers never reach the client', async (t) => {
  fc.assert(
    fc.property(rawHeaders, fc.array(token, { maxLength: 3 }), (pairs, named) => {
      const raw = pairs.flatMap(([n, v]) => [Buffer.from(n, 'latin1'), Buffer.from(v, 'latin1')])
      if (named.length > 0) raw.push(Buffer.from('Connection'), Buffer.from(named.join(',')))
      const outNames = names(responseHeaders(raw))
      for (const n of outNames) {
        if (HOP.includes(n)) throw new Error(`hop-by-hop ${n} forwarded`)
        if (named.some((c) => c.toLowerCase() === n)) throw new Error(`${n} was named in Connection`)
      }
    }),
    { numRuns: 1_000, seed: 8 },
  )
  t.pass()
})

t.test('end to end: generated headers over a raw socket, the provider sees no hop-by-hop header and the real client address', async (t) => {
  const up = await httpServer(t, echo)
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }] } } })
  const visible = headerValue.map((v) => v.replace(/[^\x20-\x7e]/g, 'x'))
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(headerName.filter((n) => !['host', 'transfer-encoding', 'connection', 'expect'].includes(n.toLowerCase())), visible), { maxLength: 10 }), async (pairs) => {
      const head = pairs.map(([n, v]) => `${n}: ${v}\r\n`).join('')
      const r = await exchange(proxy.port, { send: `GET /fuzz HTTP/1.1\r\nHost: h\r\n${head}Connection: close\r\n\r\n` })
      if (r.status !== 200) throw new Error(`status ${r.status}: ${r.text.slice(0, 200)}`)
      const seen = JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)) as { headers: Record<string, string> }
      for (const n of Object.keys(seen.headers)) if (HOP.includes(n) && n !== 'connection') throw new Error(`provider saw ${n}`)
      if (seen.headers['x-forwarded-for'] !== '127.0.0.1') throw new Error(`x-forwarded-for ${seen.headers['x-forwarded-for']}`)
    }),
    { numRuns: 40, seed: 8 },
  )
  t.pass()
})
