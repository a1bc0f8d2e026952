// Recovery probes of passive ejections: the backoff (fake clock, real sockets), the choice of probe, and end to
// end a killed provider restarted on its port is found by the probe, with no client request sent to it meanwhile.
import t from 'tap'
import { mock } from 'node:test'
import { createServer, type Server } from 'node:net'
import type { Peer } from '../src/upstream/peer.js'
import { Upstream } from '../src/upstream/upstream.js'
import type { HealthEvent } from '../src/health/passive-events.js'
import { classifyError, httpFailure } from '../src/health/outcome.js'
import { probeDelay, RECOVERY_DEFAULTS, RecoveryProbe, recoveryKind, type RecoveryHost } from '../src/health/recovery.js'
import { resolveCheck } from '../src/health/check-spec.js'
import { client, closedPort, control, spawnProvider, startProxy, steadyGets, type Provider } from './helpers/index.js'

/** Let real I/O (a refused connect) happen while timers are fake: yield to the event loop until `cond`. */
async function ioUntil(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 100_000 && !cond(); i++) await new Promise((r) => setImmediate(r))
  if (!cond()) throw new Error('condition never held')
}

/** A longer ceiling than the default, so the doubling shows over several steps. */
const BACKOFF = { interval: 250, maxInterval: 2_000 }

t.test('the backoff: 250 ms doubling to maxInterval (default 500 ms), jittered by up to 20% either way', async (t) => {
  t.same(RECOVERY_DEFAULTS, { interval: 250, maxInterval: 500 }, 'a restarted server waits at most 600 ms for its probe')
  t.same([1, 2, 3, 4].map((n) => probeDelay(n, RECOVERY_DEFAULTS, 0.5)), [250, 500, 500, 500])
  t.same([1, 2, 3, 4, 5, 6].map((n) => probeDelay(n, BACKOFF, 0.5)), [250, 500, 1000, 2000, 2000, 2000])
  t.equal(probeDelay(1, BACKOFF, 0), 200)
  t.equal(probeDelay(4, BACKOFF, 0.999999), 2400)
})

t.test('which evidence a probe can disprove: connection-level failures only; the check when there is one', async (t) => {
  const tcp = resolveCheck({ type: 'tcp' }, undefined)
  const http = resolveCheck({ type: 'http', fastInterval: '500ms' }, undefined)
  t.equal(recoveryKind(classifyError({ code: 'ECONNREFUSED' }), undefined), 'tcp')
  t.equal(recoveryKind(classifyError({ code: 'ECONNRESET' }), undefined), 'tcp')
  t.equal(recoveryKind(classifyError({ code: 'UND_ERR_CONNECT_TIMEOUT' }), http), 'check')
  t.equal(recoveryKind(classifyError({ code: 'ECONNREFUSED' }), tcp), 'check')
  t.equal(recoveryKind(classifyError({ code: 'UND_ERR_HEADERS_TIMEOUT' }), http), undefined, 'a frozen server accepts: only a real request tells')
  t.equal(recoveryKind(httpFailure(503), http), undefined, 'a 503 needs a real trial')
  t.equal(recoveryKind(undefined, http), undefined)
})

t.test('probes back off on a fake clock while the port refuses, and stop at the first that connects', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
  const random = mock.method(Math, 'random', () => 0.5)
  t.teardown(() => random.mock.restore())
  const port = await closedPort()
  let passed = 0
  const host: RecoveryHost = { recoveryPassed: () => passed++ }
  const probe = new RecoveryProbe(host, 'tcp', { host: '127.0.0.1', port } as Peer, undefined, 1_000, BACKOFF)
  t.teardown(() => probe.stop())
  mock.timers.tick(0)
  await ioUntil(() => probe.probes === 1)
  t.equal(probe.failing, true, 'refused: still failing, so no trial may go')
  for (const [n, wait] of [250, 500, 1000, 2000, 2000].entries()) {
    mock.timers.tick(wait - 1)
    await new Promise((r) => setImmediate(r))
    t.equal(probe.probes, n + 1, `no probe before ${wait} ms`)
    mock.timers.tick(1)
    await ioUntil(() => probe.probes === n + 2)
  }
  const server: Server = createServer((s) => s.destroy())
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  t.teardown(() => server.close())
  mock.timers.tick(2000)
  await ioUntil(() => passed === 1)
  t.equal(probe.failing, false)
  t.equal(probe.probes, 7)
  mock.timers.tick(60_000)
  await new Promise((r) => setImmediate(r))
  t.equal(probe.probes, 7, 'no probe after one passed')
})

t.test('kill -9, restart on the same port: the probe lets it back, no client request reaches it while down', async (t) => {
  const ps = await Promise.all([0, 1, 2].map((i) => spawnProvider(t, `p${i}`)))
  // A 60 s ejection: only a probe can bring it back within this test.
  const proxy = await startProxy(t, { upstreams: { api: { servers: ps.map((p) => ({ address: p.address })), passive: { maxFails: 1, failTimeout: '60s' } } } })
  const upstream = proxy.vigil.upstreams.get('api') as Upstream
  const dead = ps[0] as Provider
  const events: HealthEvent[] = []
  // Attempts vigil sends to the dead address, counted from the monitor as they end: what a client request would cost.
  let attempts = 0
  upstream.monitor.subscribe({ finished: (peer) => peer.address === dead.address && attempts++ })
  // At the ejection (told synchronously, inside the failure that ejected it): the attempts ended so far, plus those
  // already sent and still to end (in flight, less the one ending now), are all the dead address may ever get.
  let atEjection = -1
  upstream.on('health', (e: HealthEvent) => {
    if (e.peer !== dead.address || e.kind === 'suspect' || e.kind === 'cleared') return
    if (e.kind === 'ejected' && atEjection < 0) atEjection = attempts + (upstream.find(dead.address)?.inflight ?? 1) - 1
    events.push(e)
  })
  const stream = steadyGets(`${proxy.url}/work`, client(t), 4)
  const statuses = stream.statuses
  const until = async (cond: () => boolean | Promise<boolean>, what: string): Promise<void> => {
    const end = Date.now() + 20_000
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  await until(() => statuses.length >= 40, 'traffic before the kill')
  dead.signal('SIGKILL')
  await dead.exited
  await until(() => events.some((e) => e.kind === 'ejected'), 'the ejection')
  const served = statuses.length
  await until(() => statuses.length >= served + 200, 'traffic while it is down')
  t.equal(attempts, atEjection, 'while down: no attempt on the dead address (probes are not client requests)')
  t.equal(upstream.passive.snapshot()[0]?.state, 'ejected', 'still ejected: every probe was refused')
  const revived = await spawnProvider(t, 'p0-again', ['--port', String(dead.port)])
  await until(async () => (await control(revived)).served > 0, 'the restarted provider serving')
  await until(() => events.some((e) => e.kind === 'restored'), 'the restore')
  await stream.stop()
  t.same([...new Set(statuses)], [200], `all ${statuses.length} client requests succeeded`)
  t.same(
    events.map((e) => e.kind),
    ['ejected', 'recovered', 'trial', 'restored'],
    'ejected, the probe passed, the first request was the trial and it succeeded',
  )
  t.match(events[0], { reason: 'max_fails', evidence: { recovery: 'tcp' } })
  t.match(events[1], { evidence: { probe: 'tcp', result: 'ok' } })
  t.equal(upstream.passive.snapshot()[0]?.ejections, 1, 'no second ejection: no trial was wasted on a dead port')
})

t.test('a refusing server gets no trial when its ejection ends; a passing probe restores it outside nginx mode', async (t) => {
  const port = await closedPort()
  const refused = classifyError({ code: 'ECONNREFUSED' })
  const eject = (u: Upstream): void => {
    const w = { started: Date.now(), role: 0, prevWaiting: undefined, nextWaiting: undefined, waitingOn: undefined, stalled() {} }
    u.passive.dispatched(u.peers[0] as Peer, w, Date.now())
    u.passive.settled(u.peers[0] as Peer, w, refused, true, Date.now())
  }
  const servers = [{ address: `127.0.0.1:${port}` }, { address: '127.0.0.1:1' }, { address: '127.0.0.1:2' }]
  const on = new Upstream('on', { servers, passive: { mode: 'consecutive', ejectTime: '100ms', maxEjectTime: '100ms' } })
  const off = new Upstream('off', { servers, passive: { mode: 'consecutive', ejectTime: '100ms', maxEjectTime: '100ms', recoveryProbe: false } })
  t.teardown(() => Promise.all([on.close(), off.close()]))
  eject(on)
  eject(off)
  await new Promise((r) => setTimeout(r, 500))
  t.equal(off.passive.snapshot()[0]?.state, 'trial', 'without probes: its trial is due when the ejection ends')
  t.equal(on.passive.snapshot()[0]?.state, 'ejected', 'with probes: still refused, so no trial request is spent')
  const restored = new Promise<HealthEvent>((r) => on.on('health', (e: HealthEvent) => e.kind === 'restored' && r(e)))
  const server = createServer((s) => s.destroy())
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  t.teardown(() => server.close())
  t.match(await restored, { reason: 'recovery probe passed', evidence: { probe: 'tcp' } })
  t.equal(on.passive.snapshot()[0]?.state, 'ok', 'consecutive mode: restored without a trial')
})
