// gRPC end to end: real @grpc/grpc-js clients, through vigil's h2c listener, to real @grpc/grpc-js providers
// (child processes) over h2c: unary and streaming calls balanced over three providers, and vigil's own
// errors as gRPC errors.
import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { closedPort, get, startProxy } from './helpers/index.js'
import { echoClient, spawnGrpcProvider } from './helpers/grpc.js'

const providers = await Promise.all(['a', 'b', 'c'].map((n) => spawnGrpcProvider(t, n)))

async function grpcProxy(servers: string[], extra: Record<string, unknown> = {}) {
  const proxy = await startProxy(t, {
    listeners: [{ address: '127.0.0.1:0', upstream: 'g', http2: true }],
    upstreams: { g: { protocol: 'h2c', servers: servers.map((address) => ({ address })), ...extra } },
  })
  return { proxy, client: echoClient(t, `127.0.0.1:${proxy.port}`) }
}

t.test('unary calls are balanced over three providers, each answered in full', async (t) => {
  const { client, proxy } = await grpcProxy(providers.map((p) => p.address))
  const from = new Map<string, number>()
  for (let i = 0; i < 9; i++) {
    const r = await client.say({ text: `hello ${i}`, count: i })
    t.equal(r.text, `hello ${i}`)
    t.equal(r.count, i)
    from.set(r.from, (from.get(r.from) ?? 0) + 1)
  }
  t.same([...from.entries()].sort(), [['a', 3], ['b', 3], ['c', 3]], 'round robin over the three, by stream')
  const status = JSON.parse((await get(`${proxy.admin}/status?format=json`)).body) as { servers: { server: { protocol: string; grpc: { ok: number; error: number } }[] } }
  t.same(status.servers.server.map((s) => [s.protocol, s.grpc.ok, s.grpc.error]), [['h2c', 3, 0], ['h2c', 3, 0], ['h2c', 3, 0]], 'status: protocol and gRPC classes per server')
  const metrics = (await get(`${proxy.admin}/metrics`)).body
  t.match(metrics, /vigil_grpc_responses_total\{upstream="g",server="127\.0\.0\.1:\d+",code="OK"\} 3/)
  t.match(metrics, /vigil_server_streams\{upstream="g",server="127\.0\.0\.1:\d+"\} 0/)
})

t.test('server streaming and client streaming calls pass through whole', async (t) => {
  const { client } = await grpcProxy(providers.map((p) => p.address))
  const got = await client.stream({ text: 'tick', count: 50 })
  t.equal(got.length, 50)
  t.same(got.map((m) => m.count), Array.from({ length: 50 }, (_, i) => i), 'in order')
  t.equal(new Set(got.map((m) => m.from)).size, 1, 'one provider carries the whole stream')
  const joined = await client.collect(['a', 'b', 'c', 'd'])
  t.equal(joined.text, 'abcd')
  t.equal(joined.count, 4)
})

t.test('an error status from the provider reaches the client with its message', async (t) => {
  const p = await spawnGrpcProvider(t, 'err')
  const { client } = await grpcProxy([p.address])
  await echoClient(t, p.address).control(grpc.status.NOT_FOUND)
  await t.rejects(client.say({ text: 'x' }), { code: grpc.status.NOT_FOUND, details: 'err answers 5' })
})

t.test("vigil's own error on a gRPC call is a gRPC error: grpc-status 14, grpc-message, x-vigil-error", async (t) => {
  const { client } = await grpcProxy([`127.0.0.1:${await closedPort()}`], { retry: { tries: 1 } })
  const err = (await client.say({ text: 'x' }).catch((e: unknown) => e)) as grpc.ServiceError
  t.equal(err.code, grpc.status.UNAVAILABLE)
  t.match(err.details, /refused the connection/)
  t.same(err.metadata.get('x-vigil-error'), ['connect_refused'])
})
