// gRPC pieces for tests: real @grpc/grpc-js providers as child processes (their own process groups, so SIGKILL
// and SIGSTOP reach them), clients, and promise forms of the Echo calls (bench/peers/echo.proto).
import * as grpc from '@grpc/grpc-js'
import { echoService, type Msg } from '../../bench/lib/grpc-provider.js'
import { grpcProviderScript } from '../../bench/lib/procs.js'
import { spawnScript, type Provider } from './index.js'

type Tap = { teardown(fn: () => unknown): void }

export interface GrpcState {
  name: string
  served: number
  code: number
  delay: number
}

export interface GrpcProvider extends Provider {
  /** Change its behaviour over its HTTP control port: `health=NOT_SERVING[&service=NAME]`, `fail=14`, `delay=MS`. */
  control(query: string): Promise<GrpcState>
}

/**
 * A gRPC provider child process (bench/lib/grpc-provider.ts). `options`: a number is `--max-age` (ms: GOAWAY on
 * connections that old), or the arguments themselves (`--no-health`, `--tls-cert F --tls-key F`, ...).
 */
export async function spawnGrpcProvider(t: Tap, name: string, options: number | string[] = []): Promise<GrpcProvider> {
  const args = typeof options === 'number' ? ['--max-age', String(options)] : options
  const { ready, ...provider } = await spawnScript(t, name, grpcProviderScript, args)
  const control = async (query: string): Promise<GrpcState> => {
    const res = await fetch(`http://127.0.0.1:${ready['control'] as number}/_control?${query}`)
    return (await res.json()) as GrpcState
  }
  return { ...provider, control }
}

export interface EchoClient {
  raw: grpc.Client
  say(m: Partial<Msg>, deadlineMs?: number): Promise<Msg>
  stream(m: Partial<Msg>): Promise<Msg[]>
  collect(texts: string[]): Promise<Msg>
  control(code: number, delayMs?: number): Promise<{ served: number; name: string }>
}

type Callback<T> = (err: grpc.ServiceError | null, value: T) => void
type Methods = {
  say(m: Partial<Msg>, options: grpc.CallOptions, cb: Callback<Msg>): void
  stream(m: Partial<Msg>): grpc.ClientReadableStream<Msg>
  collect(cb: Callback<Msg>): grpc.ClientWritableStream<Partial<Msg>>
  control(m: { code: number; delayMs: number }, cb: Callback<{ served: number; name: string }>): void
}

/** An Echo client on `address` (vigil's listener or a provider), closed at teardown. */
export function echoClient(t: Tap, address: string, options: grpc.ChannelOptions = {}): EchoClient {
  const { Client } = echoService()
  const raw = new Client(address, grpc.credentials.createInsecure(), options)
  t.teardown(() => raw.close())
  const c = raw as unknown as Methods
  const settle = <T>(resolve: (v: T) => void, reject: (e: Error) => void): Callback<T> => (err, v) => (err === null ? resolve(v) : reject(err))
  return {
    raw,
    say: (m, deadlineMs = 10_000) => new Promise((resolve, reject) => c.say(m, { deadline: Date.now() + deadlineMs }, settle(resolve, reject))),
    stream: (m) =>
      new Promise((resolve, reject) => {
        const got: Msg[] = []
        const s = c.stream(m)
        s.on('data', (x: Msg) => got.push(x))
        s.on('error', reject)
        s.on('end', () => resolve(got))
      }),
    collect: (texts) =>
      new Promise((resolve, reject) => {
        const w = c.collect(settle(resolve, reject))
        for (const text of texts) w.write({ text })
        w.end()
      }),
    control: (code, delayMs = 0) => new Promise((resolve, reject) => c.control({ code, delayMs }, settle(resolve, reject))),
  }
}
