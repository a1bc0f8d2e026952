// A cluster worker: the same Vigil as one process, in its worker role (src/index.ts: no admin, no checks). It
// takes its config and health state from the primary, forwards, and reports its outcomes (outcomes.ts) and its
// stall suspicions. It stops like one process: on the primary's word, on SIGTERM/SIGINT (a signal to the whole
// process group), or when the primary is gone.
import cluster from 'node:cluster'
import { Vigil } from '../index.js'
import { reportOutcomesTo } from '../health/passive.js'
import { leaveStallTrialsToAnotherProcess } from '../health/ejection.js'
import type { Config } from '../config/schema.js'
import type { ConsumerView } from '../fleet/consumers.js'
import type { BuiltServers } from '../upstream/membership.js'
import { causeText, StartError } from '../start-error.js'
import { OutcomeReporter } from './outcomes.js'
import { Replica } from './replica.js'
import { isMessage, wallNow, type Snapshot, type ToPrimary, type ToWorker } from './protocol.js'

function send(m: ToPrimary): void {
  if (process.connected) process.send?.(m)
}

const addresses = (v: Vigil): string[] => v.listenerAddresses.map((a) => `${a.address}:${a.port}`)

/** Runs until the worker stopped; resolves to its exit code. */
export function runWorker(): Promise<number> {
  return new Promise((resolve) => {
    let vigil: Vigil | undefined
    let replica: Replica | undefined
    let generation = 0
    /** The primary's place in its fleet: what the fleet-placed subsets of this worker are computed from. */
    let consumer: ConsumerView | undefined
    /** Each group's servers as the primary built them for the generation this worker applies. */
    let servers: BuiltServers = new Map()
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
          consumer = m.consumer
          servers = new Map(m.servers)
          void start(m.config, m.generation, m.snapshot)
          return
        case 'config':
          if (vigil === undefined) return
          const moved = m.consumer?.ids.join('\n') !== consumer?.ids.join('\n')
          consumer = m.consumer
          const v = vigil
          // The servers go with the config they were built for: in the queue, right before it.
          void v.reloader.enqueue(() => (servers = new Map(m.servers)))
          void v.reloader.replace(m.config, m.source).then(async (r) => {
            // A consumer joined or left the fleet: the same recomputation as on the primary.
            if (moved) await v.reloader.enqueue(() => v.membership.consumersChanged())
            if (r.ok) generation = m.generation
            send({ t: 'generation', generation: m.generation, ok: r.ok, error: r.error, listeners: vigil === undefined ? [] : addresses(vigil) })
          })
          return
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
          if (vigil !== undefined) vigil.log.level = m.level
          return
      }
    })

    async function start(config: Config, gen: number, snapshot: Snapshot): Promise<void> {
      if (vigil !== undefined) return
      try {
        const v = (vigil = new Vigil(config, { cluster: 'worker', consumer: () => consumer, servers: () => servers }))
        const r = (replica = new Replica(() => v.upstreams, cluster.worker?.id ?? 0))
        generation = gen
        r.snapshot(snapshot)
        const out = (reporter = new OutcomeReporter(() => v.upstreams, send, () => ({ generation, version: r.version })))
        reportOutcomesTo(out)
        // Stall trials go from worker 0 alone: one at a time for the proxy, as in one process.
        if (process.env['VIGIL_WORKER'] !== '0') leaveStallTrialsToAnotherProcess()
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
