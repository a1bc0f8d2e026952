// Telling a cluster's workers apart from outside: the status page counts each worker's requests. A cluster started
// with the real CLI, and clients placed on both of its workers. And the stall tests' cluster: two workers in front
// of one round-robin group.
import { basename } from 'node:path'
import type { Config, Upstream } from '../../src/config/schema.js'
import { until, writeConfig } from './config-file.js'
import { startCli, type CliProcess } from './cli.js'
import { get } from './index.js'

type Tap = { teardown(fn: () => unknown): void }

/** `workers: 2`, one listener on port 0 for group `api`: round robin over `servers`, with the group settings given. */
export function twoWorkersOver(servers: readonly string[], group: Omit<Upstream, 'servers'>): Config {
  return {
    workers: 2,
    listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
    admin: { address: '127.0.0.1:0' },
    reload: { watch: false },
    upstreams: { api: { balance: 'round_robin', servers: servers.map((address) => ({ address })), ...group } },
  }
}

/** The per-worker rows of a cluster's status page that these helpers read. */
export interface WorkerRows {
  workers: { workers: { pid: number; requests: number }[] }
}

/** Send one request with `send`; the pid of the worker whose count rose (the one that served it). */
export async function workerThatServed(status: () => Promise<WorkerRows>, send: () => Promise<unknown>, what = 'the request to be reported'): Promise<number> {
  const before = new Map((await status()).workers.workers.map((w) => [w.pid, w.requests]))
  await send()
  let pid = 0
  await until(async () => {
    const w = (await status()).workers.workers.find((x) => x.requests > (before.get(x.pid) ?? 0))
    pid = w?.pid ?? 0
    return w !== undefined
  }, what)
  return pid
}

/** The per-worker rows a started cluster's helpers read (its status page has more). */
export interface ClusterRows {
  workers: { workers: { pid: number; requests: number; serving: boolean; version: number; silentMs: number }[]; version: number }
}

/** A started cluster: its log, its listeners (config order), its admin, the primary's pid, its workers' pids at start. */
export interface Cluster<S extends ClusterRows> {
  cli: CliProcess
  listeners: string[]
  admin: string
  primary: number
  workers: number[]
  status(): Promise<S>
  converged(): Promise<boolean>
  /** Resolves once every worker has reported since it was called: each one's count holds every request before. */
  reported(): Promise<void>
  /** The pid of the worker that forwarded what `send` sent (the worker whose request count rose). */
  landed(send: () => Promise<unknown>): Promise<number>
}

/** `config` written to `file` and started with the real CLI (its process group killed at teardown), once it says so. */
export async function startCluster<S extends ClusterRows>(t: Tap, file: string, config: Config): Promise<Cluster<S>> {
  writeConfig(file, config)
  const cli = startCli(t, ['start', '-c', file])
  let exit = 'still running'
  cli.child.once('exit', (code, signal) => (exit = `exited (${signal ?? `code ${code}`})`))
  await until(() => cli.lines.some((l) => l['msg'] === 'vigil started'), `the ${basename(file)} cluster to start`).catch((err: Error) => {
    throw new Error(`${err.message}; the CLI ${exit}; its last lines: ${JSON.stringify(cli.lines.slice(-5))}`)
  })
  const started = cli.lines.find((l) => l['msg'] === 'vigil started') as { listeners: string[]; admin: string; workers: number[] }
  const admin = `http://${started.admin}`
  const status = async (): Promise<S> => JSON.parse((await get(`${admin}/status?format=json`)).body) as S
  return {
    cli,
    listeners: started.listeners,
    admin,
    primary: cli.child.pid as number,
    workers: started.workers,
    status,
    converged: async () => {
      const s = await status()
      return s.workers.workers.length === 2 && s.workers.workers.every((w) => w.serving && w.version === s.workers.version)
    },
    reported: async () => {
      const since = performance.now()
      await until(async () => {
        const asked = performance.now()
        return (await status()).workers.workers.every((x) => x.silentMs < asked - since)
      }, 'every worker to report')
    },
    landed: (send) => workerThatServed(status, send),
  }
}

/** Clients made by `make` until two are on two workers; `send` is each one's first request. */
export async function onTwoWorkers<C>(cluster: Cluster<ClusterRows>, make: () => C, send: (c: C) => Promise<unknown>): Promise<[C, C]> {
  // A report of earlier requests coming in after this would be taken for the first client's.
  await cluster.reported()
  const first = make()
  const pid = await cluster.landed(() => send(first))
  for (;;) {
    const c = make()
    if ((await cluster.landed(() => send(c))) !== pid) return [first, c]
  }
}
