// The proxies under test, each a separate process behind one small interface: vigil (its CLI, with a config
// fragment from bench/peers/), a plain http-proxy forwarder, nginx, HAProxy and Caddy (configs rendered from
// bench/peers/). A peer that is not installed is reported as missing, never as a failure.
import { createWriteStream } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { Listener } from '../../src/config/schema.js'
import { Proc, cliScript, firstJsonLine, freePort, root, waitForPort, which } from './procs.js'

const run = promisify(execFile)

export interface ProxyUnderTest {
  readonly name: string
  readonly port: number
  readonly pid: number
  /** Point the proxy at a new server list the way an operator would; resolves to what happened. */
  reload(servers: readonly string[]): Promise<string>
  /** vigil with workers: how long the workers took to apply the primary's health decisions (its status page). */
  propagation?(): Promise<Propagation | undefined>
  stop(): Promise<void>
}

/** From the primary's decision until every worker applied it: state changes measured, the slowest and the last (ms). */
export interface Propagation {
  measured: number
  slowestMs: number | undefined
  lastMs: number | undefined
  /** Of the slowest: ms until it was handed to every worker's channel, and until the last worker's loop read it. */
  slowestSentMs?: number | undefined
  slowestReceivedMs?: number | undefined
}

export type ProxyKind = 'vigil' | 'undici' | 'http-proxy' | 'nginx' | 'haproxy' | 'caddy'

export interface ProxySpec {
  /** Name in tables: "vigil-both", "nginx", ... */
  name: string
  kind: ProxyKind
  /** For vigil: the upstream fragment file in bench/peers/ (passive, active, retry, timeouts). */
  fragment?: string
  /** For vigil: write an access log of this format to a file (what it costs is measured by this row). */
  access?: 'json' | 'combined'
  /** For vigil: settings of its listener beside address and upstream (`{ "http2": true }` for h2c). */
  listener?: Record<string, unknown>
  /** For nginx, HAProxy, Caddy: the config template in bench/peers/ instead of the kind's default. */
  template?: string
  /** vigil's `workers` (unset: one process) or nginx's `worker_processes` (default 1). */
  workers?: number
}

export const peersDir = `${root}bench/peers/`

/** Replace {{key}} and repeat {{#servers}}...{{/servers}} once per server ({{address}}, {{index}}). */
export function render(template: string, values: Record<string, string | number>, servers: readonly string[]): string {
  return template
    .replace(/\{\{#servers\}\}([\s\S]*?)\{\{\/servers\}\}/g, (_, block: string) =>
      servers.map((address, i) => block.replaceAll('{{address}}', address).replaceAll('{{index}}', String(i + 1))).join(''),
    )
    .replace(/\{\{(\w+)\}\}/g, (whole, key: string) => (key in values ? String(values[key]) : whole))
}

/** The binary a spec needs, or undefined when it needs none beyond node. */
export function binaryOf(kind: ProxyKind): string | undefined {
  return kind === 'nginx' || kind === 'haproxy' || kind === 'caddy' ? kind : undefined
}

export async function isInstalled(kind: ProxyKind): Promise<boolean> {
  const bin = binaryOf(kind)
  return bin === undefined || (await which(bin)) !== undefined
}

/** Why `spec` cannot run here (its binary is missing, or this vigil build has no HTTP/2 listener), or undefined. */
export async function unavailable(spec: ProxySpec): Promise<string | undefined> {
  if (!(await isInstalled(spec.kind))) return `${spec.kind} is not installed`
  if (spec.kind === 'vigil' && spec.listener?.['http2'] !== undefined && !('http2' in (Listener.properties as Record<string, unknown>))) {
    return 'this vigil build has no HTTP/2 listener (listeners[].http2)'
  }
  return undefined
}

/** The vigil config for one listener in front of `servers`, with an upstream fragment merged in. */
export function vigilConfig(
  port: number,
  adminPort: number,
  servers: readonly string[],
  fragment: Record<string, unknown>,
  log: Record<string, unknown> = { level: 'warn' },
  workers?: number,
  listener: Record<string, unknown> = {},
): object {
  return {
    workers,
    listeners: [{ ...listener, address: `127.0.0.1:${port}`, upstream: 'providers' }],
    admin: { address: `127.0.0.1:${adminPort}` },
    log,
    upstreams: { providers: { ...fragment, servers: servers.map((address) => ({ address })) } },
  }
}

interface StatusJson {
  servers: { server: { name: string }[] }
  workers?: { propagation: { measured: number; last?: { ms: number }; slowest?: { ms: number; sent: number; received: number } } }
}

class VigilProcess implements ProxyUnderTest {
  constructor(
    readonly name: string,
    readonly port: number,
    private readonly adminPort: number,
    private readonly dir: string,
    private readonly fragment: Record<string, unknown>,
    private readonly log: Record<string, unknown>,
    private readonly listener: Record<string, unknown> | undefined,
    private readonly proc: Proc,
    private readonly workers: number | undefined,
  ) {}

  get pid(): number {
    return this.proc.pid
  }

  async reload(servers: readonly string[]): Promise<string> {
    await writeFile(join(this.dir, 'vigil.json'), JSON.stringify(vigilConfig(this.port, this.adminPort, servers, this.fragment, this.log, this.workers, this.listener)))
    const admin = `http://127.0.0.1:${this.adminPort}`
    let how: string
    const res = await fetch(`${admin}/reload`, { method: 'POST' }).catch(() => undefined)
    if (res !== undefined && res.ok) how = 'POST /reload'
    else {
      this.proc.signal('SIGHUP')
      how = `SIGHUP (POST /reload answered ${res?.status ?? 'nothing'})`
    }
    // Give the reload a moment, then read back the live server list: the only proof that it was applied.
    await new Promise((r) => setTimeout(r, 300))
    const status = (await fetch(`${admin}/status?format=json`).then((r) => r.json()).catch(() => undefined)) as StatusJson | undefined
    const live = status?.servers.server.map((s) => s.name).sort() ?? []
    const applied = live.join(',') === [...servers].sort().join(',')
    return `${how}; ${applied ? 'applied' : `NOT applied (still serving ${live.join(' ')})`}`
  }

  async propagation(): Promise<Propagation | undefined> {
    if (this.workers === undefined) return undefined
    const status = (await fetch(`http://127.0.0.1:${this.adminPort}/status?format=json`).then((r) => r.json()).catch(() => undefined)) as StatusJson | undefined
    const p = status?.workers?.propagation
    return p === undefined ? undefined : { measured: p.measured, slowestMs: p.slowest?.ms, lastMs: p.last?.ms, slowestSentMs: p.slowest?.sent, slowestReceivedMs: p.slowest?.received }
  }

  async stop(): Promise<void> {
    await this.proc.stop()
    await rm(this.dir, { recursive: true, force: true })
  }
}

async function startVigil(spec: ProxySpec, servers: readonly string[]): Promise<ProxyUnderTest> {
  const fragment = spec.fragment === undefined ? {} : (JSON.parse(await readFile(`${peersDir}${spec.fragment}`, 'utf8')) as Record<string, unknown>)
  const dir = await mkdtemp(join(tmpdir(), 'vigil-bench-'))
  const [port, adminPort] = [await freePort(), await freePort()]
  const file = join(dir, 'vigil.json')
  // DRILL_PROXY_LOG=FILE: vigil logs at debug level with its access log on stdout, kept in FILE with the time each
  // line arrived (to find where a drill's slow requests or decisions went; it costs the proxy some CPU).
  const keep = process.env['DRILL_PROXY_LOG']
  const log =
    keep !== undefined ? { level: 'debug', access: true } : spec.access === undefined ? { level: 'warn' } : { level: 'warn', access: { path: join(dir, 'access.log'), format: spec.access } }
  await writeFile(file, JSON.stringify(vigilConfig(port, adminPort, servers, fragment, log, spec.workers, spec.listener)))
  const sink = keep === undefined ? undefined : createWriteStream(keep, { flags: 'a' })
  const proc = new Proc(spec.name, process.execPath, [cliScript, 'start', '-c', file], { onLine: sink === undefined ? () => undefined : (l) => sink.write(`${Date.now()} ${l}\n`) })
  // A cluster starts three processes or more: on a loaded 2-core machine that takes longer than one.
  await waitForPort(port, spec.workers === undefined ? 10_000 : 30_000, proc)
  // A cluster's listeners open with its first worker; it is ready once every worker serves (its status says).
  if (spec.workers !== undefined) await waitForWorkers(adminPort, spec.workers)
  return new VigilProcess(spec.name, port, adminPort, dir, fragment, log, spec.listener, proc, spec.workers)
}

async function waitForWorkers(adminPort: number, count: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const status = (await fetch(`http://127.0.0.1:${adminPort}/status?format=json`).then((r) => r.json()).catch(() => undefined)) as { workers?: { workers: { serving: boolean }[] } } | undefined
    if (status?.workers?.workers.filter((w) => w.serving).length === count) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`vigil: ${count} workers did not all serve within 20 s`)
}

/** A child process running the plain http-proxy forwarder (bench/lib/forwarder.ts) or the minimal undici one (bench/lib/undici-forwarder.ts). */
async function startForwarder(spec: ProxySpec, servers: readonly string[]): Promise<ProxyUnderTest> {
  const script = `${root}dist/bench/lib/${spec.kind === 'undici' ? 'undici-forwarder' : 'forwarder'}.js`
  const proc = new Proc(spec.name, process.execPath, [script, ...servers])
  const { port } = await firstJsonLine<{ port: number }>(proc)
  return {
    name: spec.name,
    port,
    pid: proc.pid,
    reload: async () => 'not supported: the forwarder has a fixed target list',
    stop: () => proc.stop(),
  }
}

/** nginx, HAProxy or Caddy, from the template in bench/peers/ rendered into a temp dir. */
async function startPeer(spec: ProxySpec, servers: readonly string[]): Promise<ProxyUnderTest> {
  const dir = await mkdtemp(join(tmpdir(), `vigil-${spec.kind}-`))
  const port = await freePort()
  const adminPort = await freePort()
  const values = { listen: `127.0.0.1:${port}`, port, dir, adminPort, workers: spec.workers ?? 1 }
  const file = spec.kind === 'nginx' ? 'nginx.conf' : spec.kind === 'haproxy' ? 'haproxy.cfg' : 'Caddyfile'
  const text = await readFile(`${peersDir}${spec.template ?? file}`, 'utf8')
  const path = join(dir, file)
  await writeFile(path, render(text, values, servers))
  const env = { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir }
  const [command, args] =
    spec.kind === 'nginx'
      ? ['nginx', ['-p', dir, '-c', path, '-e', join(dir, 'error.log')]]
      : spec.kind === 'haproxy'
        ? ['haproxy', ['-W', '-f', path]]
        : ['caddy', ['run', '--config', path, '--adapter', 'caddyfile']]
  const proc = new Proc(spec.name, (await which(command)) as string, args, { env, stderr: 'ignore' })
  await waitForPort(port, 15_000, proc)
  const reload = async (next: readonly string[]): Promise<string> => {
    await writeFile(path, render(text, values, next))
    if (spec.kind === 'caddy') {
      await run('caddy', ['reload', '--config', path, '--adapter', 'caddyfile', '--address', `127.0.0.1:${adminPort}`], { env })
      return 'caddy reload (admin API): applied'
    }
    // Only the master process: nginx reloads on SIGHUP, the HAProxy master (-W) on SIGUSR2.
    process.kill(proc.pid, spec.kind === 'nginx' ? 'SIGHUP' : 'SIGUSR2')
    return `${spec.kind === 'nginx' ? 'SIGHUP' : 'SIGUSR2'} to the master: applied by the peer's own reload`
  }
  return {
    name: spec.name,
    port,
    pid: proc.pid,
    reload,
    stop: async () => {
      await proc.stop(3_000)
      await rm(dir, { recursive: true, force: true })
    },
  }
}

export function startProxy(spec: ProxySpec, servers: readonly string[]): Promise<ProxyUnderTest> {
  switch (spec.kind) {
    case 'vigil':
      return startVigil(spec, servers)
    case 'undici':
    case 'http-proxy':
      return startForwarder(spec, servers)
    default:
      return startPeer(spec, servers)
  }
}

export interface HelloUpstream {
  readonly servers: readonly string[]
  /** Process group leaders serving them (nginx's master, whose group holds its worker; or one per demo provider). */
  readonly pids: readonly number[]
  stop(): Promise<void>
}

/**
 * `count` loopback servers answering a short 200 to everything: one nginx worker (peers/hello-nginx.conf) when
 * nginx is installed, otherwise one demo provider process per server. `h2c`: nginx speaking cleartext HTTP/2
 * with prior knowledge only (peers/hello-nginx-h2.conf), which has no fallback (undefined without nginx).
 */
export async function startHelloUpstream(count: number): Promise<HelloUpstream & { kind: string }>
export async function startHelloUpstream(count: number, h2c: true): Promise<(HelloUpstream & { kind: string }) | undefined>
export async function startHelloUpstream(count: number, h2c = false): Promise<(HelloUpstream & { kind: string }) | undefined> {
  const servers: string[] = []
  for (let i = 0; i < count; i++) servers.push(`127.0.0.1:${await freePort()}`)
  const nginx = await which('nginx')
  if (nginx !== undefined) {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-hello-'))
    const path = join(dir, 'nginx.conf')
    await writeFile(path, render(await readFile(`${peersDir}${h2c ? 'hello-nginx-h2.conf' : 'hello-nginx.conf'}`, 'utf8'), { dir }, servers))
    const proc = new Proc('hello-nginx', nginx, ['-p', dir, '-c', path, '-e', join(dir, 'error.log')], { stderr: 'ignore' })
    for (const s of servers) await waitForPort(Number(s.split(':')[1]), 15_000, proc)
    return {
      kind: h2c ? 'nginx return 200 over h2c' : 'nginx return 200',
      servers,
      pids: [proc.pid],
      stop: async () => {
        await proc.stop(3_000)
        await rm(dir, { recursive: true, force: true })
      },
    }
  }
  if (h2c) return undefined
  const procs = servers.map((s, i) => new Proc(`provider-${i}`, process.execPath, [`${root}dist/src/demo/provider.js`, '--name', `p${i}`, '--port', s.split(':')[1] as string]))
  for (const [i, s] of servers.entries()) await waitForPort(Number(s.split(':')[1]), 10_000, procs[i])
  return { kind: 'demo provider (node http)', servers, pids: procs.map((p) => p.pid), stop: async () => void (await Promise.all(procs.map((p) => p.stop()))) }
}
