// Retries (proxy_next_upstream rules, request bodies, the budget, the final answer) and hedging, end to end
// with real providers; the budget and the policy rules also as units.
import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { closedPort, control, echo, get, httpServer, spawnProvider, startProxy, type Provider } from './helpers/index.js'
import { RetryBudget, RetryPolicy } from '../src/proxy/retry.js'
import { classifyError } from '../src/health/outcome.js'

const RESET = classifyError({ code: 'ECONNRESET' })
const REFUSED = classifyError({ code: 'ECONNREFUSED' })

t.test('retry policy rules and the budget', async (t) => {
  const p = new RetryPolicy({ tries: 2, timeout: '1s' })
  t.ok(p.allows(RESET, 'GET', 1, 0, 10))
  t.notOk(p.allows(RESET, 'POST', 1, 0, 10), 'a POST that was sent is not retried')
  t.ok(p.allows(REFUSED, 'POST', 1, 0, 10), 'a POST that never reached the provider is')
  t.notOk(p.allows(RESET, 'GET', 2, 0, 10), 'tries count the first attempt')
  t.notOk(p.allows(RESET, 'GET', 1, 0, 1_000), 'no new try after retry.timeout')
  t.notOk(p.allows(classifyError({ code: 'HPE_INVALID' }), 'GET', 1, 0, 10), 'invalid_header is not in the default list')
  t.ok(new RetryPolicy({ nonIdempotent: true }).allows(RESET, 'PATCH', 1, 0, 10), 'nonIdempotent allows it')
  t.notOk(new RetryPolicy({ perTryTimeout: 100, hedge: true }).mayHedge('POST', 1, 0, 10), 'never hedge a POST')
  t.ok(new RetryPolicy({ perTryTimeout: 100, hedge: true }).mayHedge('GET', 1, 0, 10))
  t.notOk(new RetryPolicy({ hedge: true }).mayHedge('GET', 1, 0, 10), 'hedging needs perTryTimeout')

  const b = new RetryBudget(20, 0.1) // floor: 1 retry per 10 s
  t.ok(b.withdraw(0), 'the floor allows one retry with no traffic')
  t.notOk(b.withdraw(1))
  for (let i = 0; i < 100; i++) b.request(2)
  let allowed = 0
  while (b.withdraw(3)) allowed++
  t.equal(allowed, 19, '20% of 100 requests, one already spent')
  t.ok(b.withdraw(20_001), 'the window has passed: the floor again')
})

t.test('a POST is not retried once sent; one that never reached a provider is', async (t) => {
  const primary = await spawnProvider(t, 'primary')
  const backup = await spawnProvider(t, 'backup')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: primary.address }, { address: backup.address, backup: true }] } } })
  await control(primary, 'delay=10000')
  const pending = get(`${proxy.url}/order`, { method: 'POST', body: 'x' })
  while ((await control(primary)).served === 0) await new Promise((r) => setTimeout(r, 20))
  primary.signal('SIGKILL')
  const r = await pending
  t.equal(r.status, 502)
  t.equal(r.headers['x-vigil-error'], 'upstream_reset')
  t.equal(r.headers['x-vigil-attempts'], '1')
  t.match(r.body, /\(1 attempt\)/)
  t.equal((await control(backup)).served, 0, 'the backup never saw the POST')
  await primary.exited
  const again = await get(`${proxy.url}/order`, { method: 'POST', body: 'x' })
  t.equal(again.status, 200, 'refused connection: the POST never left, so it is retried')
  t.equal(again.headers['x-vigil-attempts'], '2')
  t.equal((await control(backup)).served, 1)
})

/** A provider that reads the whole request body and then drops the connection without answering. */
function swallow(req: IncomingMessage, res: ServerResponse): void {
  req.resume()
  req.on('end', () => res.socket?.destroy())
}

t.test('request bodies: small ones are buffered and retried, large ones only while unread', async (t) => {
  const bad = await httpServer(t, swallow)
  const good = await httpServer(t, echo)
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: bad.address }, { address: good.address, backup: true }] } } })
  const small = 'a'.repeat(1_000)
  const r = await get(`${proxy.url}/put`, { method: 'PUT', body: small })
  t.equal(r.status, 200, 'a small body was kept and sent again')
  t.equal((JSON.parse(r.body) as { body: string }).body, small)
  const large = Buffer.alloc(256 * 1024, 98)
  const l = await get(`${proxy.url}/put`, { method: 'PUT', body: large })
  t.equal(l.status, 502, 'a large body already consumed cannot be sent again')
  t.equal(l.headers['x-vigil-attempts'], '1')
  const refused = await closedPort()
  const proxy2 = await startProxy(t, { upstreams: { api: { servers: [{ address: `127.0.0.1:${refused}` }, { address: good.address, backup: true }] } } })
  const l2 = await get(`${proxy2.url}/put`, { method: 'PUT', body: large })
  t.equal(l2.status, 200, 'a large body nobody read yet is retried')
  t.equal((JSON.parse(l2.body) as { body: string }).body.length, large.length)
})

t.test('when every try fails: the last failure, and how many attempts', async (t) => {
  const ports = await Promise.all([closedPort(), closedPort(), closedPort(), closedPort()])
  const proxy = await startProxy(t, { upstreams: { api: { servers: ports.map((p) => ({ address: `127.0.0.1:${p}` })), retry: { tries: 3 } } } })
  const r = await get(`${proxy.url}/`)
  t.equal(r.status, 502)
  t.equal(r.headers['x-vigil-error'], 'connect_refused')
  t.equal(r.headers['x-vigil-attempts'], '3', 'tries bounds the attempts')
  t.match(r.body, /refused the connection \(3 attempts\)/)
})

t.test('listed statuses are retried elsewhere; the last one is passed through', async (t) => {
  const ps = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  for (const p of ps) await control(p, 'status=503')
  const proxy = await startProxy(t, { upstreams: { api: { servers: ps.map((p) => ({ address: p.address })), retry: { on: ['error', 'http_503'] } } } })
  const r = await get(`${proxy.url}/`)
  t.equal(r.status, 503)
  t.equal(r.headers['x-vigil-error'], undefined, "the last provider's own answer")
  t.equal(r.headers['x-vigil-attempts'], '2')
  await control(ps[1] as Provider, 'status=200')
  const served = (await control(ps[1] as Provider)).served
  const ok = await get(`${proxy.url}/`)
  t.equal(ok.status, 200, 'a 503 from one provider becomes the answer of the other')
  t.equal((await control(ps[1] as Provider)).served, served + 1)
})

t.test('per-try timeout without hedging abandons a frozen provider and retries', async (t) => {
  const ps = await Promise.all([spawnProvider(t, 'frozen'), spawnProvider(t, 'ok')])
  const proxy = await startProxy(t, {
    upstreams: { api: { servers: [{ address: ps[0]?.address as string }, { address: ps[1]?.address as string, backup: true }], retry: { perTryTimeout: '300ms' }, timeouts: { response: '20s' } } },
  })
  ps[0]?.signal('SIGSTOP')
  const started = Date.now()
  const r = await get(`${proxy.url}/`)
  t.equal(r.status, 200)
  t.equal(r.headers['x-vigil-attempts'], '2')
  t.ok(Date.now() - started < 10_000, 'well inside the response timeout')
})

t.test('hedging: GETs to a frozen provider complete from another one fast; a POST is never hedged', async (t) => {
  const frozen = await spawnProvider(t, 'frozen')
  const others = await Promise.all([spawnProvider(t, 'b'), spawnProvider(t, 'c')])
  const proxy = await startProxy(t, {
    upstreams: {
      api: {
        servers: [{ address: frozen.address }, ...others.map((p) => ({ address: p.address }))],
        retry: { perTryTimeout: '200ms', hedge: true },
        // Hedging alone: stall re-dispatch would race the same requests on evidence (test/stall-redispatch.test.ts).
        passive: { stall: { redispatch: false } },
        timeouts: { response: '20s' },
      },
    },
  })
  frozen.signal('SIGSTOP')
  const slowest = { ms: 0 }
  let hedged = 0
  for (let i = 0; i < 9; i++) {
    const started = Date.now()
    const r = await get(`${proxy.url}/`)
    t.equal(r.status, 200)
    if (r.headers['x-vigil-attempts'] === '2') hedged++
    slowest.ms = Math.max(slowest.ms, Date.now() - started)
  }
  t.ok(hedged >= 1, `requests that met the frozen provider were hedged (${hedged})`)
  t.ok(slowest.ms < 10_000, `slowest GET ${slowest.ms} ms, far under the 20 s response timeout`)
  t.equal(proxy.vigil.upstreams.get('api')?.retry.hedges, hedged, 'hedges are counted')
  t.equal(proxy.vigil.upstreams.get('api')?.passive.snapshot()[0]?.state, 'ejected', 'the hedged-over provider failed its per-try timeout')

  // A POST that lands on the frozen provider waits for it: a single attempt, nothing sent elsewhere.
  const solo = await startProxy(t, {
    upstreams: {
      api: {
        servers: [{ address: frozen.address }, { address: others[0]?.address as string, backup: true }],
        retry: { perTryTimeout: '200ms', hedge: true },
        timeouts: { response: '1500ms' },
      },
    },
  })
  const before = (await control(others[0] as Provider)).served
  const p = await get(`${solo.url}/`, { method: 'POST', body: 'x' })
  t.equal(p.status, 504)
  t.equal(p.headers['x-vigil-attempts'], '1')
  t.equal((await control(others[0] as Provider)).served, before, 'the POST went nowhere else')
  frozen.signal('SIGCONT')
})
