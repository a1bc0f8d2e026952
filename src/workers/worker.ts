// A cluster worker: the same Vigil as one process, in its worker role (src/index.ts: no admin, no checks). It
// takes its config and health state from the primary, forwards, and reports its outcomes (outcomes.ts) and its
// stall suspicions. It stops like one process: on the primary's word, on SIGTERM/SIGINT (a signal to the whole
// process group), or when the primary is gone.
import cluster from 'node:cluster'
import { Vigil } from '../index.js'
import { reportOutcomesTo } from '../health/passive.js'
import { leaveClearingSuspicionsToPrimary } from '../health/stall.js'
import type { Config } from '../config/schema.js'
import type { ConsumerView } from '../fleet/consumers.js'
import type { BuiltServers } from '../upstream/membership.js'
import { causeText, StartError } from '../start-error.js'
import { OutcomeReporter } from './outcomes.js'
import { Replica } from './replica.js'
import { isMessage, wallNow, type Generation, type Snapshot, type ToPrimary, type ToWorker } from './protocol.js'

function send(m: ToPrimary): void {
  if (process.connected) process.send?.(m)
}

const addresses = (v: Vigil): string[] => v.listenerAddresses.map((a) => `${a.address}:${a.port}`)

/** Answers to this worker's questions about fixed listener ports (src/workers/ports.ts), by id. */
const portAnswers = new Map<number, (error: string | undefined) => void>()
let portQuestions = 0

/** Resolves when the primary found `address` free (or the cluster's own); rejects with its errno, as listen() would. */
function portFree(address: string): Promise<void> {
  const id = ++portQuestions
  return new Promise((resolve, reject) => {
    portAnswers.set(id, (error) => {
      portAnswers.delete(id)
      if (error === undefined) return resolve()
      reject(Object.assign(new Error(`listen ${error}: ${address} (tried by the primary)`), { code: error, syscall: 'listen' }))
    })
    send({ t: 'port', id, address })
  })
}

/** What a worker takes from one of its primary's generations beside the config (src/workers/protocol.ts). */
interface Held {
  generation: number
  /** Each group's servers as the primary's membership built them. */
  servers: BuiltServers
  /** The primary's place in its fleet: what the fleet-placed subsets are computed from. */
  consumer: ConsumerView | undefined
}

const hold = (g: Generation): Held => ({ generation: g.generation, servers: new Map(g.servers), consumer: g.consumer })

/** Runs until the worker stopped; resolves to its exit code. */
export function runWorker(): Promise<number> {
  return new Promise((resolve) => {
    let vigil: Vigil | undefined
    let replica: Replica | undefined
    /**
     * The generation this worker serves: the last it applied, whole (its config is the live one). A generation it
     * applies is `applying` only while its own prepare and commit run in the update queue, the only readers of its
     * servers and consumer view: one that fails leaves nothing of itself behind, and the worker serves the one
     * before, all of it, until the primary's next send of it applies.
     */
    let serving: Held = { generation: 0, servers: new Map(), consumer: undefined }
    let applying: Held | undefined
    const held = (): Held => applying ?? serving
    /**
     * A PUT /log level read after the last config message: the primary took it after sending that generation, whose
     * commit here sets the level the generation was sent with, so it is set again once that commit is done.
     */
    let laterLevel: string | undefined
    let reporter: OutcomeReporter | undefined
    let stopping = false
    const stop = (grace?: number): void => {
      if (stopping) return
      stopping = true
      reporter?.stop()
      if (vigil === undefined) return resolve(0)
      vigil.stop(grace).then(
        () => resolve(0),
        () => resolve(1),
      )
    }
    process.on('SIGTERM', () => stop())
    process.on('SIGINT', () => stop())
    // The primary reloads (a SIGHUP to the process group reaches every worker too) and reopens the logs.
    process.on('SIGHUP', () => undefined)
    process.on('SIGUSR1', () => vigil?.access.reopen())
    process.on('disconnect', () => stop())
    process.on('message', (m: unknown) => {
      if (!isMessage<ToWorker>(m)) return
      const received = wallNow()
      switch (m.t) {
        case 'init':
          serving = hold(m)
          void start(m.config, m.snapshot)
          return
        case 'config': {
          if (vigil === undefined) return
          const v = vigil
          const next = hold(m)
          laterLevel = undefined
          // Three steps of the one queue, so no other generation's prepare runs in between. The commit places the
          // fleet's subsets with `next`'s consumer view, as the primary did (a consumer joined or left).
          void v.reloader.enqueue(() => (applying = next))
          const applied = v.reloader.replace(m.config, m.source)
          void v.reloader.enqueue(async () => {
            const r = await applied
            applying = undefined
            if (r.ok) serving = next
            if (r.ok && laterLevel !== undefined) v.log.level = laterLevel
            send({ t: 'generation', generation: m.generation, ok: r.ok, error: r.error, listeners: addresses(v) })
          })
          return
        }
        case 'state':
          if (replica === undefined) return
          if (replica.change(m)) send({ t: 'ack', version: m.version, received, at: wallNow() })
          else send({ t: 'resync' })
          return
        case 'snapshot':
          if (replica === undefined) return
          replica.snapshot(m)
          send({ t: 'ack', version: m.version, received, at: wallNow() })
          return
        case 'verdict':
          replica?.verdict(m.servers)
          return
        case 'metrics':
          if (vigil !== undefined) void vigil.metrics.registry.getMetricsAsJSON().then((metrics) => send({ t: 'metrics', id: m.id, metrics }))
          return
        case 'stop':
          stop(m.grace)
          return
        case 'reopen':
          vigil?.access.reopen()
          return
        case 'level':
          laterLevel = m.level
          if (vigil !== undefined) vigil.log.level = m.level
          return
        case 'port':
          portAnswers.get(m.id)?.(m.error)
          return
      }
    })

    async function start(config: Config, snapshot: Snapshot): Promise<void> {
      if (vigil !== undefined) return
      try {
        const v = (vigil = new Vigil(config, { cluster: 'worker', consumer: () => held().consumer, servers: () => held().servers, portFree }))
        const r = (replica = new Replica(() => v.upstreams, cluster.worker?.id ?? 0))
        r.snapshot(snapshot)
        const out = (reporter = new OutcomeReporter(() => v.upstreams, send, () => ({ generation: serving.generation, version: r.version })))
        reportOutcomesTo(out)
        leaveClearingSuspicionsToPrimary()
        v.updates.subscribe({
          applied: () => {
            r.reapply()
            out.adoptAll()
          },
        })
        // This worker's own stall evidence goes to the primary, whose cap decides for every worker.
        // And the trial it was granted is on its way: the primary holds the server in its trial for every worker.
        v.events.on('health', (e) => {
          if (e.source !== 'passive') return
          if (e.event === 'trial') send({ t: 'trial', upstream: e.upstream, address: e.server, sent: true })
          else if (e.event === 'suspect' || e.event === 'cleared') send({ t: 'stall', upstream: e.upstream, address: e.server, suspect: e.event === 'suspect', evidence: e.evidence })
        })
        await v.start()
        out.start()
        send({ t: 'serving', listeners: addresses(v) })
      } catch (err) {
        send({ t: 'failed', error: err instanceof StartError ? err.message : causeText(err) })
        vigil = undefined
        stopping = true
        resolve(1)
      }
    }

    send({ t: 'hello' })
  })
}
