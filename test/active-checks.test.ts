// End-to-end active checks: real child-process providers, the real proxy, real sockets.
import t from 'tap'
import pino from 'pino'
import { createServer as createTcpServer, type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { client, closedPort, get, spawnProvider, startProxy, silent } from './helpers/index.js'
import { control, recordEvents, statusOf, waitFor } from './helpers/health.js'
import { Vigil, type Config } from '../src/index.js'
import type { Peer } from '../src/upstream/peer.js'
import type { HealthEvent, PassiveHealthLink } from '../src/health/events.js'
import { Upstream } from '../src/upstream/upstream.js'

type Tap = { teardown(fn: () => unknown): void }

const fast = { interval: 150, timeout: 1_000, rise: 2, fall: 3 }

t.test('a frozen provider goes down after `fall` checks with no client traffic, and back after `rise`', async (t) => {
  const ps = await Promise.all(['a', 'b', 'c'].map((n) => spawnProvider(t, n)))
  const proxy = await startProxy(t, {
    upstreams: { api: { servers: ps.map((p) => ({ address: p.address })), active: { type: 'http', ...fast, http: { path: '/healthz' } } } },
  })
  const events = recordEvents(proxy.vigil)
  await waitFor('every server checked', async () => (await statusOf(proxy.admin)).every((s) => s.checks >= 2))
  const frozen = ps[1]!
  frozen.signal('SIGSTOP')
  await waitFor('b down', async () => (await statusOf(proxy.admin)).find((s) => s.name === frozen.address)?.check === 'down')
  const down = events.filter((e) => e.event === 'down')
  t.equal(down.length, 1, 'only the frozen server went down')
  t.equal(down[0]?.server, frozen.address)
  t.equal(down[0]?.reason, 'timeout')
  t.equal(down[0]?.evidence?.['fall'], 3, 'down exactly at the `fall`-th failed check')
  const agent = client(t)
  for (let i = 0; i < 6; i++) {
    const r = await get(`${proxy.url}/`, { dispatcher: agent })
    t.equal(r.status, 200)
    t.not(r.headers['x-provider'], 'b', 'no traffic goes to the frozen server')
  }
  frozen.signal('SIGCONT')
  await waitFor('b up', async () => (await statusOf(proxy.admin)).find((s) => s.name === frozen.address)?.status === 'up')
  const up = events.filter((e) => e.event === 'up')
  t.equal(up.length, 1)
  t.equal(up[0]?.evidence?.['rise'], 2, 'up exactly at the `rise`-th passing check')
  t.same((await control(frozen)).served, 0, 'health was learned without client traffic to it')
})

t.test('an HTTP check marks a provider answering 500 down while a TCP check keeps it up', async (t) => {
  const p = await spawnProvider(t, 'err')
  await control(p, 'status=500')
  const proxy = await startProxy(t, {
    upstreams: {
      web: { servers: [{ address: p.address }], active: { type: 'http', ...fast, http: { path: '/' } } },
      tcp: { servers: [{ address: p.address }], active: { type: 'tcp', ...fast } },
    },
  })
  const events = recordEvents(proxy.vigil, 'active')
  await waitFor('web down', async () => (await statusOf(proxy.admin)).find((s) => s.upstream === 'web')?.check === 'down')
  const tcp = proxy.vigil.checker.stateOf(proxy.vigil.upstreams.get('tcp')!.peers[0]!)!
  await waitFor('tcp checked fall times', () => tcp.checks >= fast.fall)
  t.equal(tcp.state.down, false, 'the port accepts, so the tcp check passes')
  t.same(
    events.map((e) => [e.upstream, e.event, e.reason]),
    [['web', 'down', 'status_500']],
  )
})

/** A proxy built but not started, so the state before the first check can be seen. */
function unstarted(t: Tap, api: Config['upstreams'][string]): { vigil: Vigil; upstream: Upstream; events: HealthEvent[] } {
  const vigil = new Vigil({ listeners: [{ address: '127.0.0.1:0', upstream: 'api' }], admin: { address: '127.0.0.1:0' }, upstreams: { api } }, { logger: silent })
  t.teardown(() => vigil.stop(1_000))
  return { vigil, upstream: vigil.upstreams.get('api')!, events: recordEvents(vigil, 'active') }
}

t.test('defaultDown: true keeps servers out until they pass `rise` checks, checked at once at start', async (t) => {
  const p = await spawnProvider(t, 'late')
  // A long interval: only the immediate first check and fastInterval can bring it up within the test.
  const { vigil, upstream, events } = unstarted(t, {
    servers: [{ address: p.address }],
    active: { type: 'http', interval: '1h', fastInterval: 100, rise: 2, defaultDown: true, http: { path: '/healthz' } },
  })
  t.equal(upstream.eligibleCount, 0, 'not eligible before any check')
  await vigil.start()
  await waitFor('up', () => upstream.eligibleCount === 1)
  t.same(events.map((e) => [e.event, e.evidence?.['rise']]), [['up', 2]])
})

t.test('defaultDown: false serves at once and takes a dead server out after `fall` immediate checks', async (t) => {
  const p = await spawnProvider(t, 'live')
  const dead = `127.0.0.1:${await closedPort()}`
  const { vigil, upstream, events } = unstarted(t, { servers: [{ address: p.address }, { address: dead }], active: { interval: '1h', fastInterval: 100, fall: 2 } })
  t.equal(upstream.eligibleCount, 2, 'both eligible before any check')
  await vigil.start()
  await waitFor('dead server out', () => upstream.eligibleCount === 1)
  t.same(events.map((e) => [e.server, e.event, e.reason]), [[dead, 'down', 'connect_refused']])
})

t.test('downInterval: a server that is down is checked at its own pace', async (t) => {
  const dead = `127.0.0.1:${await closedPort()}`
  const { vigil, upstream } = unstarted(t, { servers: [{ address: dead }], active: { interval: 20, fastInterval: 20, downInterval: '1h', fall: 2 } })
  await vigil.start()
  await waitFor('down', () => upstream.eligibleCount === 0)
  const target = vigil.checker.stateOf(upstream.peers[0]!)!
  t.equal(target.checks, 2)
  await sleep(500)
  t.equal(target.checks, 2, 'no check at the 20 ms interval once down')
})

t.test('an address in two groups with the same check is probed once per interval', async (t) => {
  const p = await spawnProvider(t, 'shared')
  const active = { type: 'http' as const, interval: 100, http: { path: '/healthz' } }
  const proxy = await startProxy(t, {
    upstreams: {
      one: { servers: [{ address: p.address }], active },
      two: { servers: [{ address: p.address }], active },
      other: { servers: [{ address: p.address }], active: { ...active, type: 'tcp' } },
    },
  })
  const { checker, upstreams } = proxy.vigil
  t.equal([...checker.all].length, 2, 'one http target shared by both groups, one tcp target')
  const shared = checker.stateOf(upstreams.get('one')!.peers[0]!)!
  t.equal(checker.stateOf(upstreams.get('two')!.peers[0]!), shared)
  await waitFor('ten checks', () => shared.checks >= 10)
  const before = shared.checks
  const seen = (await control(p)).healthz
  const after = shared.checks
  // Checks concluded before the count was read reached the provider; one more may have been in flight.
  t.ok(seen >= before && seen <= after + 1, `the provider saw ${seen} checks for ${before}..${after} concluded`)
})

t.test('a pinned event loop makes in-flight checks inconclusive, never marks a provider down', async (t) => {
  const ps = await Promise.all(['x', 'y', 'z'].map((n) => spawnProvider(t, n)))
  // Slow answers keep checks in flight most of the time, so the busy loops below land on running checks.
  await Promise.all(ps.map((p) => control(p, 'delay=200')))
  const proxy = await startProxy(t, {
    upstreams: { api: { servers: ps.map((p) => ({ address: p.address })), active: { type: 'http', interval: 50, timeout: 1_500, rise: 1, fall: 1 } } },
  })
  const events = recordEvents(proxy.vigil)
  await waitFor('every server checked', async () => (await statusOf(proxy.admin)).every((s) => s.checks >= 1))
  for (let i = 0; i < 3; i++) {
    const end = Date.now() + 2_000
    while (Date.now() < end) {
      // Busy: vigil's loop is pinned, as under CPU saturation.
    }
    await sleep(400)
  }
  await sleep(1_000)
  const rows = await statusOf(proxy.admin)
  t.same(
    events.filter((e) => e.event === 'down'),
    [],
    'no provider was marked down',
  )
  t.ok(rows.every((r) => r.check === 'up'))
  const inconclusive = rows.reduce((n, r) => n + r.inconclusive, 0)
  t.ok(inconclusive >= 1, `${inconclusive} checks were inconclusive`)
  const metrics = (await get(`${proxy.admin}/metrics`)).body
  t.match(metrics, /vigil_checks_total\{server="[^"]+",type="http",result="inconclusive"\} [1-9]/)
})

t.test('passive link: a passing check lifts only ejections it disproves; recheck runs a check at once', async (t) => {
  const p = await spawnProvider(t, 'ej')
  const proxy = await startProxy(t, {
    upstreams: { api: { servers: [{ address: p.address }], active: { type: 'tcp', interval: '1h', fastInterval: 50 } } },
  })
  const peer = proxy.vigil.upstreams.get('api')!.peers[0]!
  const target = proxy.vigil.checker.stateOf(peer)!
  let failure: string | undefined = 'http_503'
  const restored: Record<string, unknown>[] = []
  const link: PassiveHealthLink = {
    snapshot: () => undefined,
    ejection: (q: Peer) => (q === peer && failure !== undefined ? { failure, reason: 'max_fails', until: Date.now() + 10_000 } : undefined),
    restore: (_q, evidence) => {
      failure = undefined
      restored.push(evidence)
    },
    vouch: () => undefined,
  }
  proxy.vigil.linkPassive(link)
  await waitFor('first check', () => target.checks >= 1)
  const before = target.checks
  proxy.vigil.checker.recheck(peer)
  await waitFor('recheck', () => target.checks === before + 1)
  t.same(restored, [], 'a TCP connect does not disprove 503s')
  failure = 'error'
  await sleep(60)
  proxy.vigil.checker.recheck(peer)
  await waitFor('restored', () => restored.length === 1)
  t.match(restored[0], { check: 'tcp', ejectedFor: 'error' })
})

t.test('hurry: checks at once even right after a recheck, whose rate limit would drop it', async (t) => {
  const p = await spawnProvider(t, 'hurried')
  const proxy = await startProxy(t, {
    upstreams: { api: { servers: [{ address: p.address }], active: { type: 'tcp', interval: '1h', fastInterval: '10s' } } },
  })
  const peer = proxy.vigil.upstreams.get('api')!.peers[0]!
  const target = proxy.vigil.checker.stateOf(peer)!
  await waitFor('first check', () => target.checks >= 1)
  proxy.vigil.checker.recheck(peer)
  await waitFor('recheck', () => target.checks === 2)
  // A recheck within fastInterval of the last is dropped (rate limit); hurry must not be.
  proxy.vigil.checker.recheck(peer)
  proxy.vigil.checker.hurry(peer, true)
  await waitFor('checked at once', () => target.checks === 3)
  t.equal(target.hurried, true)
  proxy.vigil.checker.hurry(peer, false)
  t.equal(target.hurried, false, 'lifted')
})

t.test('update (reload): kept servers keep their check state, new ones are checked at once, removed ones stop', async (t) => {
  const [kept, added] = await Promise.all([spawnProvider(t, 'kept'), spawnProvider(t, 'added')])
  const dead = `127.0.0.1:${await closedPort()}`
  const active = { type: 'http' as const, interval: '1h', fastInterval: 50, fall: 1, http: { path: '/healthz' } }
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: kept.address }, { address: dead }], active } } })
  const { checker } = proxy.vigil
  await waitFor('dead down', () => proxy.vigil.upstreams.get('api')!.eligibleCount === 1)
  const deadTarget = checker.stateOf(proxy.vigil.upstreams.get('api')!.peers[1]!)!
  // What a reload does: new Upstream objects from the new file, handed to the checker.
  const next = new Upstream('api', { servers: [{ address: dead }, { address: added.address }], active })
  checker.update(new Map([['api', next]]))
  t.equal(checker.stateOf(next.peers[0]!), deadTarget, 'same target, same state')
  t.equal(next.peers[0]!.checkUp, false, 'still down without waiting for a check')
  t.equal(next.eligibleCount, 1)
  const addedTarget = checker.stateOf(next.peers[1]!)!
  await waitFor('the added server checked at once', () => addedTarget.checks >= 1)
  t.equal([...checker.all].length, 2, 'the removed server is no longer checked')
  t.equal(checker.stateOf(proxy.vigil.upstreams.get('api')!.peers[0]!), undefined)
  t.teardown(() => next.close())
  // A reload that drops the check: a server the check had taken out serves again (as a kept Peer would).
  const plain = new Upstream('api', { servers: [{ address: dead }] })
  t.teardown(() => plain.close())
  plain.peers[0]!.checkUp = false
  checker.update(new Map([['api', plain]]))
  t.equal(plain.eligibleCount, 1)
  t.equal([...checker.all].length, 0, 'nothing left to check')
})

t.test('one structured log line per transition, with its evidence; a failing listener does not stop checks', async (t) => {
  const p = await spawnProvider(t, 'logged')
  await control(p, 'status=500')
  const lines: Record<string, unknown>[] = []
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: p.address }], active: { type: 'http', interval: 50, fall: 1, http: { path: '/' } } } } }, logger)
  const peer = proxy.vigil.upstreams.get('api')!.peers[0]!
  await waitFor('down', () => !peer.checkUp)
  t.match(
    lines.filter((l) => l['msg'] === 'server down'),
    [{ level: 40, upstream: 'api', server: p.address, source: 'active', event: 'down', reason: 'status_500', evidence: { check: 'http', fall: 1, rise: 0, address: p.address } }],
  )
  const target = proxy.vigil.checker.stateOf(peer)!
  proxy.vigil.events.on('health', () => {
    throw new Error('listener bug')
  })
  await control(p, 'status=200')
  await waitFor('up despite the throwing listener', () => peer.checkUp)
  const checks = target.checks
  await waitFor('still checking', () => target.checks > checks + 1)
  t.ok(lines.some((l) => l['msg'] === 'error while recording a check'))
})

t.test('maxInFlight caps the checks running at once; queued checks of a stopped checker never run', async (t) => {
  let open = 0
  let peak = 0
  let seen = 0
  const silentServers = await Promise.all(
    Array.from({ length: 5 }, async () => {
      // Accepts and never answers: each send/expect check holds its slot until its timeout.
      const server = createTcpServer((socket) => {
        seen++
        peak = Math.max(peak, ++open)
        socket.on('close', () => open--)
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      t.teardown(() => new Promise((resolve) => server.close(resolve)))
      return `127.0.0.1:${(server.address() as AddressInfo).port}`
    }),
  )
  const { vigil } = unstarted(t, { servers: silentServers.map((address) => ({ address })), active: { interval: '1h', timeout: 1_000, maxInFlight: 2, tcp: { expect: '+PONG' } } })
  await vigil.start()
  await waitFor('two checks arrived', () => seen >= 2)
  await sleep(100)
  t.equal(peak, 2, 'two at once')
  await vigil.checker.stop()
  // The two running checks time out and free their slots; the three queued ones must not start.
  await sleep(1_500)
  t.equal(seen, 2, 'the queued checks were dropped with the checker')
})
