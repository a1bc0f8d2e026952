// A gRPC provider for the tests, the bench and the gRPC drills: a real @grpc/grpc-js server with the standard
// health service (grpc-health-check) and one unary method, /vigil.bench.Echo/Call, that answers its name. Its
// behaviour (health status per service, a gRPC error code for calls, a delay) is changed at run time through
// an HTTP/1.1 control port, /_control, as the HTTP provider's (src/demo/provider.ts) is.
//
//   node dist/bench/lib/grpc-health-provider.js --name a [--port 0] [--count MS] [--no-health] [--tls-cert F --tls-key F]
//
// First stdout line: {"name","port","control","pid"}. With --count, {"t","n"} lines of calls served per interval.
import { createServer as createHttpServer } from 'node:http'
import { readFileSync, realpathSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Server, ServerCredentials, status, type ServiceError, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js'
import { HealthImplementation, type ServingStatus } from 'grpc-health-check'
import { ServedCounter } from '../../src/demo/served-counter.js'

/** The bench's one RPC: bytes in, the provider's name out (no protobuf: the messages are opaque bytes). */
export const ECHO_PATH = '/vigil.bench.Echo/Call'
const raw = (b: Buffer): Buffer => b
export const echoService = {
  call: {
    path: ECHO_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
}

export interface GrpcBehaviour {
  /** gRPC status code every call is answered with; 0 answers normally. */
  fail: number
  delay: number
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  const { values } = parseArgs({
    options: {
      name: { type: 'string', default: 'grpc' },
      port: { type: 'string', default: '0' },
      count: { type: 'string' },
      'no-health': { type: 'boolean', default: false },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
    },
  })
  const name = values.name
  const behaviour: GrpcBehaviour = { fail: 0, delay: 0 }
  let served = 0
  const interval = values.count === undefined ? 0 : Number(values.count)
  const counter = interval > 0 ? new ServedCounter(interval, Date.now(), (b) => process.stdout.write(`${JSON.stringify(b)}\n`)) : undefined
  const reply = Buffer.from(`hello from ${name}\n`)

  const server = new Server()
  const health = values['no-health'] ? undefined : new HealthImplementation({ '': 'SERVING' })
  health?.addToServer(server)
  const echo: UntypedServiceImplementation = {
    call: (_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
      served++
      counter?.record(Date.now())
      const answer = (): void => {
        if (behaviour.fail === 0) callback(null, reply)
        else callback({ code: behaviour.fail, details: `${name} answers ${status[behaviour.fail] ?? behaviour.fail}` } as ServiceError)
      }
      if (behaviour.delay > 0) setTimeout(answer, behaviour.delay)
      else answer()
    },
  }
  server.addService(echoService, echo)
  const credentials =
    values['tls-cert'] !== undefined && values['tls-key'] !== undefined
      ? ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(values['tls-cert']), private_key: readFileSync(values['tls-key']) }])
      : ServerCredentials.createInsecure()
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${values.port}`, credentials, (err, p) => (err === null ? resolve(p) : reject(err))),
  )

  // /_control?health=NOT_SERVING[&service=NAME] sets a serving status; fail=14 answers calls UNAVAILABLE (0: normal);
  // delay=MS delays each answer. Every call answers the state as JSON.
  const control = createHttpServer((req, res) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams
    const set = q.get('health')
    if (set !== null) health?.setStatus(q.get('service') ?? '', set as ServingStatus)
    if (q.has('fail')) behaviour.fail = Number(q.get('fail'))
    if (q.has('delay')) behaviour.delay = Number(q.get('delay'))
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(`${JSON.stringify({ name, served, ...behaviour })}\n`)
  })
  await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve))
  process.stdout.write(`${JSON.stringify({ name, port, control: (control.address() as AddressInfo).port, pid: process.pid })}\n`)
  if (counter !== undefined) setInterval(() => counter.roll(Date.now()), interval).unref()
  process.on('SIGTERM', () => {
    counter?.flush()
    control.close()
    server.tryShutdown(() => process.exit(0))
  })
}
