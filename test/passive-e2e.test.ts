// End to end: the real proxy in front of real child-process providers that are killed, restarted and told
// to fail. Requests are counted on the providers' side (/_control), never from vigil's own view.
import t from 'tap'
import type { Upstream as UpstreamConfig } from '../src/config/schema.js'
import type { HealthEvent } from '../src/health/passive-events.js'
import type { Upstream } from '../src/upstream/upstream.js'
import { client, control, get, spawnProvider, startProxy, steadyGets, type ProxyHandle, type Provider } from './helpers/index.js'

type Tap = Parameters<typeof spawnProvider>[0]

async function providers(t: Tap, n: number): Promise<Provider[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => spawnProvider(t, `p${i}`)))
}

/** The proxy, with its health events split: ejection transitions, and stall suspicions (which a loaded machine may add). */
async function proxyFor(t: Tap, ps: Provider[], extra: Partial<UpstreamConfig>): Promise<{ proxy: ProxyHandle; events: HealthEvent[]; stalls: HealthEvent[]; upstream: Upstream }> {
  const proxy = await startProxy(t, { upstreams: { api: { servers: ps.map((p) => ({ address: p.address })), ...extra } } })
  const upstream = proxy.vigil.upstreams.get('api') as Upstream
  const events: HealthEvent[] = []
  const stalls: HealthEvent[] = []
  upstream.on('health', (e: HealthEvent) => (e.kind === 'suspect' || e.kind === 'cleared' ? stalls : events).push(e))
  return { proxy, events, stalls, upstream }
}

/** Wait (bounded) until `cond` holds, checking every 20 ms. */
async function until(cond: () => boolean, what: string, limit = 10_000): Promise<void> {
  const end = Date.now() + limit
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** `n` GETs from `concurrency` closed-loop clients; returns the statuses seen, counted. */
async function burst(url: string, n: number, concurrency: number, t: Tap): Promise<Map<number, number>> {
  const agent = client(t)
  const seen = new Map<number, number>()
  let left = n
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) {
        const r = await get(`${url}/work`, { dispatcher: agent })
        seen.set(r.status, (seen.get(r.status) ?? 0) + 1)
      }
    }),
  )
  return seen
}

const servedBy = async (ps: Provider[]): Promise<number[]> => Promise.all(ps.map(async (p) => (await control(p)).served))

t.test('SIGKILL of one of three under a steady stream of GETs: no client errors, no traffic to it while ejected', async (t) => {
  const ps = await providers(t, 3)
  // nginx's exact behaviour (no recovery probe): the address gets nothing until its trial, 60 s later.
  const { proxy, events } = await proxyFor(t, ps, { passive: { maxFails: 1, failTimeout: '60s', recoveryProbe: false } })
  const dead = ps[0] as Provider
  const stream = steadyGets(`${proxy.url}/work`, client(t), 4)
  const statuses = stream.statuses
  await until(() => statuses.length >= 60, 'traffic before the kill')
  dead.signal('SIGKILL')
  await dead.exited
  await until(() => events.some((e) => e.kind === 'ejected'), 'the ejection')
  const atEjection = statuses.length
  await until(() => statuses.length >= atEjection + 120, 'traffic after the ejection')
  // The same port comes back with a fresh process: while ejected (60 s) it must get nothing.
  const revived = await spawnProvider(t, 'p0-again', ['--port', String(dead.port)])
  const atRevival = statuses.length
  await until(() => statuses.length >= atRevival + 90, 'traffic after the revival')
  await stream.stop()
  t.same([...new Set(statuses)], [200], `all ${statuses.length} client requests succeeded`)
  t.match(events[0], { kind: 'ejected', peer: dead.address, reason: 'max_fails', failure: /connect_refused|upstream_reset/ })
  t.equal((await control(revived)).served, 0, 'no request reached the ejected address')
  const [, a, b] = await servedBy(ps)
  t.ok((a as number) > 60 && (b as number) > 60, `the survivors shared the load (${a}, ${b})`)
})

t.test('a provider that comes back is restored after its trial request', async (t) => {
  const ps = await providers(t, 3)
  const { proxy, events } = await proxyFor(t, ps, { passive: { maxFails: 1, failTimeout: '1s' } })
  const dead = ps[0] as Provider
  dead.signal('SIGKILL')
  await dead.exited
  await burst(proxy.url, 10, 2, t)
  t.match(events[0], { kind: 'ejected', peer: dead.address })
  const revived = await spawnProvider(t, 'p0-again', ['--port', String(dead.port)])
  const agent = client(t)
  const statuses = new Set<number>()
  const end = Date.now() + 15_000
  while (!events.some((e) => e.kind === 'restored') && Date.now() < end) statuses.add((await get(`${proxy.url}/work`, { dispatcher: agent })).status)
  t.same([...statuses], [200], 'clients saw no error meanwhile')
  const kinds = events.filter((e) => e.peer === dead.address).map((e) => e.kind)
  t.same(kinds.slice(-2), ['trial', 'restored'], `ejected, then one trial per ejection, then restored (${kinds.join(', ')})`)
  const before = (await control(revived)).served
  t.ok(before >= 1, 'the trial reached the new process')
  await burst(proxy.url, 30, 3, t)
  t.ok((await control(revived)).served >= before + 5, 'back in the rotation')
})

t.test('a provider answering 503 is ejected when http_503 is listed, and not otherwise', async (t) => {
  for (const listed of [true, false]) {
    const ps = await providers(t, 3)
    await control(ps[0] as Provider, 'status=503')
    const failOn = listed ? ['error', 'timeout', 'http_503'] : ['error', 'timeout']
    const { proxy, events } = await proxyFor(t, ps, { passive: { maxFails: 1, failTimeout: '60s', failOn } })
    const statuses = await burst(proxy.url, 30, 1, t)
    const [bad] = await servedBy(ps)
    if (listed) {
      t.equal(bad, 1, 'listed: one 503 ejects it, it gets nothing after')
      t.match(events, [{ kind: 'ejected', peer: ps[0]?.address, reason: 'max_fails', failure: 'http_503' }])
      t.equal(statuses.get(503), 1, 'that one 503 reaches the client (503 is not in retry.on)')
    } else {
      t.ok((bad as number) >= 5, `not listed: it keeps its round-robin share (${bad} of 30)`)
      t.same(events, [])
    }
  }
})

t.test('the ejection cap holds with three of four providers failing', async (t) => {
  const ps = await providers(t, 4)
  for (const p of ps.slice(0, 3)) await control(p, 'status=503')
  const { proxy, events, upstream } = await proxyFor(t, ps, { passive: { maxFails: 1, failTimeout: '60s', failOn: ['error', 'http_503'] } })
  let most = 0
  upstream.on('change', () => (most = Math.max(most, upstream.passive.snapshot().filter((s) => s.state !== 'ok').length)))
  await burst(proxy.url, 40, 2, t)
  t.equal(most, 2, 'never more than half of four ejected')
  t.equal(events.filter((e) => e.kind === 'ejected').length, 2)
  const capped = events.find((e) => e.kind === 'capped')
  t.ok(capped, 'the refused ejection is logged')
  const served = await servedBy(ps)
  const cappedIndex = ps.findIndex((p) => p.address === capped?.peer)
  t.ok((served[cappedIndex] as number) > 3, `the failing provider kept in keeps getting traffic (${served.join(', ')})`)
  t.ok((upstream.passive.snapshot()[cappedIndex]?.capped ?? 0) >= (served[cappedIndex] as number) - 1, 'every refused ejection is counted')
})

t.test('all providers failing: fail open by default, 503 from vigil when failOpen is false', async (t) => {
  for (const failOpen of [true, false]) {
    const ps = await providers(t, 3)
    for (const p of ps) await control(p, 'status=503')
    const { proxy, events } = await proxyFor(t, ps, { passive: { maxFails: 1, failTimeout: '60s', failOn: ['error', 'http_503'], maxEjectPercent: 100 }, failOpen })
    await burst(proxy.url, 3, 1, t)
    t.equal(events.filter((e) => e.kind === 'ejected').length, 3)
    t.match(events.at(-1), { kind: 'no_eligible' })
    const before = (await servedBy(ps)).reduce((a, b) => a + b)
    const r = await get(`${proxy.url}/work`)
    const after = (await servedBy(ps)).reduce((a, b) => a + b)
    if (failOpen) {
      t.equal(after, before + 1, 'failing open: the request still reaches a provider')
      t.equal(r.status, 503)
      t.equal(r.headers['x-vigil-error'], undefined, "it is the provider's own answer")
    } else {
      t.equal(after, before, 'failing fast: no provider is bothered')
      t.equal(r.headers['x-vigil-error'], 'no_live_upstreams')
    }
  }
})

t.test('stall: a frozen provider is suspected and gets no new requests long before they would time out', async (t) => {
  const ps = await providers(t, 3)
  // The suspicion alone (re-dispatch, which also sends it a stall trial now and then: test/stall-redispatch.test.ts).
  const { proxy, stalls: events, upstream } = await proxyFor(t, ps, { timeouts: { response: '20s' }, passive: { stall: { redispatch: false } } })
  const frozen = ps[0] as Provider
  await burst(proxy.url, 60, 4, t)
  const before = (await control(frozen)).served
  frozen.signal('SIGSTOP')
  // Open-loop traffic (a request every 10 ms whatever happens to the earlier ones) for 3 s, and on until 50 more
  // have gone out after the suspicion (a loaded machine can take longer than 3 s to suspect), at most 12 s: well
  // inside the 20 s response timeout, so the frozen provider's requests still finish once it thaws.
  const agent = client(t)
  const pending: Promise<number>[] = []
  let sentAtSuspect = -1
  const seen = events.length
  upstream.on('health', (e: HealthEvent) => {
    if (sentAtSuspect === -1 && e.kind === 'suspect' && e.peer === frozen.address) sentAtSuspect = pending.length
  })
  const start = Date.now()
  const sending = (): boolean => Date.now() - start < 3_000 || ((sentAtSuspect === -1 || pending.length < sentAtSuspect + 50) && Date.now() - start < 12_000)
  while (sending()) {
    pending.push(get(`${proxy.url}/work`, { dispatcher: agent }).then((r) => r.status))
    await new Promise((r) => setTimeout(r, 10))
  }
  frozen.signal('SIGCONT')
  const statuses = await Promise.all(pending)
  t.same([...new Set(statuses)], [200], 'the stuck requests are not failed early: they finish once it thaws')
  const stuck = (await control(frozen)).served - before
  t.match(
    events.slice(seen).find((e) => e.peer === frozen.address),
    { kind: 'suspect', evidence: { threshold: Number, p99: Number } },
  )
  t.ok(sentAtSuspect !== -1 && sentAtSuspect < pending.length, `suspected while the traffic ran (after ${sentAtSuspect} of ${pending.length} requests)`)
  // Round robin gives it every third request until the suspicion (every second if a loaded machine made
  // another peer look stalled meanwhile); after it, none.
  t.ok(stuck <= Math.ceil(sentAtSuspect / 2) + 1, `${stuck} of ${pending.length} requests went to the frozen provider, all before the suspicion`)
  t.ok((upstream.passive.snapshot()[0]?.stalls ?? 0) >= 1, 'the stall is counted')
  await until(() => events.some((e) => e.kind === 'cleared'), 'the suspicion to clear')
})
