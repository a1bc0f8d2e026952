// gRPC under faults, end to end: real @grpc/grpc-js providers as child processes (SIGKILL and SIGSTOP reach their
// whole process groups), a real gRPC client, vigil between them over h2c. Every call must succeed: retries of
// uncommitted calls, stall re-dispatch, GOAWAY drained, UNAVAILABLE ejected.
import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { startProxy } from './helpers/index.js'
import { until } from './helpers/config-file.js'
import { echoClient, spawnGrpcProvider, type EchoClient } from './helpers/grpc.js'
import type { Upstream } from '../src/upstream/upstream.js'
import type { Peer } from '../src/upstream/peer.js'

async function grpcProxy(servers: string[], extra: Record<string, unknown> = {}) {
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'g', http2: true }],
    upstreams: { g: { protocol: 'h2c', servers: servers.map((address) => ({ address })), ...extra } },
  })
  const group = (): Upstream => proxy.vigil.upstreams.get('g') as Upstream
  return { proxy, group, peer: (address: string) => group().find(address) as Peer, client: echoClient(t, `127.0.0.1:${proxy.port}`) }
}

/** `concurrency` loops of unary calls until stopped; every outcome is kept (no call may be lost either). */
function load(client: EchoClient, concurrency: number): { ok: number; failed: grpc.ServiceError[]; from: Map<string, number>; stop(): Promise<void> } {
  const state = { ok: 0, failed: [] as grpc.ServiceError[], from: new Map<string, number>() }
  let stopped = false
  const loops = Promise.all(
    Array.from({ length: concurrency }, async (_, i) => {
      for (let n = 0; !stopped; n++) {
        try {
          const r = await client.say({ text: `${i}-${n}` }, 20_000)
          state.ok++
          state.from.set(r.from, (state.from.get(r.from) ?? 0) + 1)
        } catch (err) {
          state.failed.push(err as grpc.ServiceError)
        }
      }
    }),
  )
  return Object.assign(state, {
    stop: async () => {
      stopped = true
      await loops
    },
  })
}

t.test('a provider SIGKILLed under gRPC load: 0 failed calls, the others take its share', async (t) => {
  const ps = await Promise.all(['k1', 'k2', 'k3'].map((n) => spawnGrpcProvider(t, n)))
  const { client, peer } = await grpcProxy(ps.map((p) => p.address))
  const l = load(client, 8)
  await until(() => (l.from.get('k1') ?? 0) >= 20, 'calls served by k1')
  const victim = ps[0]!
  victim.signal('SIGKILL')
  await victim.exited
  const okAtKill = l.ok
  await until(() => l.ok >= okAtKill + 300, '300 calls after the kill')
  await l.stop()
  t.same(l.failed.map((e) => `${e.code} ${e.details}`), [], 'no call failed')
  t.equal(peer(victim.address).passiveOk, false, 'the killed provider is ejected')
})

t.test('a provider SIGSTOPped under gRPC load: 0 failed calls (stall re-dispatch), its calls answered elsewhere', async (t) => {
  const ps = await Promise.all(['s1', 's2', 's3'].map((n) => spawnGrpcProvider(t, n)))
  const { client } = await grpcProxy(ps.map((p) => p.address), { passive: { stall: { floor: '300ms' } } })
  const l = load(client, 8)
  await until(() => (l.from.get('s1') ?? 0) >= 20, 'calls served by s1')
  const frozen = ps[0]!
  frozen.signal('SIGSTOP')
  // Answers the provider wrote before it stopped may still be on their way: count from 50 calls later.
  const okAtFreeze = l.ok
  await until(() => l.ok >= okAtFreeze + 50, '50 calls after the freeze')
  const servedBefore = l.from.get('s1') ?? 0
  await until(() => l.ok >= okAtFreeze + 350, '300 more calls')
  await l.stop()
  t.same(l.failed.map((e) => `${e.code} ${e.details}`), [], 'no call failed')
  t.equal(l.from.get('s1') ?? 0, servedBefore, 'no answer came from the frozen provider')
  frozen.signal('SIGCONT')
})

t.test('a provider answering UNAVAILABLE is ejected; with grpc_UNAVAILABLE in retry.on no call fails', async (t) => {
  const ps = await Promise.all(['u1', 'u2', 'u3'].map((n) => spawnGrpcProvider(t, n)))
  const { client, peer } = await grpcProxy(
    ps.map((p) => p.address),
    { passive: { recoveryProbe: false, failTimeout: '1h' }, retry: { on: ['error', 'timeout', 'grpc_UNAVAILABLE'] } },
  )
  await echoClient(t, ps[0]!.address).control(grpc.status.UNAVAILABLE)
  const from = new Map<string, number>()
  for (let i = 0; i < 12; i++) {
    const r = await client.say({ text: `${i}` })
    from.set(r.from, (from.get(r.from) ?? 0) + 1)
  }
  t.equal(from.get('u1'), undefined, 'no answer from the failing provider reached the client')
  t.equal(peer(ps[0]!.address).passive?.state, 'ejected', 'it is ejected (grpc_UNAVAILABLE is in failOn by default)')
  t.equal(peer(ps[0]!.address).stats.grpcCodes[grpc.status.UNAVAILABLE], 1, 'counted once: ejected at its first')
})

t.test('a listed gRPC status (passive.failOn grpc_RESOURCE_EXHAUSTED) ejects; an unlisted one does not', async (t) => {
  const ps = await Promise.all(['r1', 'r2', 'r3'].map((n) => spawnGrpcProvider(t, n)))
  const { client, peer } = await grpcProxy(ps.map((p) => p.address), { passive: { recoveryProbe: false, failTimeout: '1h', failOn: ['error', 'grpc_RESOURCE_EXHAUSTED'] } })
  await echoClient(t, ps[0]!.address).control(grpc.status.RESOURCE_EXHAUSTED)
  await echoClient(t, ps[1]!.address).control(grpc.status.NOT_FOUND)
  const codes: number[] = []
  for (let i = 0; i < 6; i++) await client.say({ text: `${i}` }).then(() => codes.push(0), (e: grpc.ServiceError) => codes.push(e.code))
  t.ok(codes.includes(grpc.status.RESOURCE_EXHAUSTED) && codes.includes(grpc.status.NOT_FOUND), 'both statuses reach the client (not in retry.on)')
  t.equal(peer(ps[0]!.address).passive?.state, 'ejected')
  t.equal(peer(ps[1]!.address).passive?.state, 'ok', 'NOT_FOUND is not listed')
})

t.test('providers sending GOAWAY (max connection age) are drained, not ejected: 0 failed calls', async (t) => {
  const ps = await Promise.all(['g1', 'g2', 'g3'].map((n) => spawnGrpcProvider(t, n, 200)))
  const { client, group } = await grpcProxy(ps.map((p) => p.address))
  const l = load(client, 8)
  await until(() => group().peers.every((p) => p.goaways >= 2), 'two GOAWAYs from every provider')
  await l.stop()
  t.same(l.failed.map((e) => `${e.code} ${e.details}`), [], 'no call failed')
  t.ok(l.ok > 0)
  t.ok(group().peers.every((p) => p.passive?.state === 'ok' && p.failures === 0), 'no provider ejected, no failure counted')
})
