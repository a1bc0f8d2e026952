// Telling a cluster's workers apart from outside: the status page counts each worker's requests.
import { until } from './config-file.js'

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
