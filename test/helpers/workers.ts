// Telling a cluster's workers apart from outside: the status page counts each worker's requests. And the stall
// tests' cluster: two workers in front of one round-robin group.
import type { Config, Upstream } from '../../src/config/schema.js'
import { until } from './config-file.js'

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
