// A gRPC provider (@grpc/grpc-js) for the HTTP/2 tests, the bench and the drills, run as a child process: it
// prints {"name","port","control","pid"} once listening, serves vigil.echo.Echo (bench/peers/echo.proto) and
// the standard health service (grpc-health-check, every status SERVING until told otherwise; `--no-health`
// leaves it out, so a health check gets UNIMPLEMENTED). Its behaviour (a gRPC status for every call, a delay)
// changes through its own Control method, or, with the health status, through /_control on the HTTP/1.1 port
// it names as `control` (how the drills drive every provider): `?fail=14`, `?delay=MS`,
// `?health=NOT_SERVING[&service=NAME]`. `--max-age MS` makes it send GOAWAY on every connection that old
// (grpc.max_connection_age_ms, what gRPC servers do in production to rebalance clients); `--tls-cert F
// --tls-key F` serves TLS (h2 by ALPN); `--count MS` writes {"t","n"} lines of calls served per interval.
import { fileURLToPath } from 'node:url'
import { existsSync, readFileSync, realpathSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { HealthImplementation, type ServingStatus } from 'grpc-health-check'
import { ServedCounter } from '../../src/demo/served-counter.js'

/** Beside this file in the sources (bench/lib -> bench/peers), three levels up from the compiled one (dist/bench/lib). */
const besideSource = fileURLToPath(new URL('../peers/echo.proto', import.meta.url))
export const ECHO_PROTO = existsSync(besideSource) ? besideSource : fileURLToPath(new URL('../../../bench/peers/echo.proto', import.meta.url))

export interface Msg {
  text: string
  count: number
  from: string
}

/** The Echo service definition and a client constructor for it. */
export function echoService(): { service: grpc.ServiceDefinition; Client: grpc.ServiceClientConstructor } {
  const def = protoLoader.loadSync(ECHO_PROTO, { keepCase: false, defaults: true })
  const pkg = grpc.loadPackageDefinition(def) as unknown as { vigil: { echo: { Echo: grpc.ServiceClientConstructor } } }
  return { service: pkg.vigil.echo.Echo.service, Client: pkg.vigil.echo.Echo }
}

/** The bench's unary call: its path, and one request message (Msg { text: "hello" }) as h2load and bench/lib/grpc-load.ts send it. */
export const SAY_PATH = '/vigil.echo.Echo/Say'
export function sayRequest(): Buffer {
  return echoService().service['Say']?.requestSerialize({ text: 'hello' }) as Buffer
}

export interface GrpcProviderOptions {
  name: string
  port?: number
  /** grpc.max_connection_age_ms: GOAWAY on every connection this old (0: never). */
  maxAge?: number
  /** Serve the standard health service (default true). */
  health?: boolean
  /** PEM certificate chain and key: serve TLS. */
  tls?: { cert: Buffer; key: Buffer }
  /** Every call served, with its time (the drills' per-interval counts). */
  onCall?: (now: number) => void
}

export interface GrpcProviderState {
  /** gRPC status every call gets (0: answer normally). */
  code: number
  delay: number
  served: number
}

export async function startGrpcProvider(options: GrpcProviderOptions): Promise<{ port: number; server: grpc.Server; state: GrpcProviderState; health: HealthImplementation | undefined }> {
  const { name, maxAge = 0 } = options
  const state: GrpcProviderState = { code: 0, delay: 0, served: 0 }
  const server = new grpc.Server(maxAge > 0 ? { 'grpc.max_connection_age_ms': maxAge, 'grpc.max_connection_age_grace_ms': 10_000 } : {})
  const health = options.health === false ? undefined : new HealthImplementation({ '': 'SERVING' })
  health?.addToServer(server)
  const served = (): void => {
    state.served++
    options.onCall?.(Date.now())
  }
  const later = (fn: () => void): void => {
    if (state.delay > 0) setTimeout(fn, state.delay)
    else fn()
  }
  const failed = (): grpc.ServiceError | null => (state.code === 0 ? null : Object.assign(new Error(`${name} answers ${state.code}`), { code: state.code, details: `${name} answers ${state.code}`, metadata: new grpc.Metadata() }))
  server.addService(echoService().service, {
    say: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      served()
      later(() => {
        const err = failed()
        if (err !== null) cb(err)
        else cb(null, { text: call.request.text, count: call.request.count, from: name })
      })
    },
    stream: (call: grpc.ServerWritableStream<Msg, Msg>) => {
      served()
      later(() => {
        const err = failed()
        if (err !== null) return call.destroy(err)
        for (let i = 0; i < Math.max(1, call.request.count); i++) call.write({ text: call.request.text, count: i, from: name })
        call.end()
      })
    },
    collect: (call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      served()
      const parts: string[] = []
      call.on('data', (m: Msg) => parts.push(m.text))
      call.on('end', () => later(() => cb(failed(), { text: parts.join(''), count: parts.length, from: name })))
    },
    control: (call: grpc.ServerUnaryCall<{ code: number; delayMs: number }, { served: number; name: string }>, cb: grpc.sendUnaryData<{ served: number; name: string }>) => {
      state.code = call.request.code
      state.delay = call.request.delayMs
      cb(null, { served: state.served, name })
    },
  })
  const credentials = options.tls === undefined ? grpc.ServerCredentials.createInsecure() : grpc.ServerCredentials.createSsl(null, [{ cert_chain: options.tls.cert, private_key: options.tls.key }])
  const boundPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${options.port ?? 0}`, credentials, (err, p) => (err === null ? resolve(p) : reject(err))),
  )
  return { port: boundPort, server, state, health }
}

/** /_control on an HTTP/1.1 port: `fail=CODE`, `delay=MS`, `health=STATUS[&service=NAME]`; answers the state as JSON. */
async function controlPort(name: string, state: GrpcProviderState, health: HealthImplementation | undefined): Promise<number> {
  const control = createServer((req, res) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams
    const set = q.get('health')
    if (set !== null) health?.setStatus(q.get('service') ?? '', set as ServingStatus)
    if (q.has('fail')) state.code = Number(q.get('fail'))
    if (q.has('delay')) state.delay = Number(q.get('delay'))
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(`${JSON.stringify({ name, ...state })}\n`)
  })
  await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve))
  return (control.address() as AddressInfo).port
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      name: { type: 'string', default: 'grpc' },
      port: { type: 'string', default: '0' },
      'max-age': { type: 'string', default: '0' },
      count: { type: 'string' },
      'no-health': { type: 'boolean', default: false },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
    },
  })
  const name = values.name
  const interval = values.count === undefined ? 0 : Number(values.count)
  const counter = interval > 0 ? new ServedCounter(interval, Date.now(), (b) => process.stdout.write(`${JSON.stringify(b)}\n`)) : undefined
  const tls = values['tls-cert'] !== undefined && values['tls-key'] !== undefined ? { cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']) } : undefined
  const { port, server, state, health } = await startGrpcProvider({
    name,
    port: Number(values.port),
    maxAge: Number(values['max-age']),
    health: !values['no-health'],
    tls,
    onCall: counter === undefined ? undefined : (now) => counter.record(now),
  })
  const control = await controlPort(name, state, health)
  process.stdout.write(`${JSON.stringify({ name, port, control, pid: process.pid })}\n`)
  if (counter !== undefined) setInterval(() => counter.roll(Date.now()), interval).unref()
  process.on('SIGTERM', () => {
    counter?.flush()
    server.tryShutdown(() => process.exit(0))
  })
}
