// Shared pieces for tests: real servers on ephemeral loopback ports, real child-process providers, the real proxy.
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { request as undiciRequest, Agent } from 'undici'
import { Vigil, type Config } from '../../src/index.js'
import { killAtExit } from '../../bench/lib/procs.js'

type Tap = { teardown(fn: () => unknown): void }

export const root = fileURLToPath(new URL('../../', import.meta.url))
/** Child processes run the compiled sources (npm test builds first), so a provider starts in milliseconds. */
export const providerScript = `${root}dist/src/demo/provider.js`
export const cliScript = `${root}dist/src/cli.js`

export const silent = pino({ level: 'silent' })

/** An in-process HTTP server on an ephemeral loopback port, closed at teardown. */
export async function httpServer(t: Tap, handler: RequestListener): Promise<{ port: number; address: string }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  const port = (server.address() as AddressInfo).port
  return { port, address: `127.0.0.1:${port}` }
}

/** A loopback port with nothing listening on it (connections are refused). */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

export interface ProxyHandle {
  vigil: Vigil
  url: string
  port: number
  admin: string
}

/** Start the real proxy in-process with one listener on port 0 and the admin listener on port 0. */
export async function startProxy(t: Tap, config: Partial<Config> & Pick<Config, 'upstreams'>, logger = silent): Promise<ProxyHandle> {
  const full: Config = {
    listeners: [{ address: '127.0.0.1:0', upstream: Object.keys(config.upstreams)[0] as string }],
    admin: { address: '127.0.0.1:0' },
    ...config,
  }
  const vigil = await new Vigil(full, { logger }).start()
  t.teardown(() => vigil.stop(1_000))
  const port = (vigil.listenerAddresses[0] as AddressInfo).port
  return { vigil, url: `http://127.0.0.1:${port}`, port, admin: `http://127.0.0.1:${(vigil.adminAddress as AddressInfo).port}` }
}

export interface Provider {
  name: string
  port: number
  address: string
  child: ChildProcess
  /** Signal the provider's whole process group. */
  signal(sig: NodeJS.Signals): void
  exited: Promise<void>
}

/** A real provider child process (its own process group), stopped with SIGKILL at teardown; `script` prints {"port":N} once listening. */
export async function spawnProvider(t: Tap, name: string, args: string[] = [], script = providerScript): Promise<Provider> {
  const { ready: _, ...provider } = await spawnScript(t, name, script, args)
  return provider
}

/**
 * `script` run as a child process in its own process group, SIGKILLed at teardown; ready once it writes its first
 * stdout line, a JSON object with at least `port` (`ready` is all of it).
 */
export async function spawnScript(t: Tap, name: string, script: string, args: string[]): Promise<Provider & { ready: Record<string, unknown> }> {
  const child = spawn(process.execPath, [script, '--name', name, ...args], { stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  killAtExit(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const signal = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-(child.pid as number), sig)
    } catch {
      // already gone
    }
  }
  t.teardown(async () => {
    signal('SIGCONT')
    signal('SIGKILL')
    await exited
  })
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`provider ${name} exited early (${code})`)))
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', (line) => resolve(JSON.parse(line) as Record<string, unknown>))
  })
  const port = ready['port'] as number
  return { name, port, address: `127.0.0.1:${port}`, child, signal, exited, ready }
}

/** A client with its own connection pool, so tests do not share keep-alive sockets. */
export function client(t: Tap): Agent {
  const agent = new Agent({ keepAliveTimeout: 1_000 })
  t.teardown(() => agent.close())
  return agent
}

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

export async function get(url: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer; dispatcher?: Agent } = {}): Promise<Reply> {
  const res = await undiciRequest(url, {
    method: (options.method ?? 'GET') as 'GET',
    headers: options.headers,
    body: options.body,
    dispatcher: options.dispatcher,
  })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

/** Closed-loop GETs of `url` from `concurrency` clients sharing `agent`, until stopped; every status in order. */
export function steadyGets(url: string, agent: Agent, concurrency: number): { statuses: number[]; stop(): Promise<void> } {
  return steadily(async () => (await get(url, { dispatcher: agent })).status, concurrency)
}

/** `send` in `concurrency` closed loops (each call after the last one's answer) until stopped; every status in order. */
export function steadily(send: () => Promise<number>, concurrency = 1): { statuses: number[]; stop(): Promise<void> } {
  const statuses: number[] = []
  let stopped = false
  const loops = Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (!stopped) statuses.push(await send())
    }),
  )
  return {
    statuses,
    stop: async () => {
      stopped = true
      await loops
    },
  }
}

/** A handler that echoes what it received as JSON. */
export function echo(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString() })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
}

export interface ProviderState {
  name: string
  served: number
  status: number
  delay: number
}

/** Read (and optionally change) a provider's behaviour and its served-request count, from its own side. */
export async function control(p: Provider, query = ''): Promise<ProviderState> {
  const r = await get(`http://${p.address}/_control${query === '' ? '' : `?${query}`}`)
  return JSON.parse(r.body) as ProviderState
}
