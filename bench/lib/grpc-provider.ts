// A gRPC provider (@grpc/grpc-js) for the HTTP/2 tests and drills, run as a child process: it prints
// {"port":N} once listening, serves vigil.echo.Echo (bench/peers/echo.proto); its behaviour (a gRPC status for
// every call, a delay) changes through its own Control method. `--max-age MS` makes it send GOAWAY on every
// connection that old (grpc.max_connection_age_ms, what gRPC servers do in production to rebalance clients).
import { fileURLToPath } from 'node:url'
import { existsSync, realpathSync } from 'node:fs'
import { parseArgs } from 'node:util'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

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

export async function startGrpcProvider(name: string, port = 0, maxAge = 0): Promise<{ port: number; server: grpc.Server }> {
  const state = { code: 0, delay: 0, served: 0 }
  const server = new grpc.Server(maxAge > 0 ? { 'grpc.max_connection_age_ms': maxAge, 'grpc.max_connection_age_grace_ms': 10_000 } : {})
  const later = (fn: () => void): void => {
    if (state.delay > 0) setTimeout(fn, state.delay)
    else fn()
  }
  const failed = (): grpc.ServiceError | null => (state.code === 0 ? null : Object.assign(new Error(`${name} answers ${state.code}`), { code: state.code, details: `${name} answers ${state.code}`, metadata: new grpc.Metadata() }))
  server.addService(echoService().service, {
    say: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      state.served++
      later(() => {
        const err = failed()
        if (err !== null) cb(err)
        else cb(null, { text: call.request.text, count: call.request.count, from: name })
      })
    },
    stream: (call: grpc.ServerWritableStream<Msg, Msg>) => {
      state.served++
      later(() => {
        const err = failed()
        if (err !== null) return call.destroy(err)
        for (let i = 0; i < Math.max(1, call.request.count); i++) call.write({ text: call.request.text, count: i, from: name })
        call.end()
      })
    },
    collect: (call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      state.served++
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
  const boundPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))),
  )
  return { port: boundPort, server }
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { name: { type: 'string', default: 'grpc' }, port: { type: 'string', default: '0' }, 'max-age': { type: 'string', default: '0' } } })
  const { port } = await startGrpcProvider(values.name as string, Number(values.port), Number(values['max-age']))
  process.stdout.write(`${JSON.stringify({ port })}\n`)
}
