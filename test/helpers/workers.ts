// Telling a cluster's workers apart from outside: the status page counts each worker's requests. The stall
// tests' cluster: two workers in front of one round-robin group. Starting a cluster with the real CLI (and with
// its status page at hand, clients placed on both of its workers), and providers that count what they answered.
import { Agent } from 'undici'
import type { Config, Upstream } from '../../src/config/schema.js'
import { until, writeConfig } from './config-file.js'
import { startCli, type CliProcess } from './cli.js'
import { get, httpServer } from './index.js'

type Tap = Parameters<typeof startCli>[0]

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

/** A cluster started by the real CLI (`start -c file`), as its 'vigil started' line tells it. */
export interface StartedCluster {
  cli: CliProcess
  /** The listeners' bound addresses, and the admin base URL. */
  listeners: string[]
  admin: string
  /** The primary's pid, and its workers'. */
  primary: number
  workers: number[]
}

/** Start the CLI on a cluster config `file` and wait until it says it started; a failed start names its last lines. */
export async function startClusterCli(t: Tap, file: string): Promise<StartedCluster> {
  const cli = startCli(t, ['start', '-c', file])
  await until(() => cli.lines.some((l) => l['msg'] === 'vigil started'), 'the cluster to start').catch((err: Error) => {
    throw new Error(`${err.message}; its last lines: ${JSON.stringify(cli.lines.slice(-5))}`)
  })
  const started = cli.lines.find((l) => l['msg'] === 'vigil started') as { listeners: string[]; admin: string; workers: number[] }
  return { cli, listeners: started.listeners, admin: `http://${started.admin}`, primary: cli.child.pid as number, workers: started.workers }
}

/** The per-worker rows a started cluster's helpers read (its status page has more). */
export interface ClusterRows {
  workers: { workers: { pid: number; requests: number; serving: boolean; version: number; silentMs: number }[]; version: number }
}

/** A started cluster with its status page (`S`: the rows the test reads) and what the tests ask of it. */
export interface Cluster<S extends ClusterRows> extends StartedCluster {
  status(): Promise<S>
  converged(): Promise<boolean>
  /** Resolves once every worker has reported since it was called: each one's count holds every request before. */
  reported(): Promise<void>
  /** The pid of the worker that forwarded what `send` sent (the worker whose request count rose). */
  landed(send: () => Promise<unknown>): Promise<number>
}

/** `config` written to `file` and started with the real CLI (its process group killed at teardown). */
export async function startCluster<S extends ClusterRows>(t: Tap, file: string, config: Config): Promise<Cluster<S>> {
  writeConfig(file, config)
  const started = await startClusterCli(t, file)
  const status = async (): Promise<S> => JSON.parse((await get(`${started.admin}/status?format=json`)).body) as S
  return {
    ...started,
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

/** Loopback providers that answer 200 with their name, and count every request they answered in `served`. */
export function countingProviders(t: Tap): { served: Map<string, number>; named: (name: string) => Promise<string> } {
  const served = new Map<string, number>()
  const named = async (name: string): Promise<string> => {
    const { address } = await httpServer(t, (_req, res) => {
      served.set(name, (served.get(name) ?? 0) + 1)
      res.writeHead(200).end(name)
    })
    return address
  }
  return { served, named }
}

/**
 * A maker of clients of one keep-alive connection each (a connection stays on the worker the cluster handed it
 * to), all destroyed at teardown.
 */
export function connectionMaker(t: Tap): () => Agent {
  const agents: Agent[] = []
  t.teardown(() => Promise.all(agents.map((a) => a.destroy())))
  return () => {
    const a = new Agent({ connections: 1, keepAliveTimeout: 60_000 })
    agents.push(a)
    return a
  }
}
