// A cluster's primary (`workers: N`): one Vigil that owns the configuration, the update queue, the active checks
// and the health state machine, and serves no traffic; N worker processes (Node's cluster module) that accept
// and forward. Workers report their outcomes; the primary replays them through the same passive health a single
// process runs (so maxFails counts across workers and the cap is the group's), and streams the state it decides
// back (state-stream.ts). A worker that exits is replaced; one that stops answering is killed and replaced;
// every applied generation is handed to every worker, which applies it through the same prepare/commit.
import cluster, { type Worker } from 'node:cluster'
import { availableParallelism } from 'node:os'
import type { Logger } from 'pino'
import { Histogram } from 'prom-client'
import type { Config } from '../config/schema.js'
import type { Vigil } from '../index.js'
import type { Upstream } from '../upstream/upstream.js'
import { serverSpec } from '../config/diff.js'
import { Role, type PeerHealth } from '../health/ejection.js'
import { failureOf, type Failure } from '../health/outcome.js'
import type { RegistryJson } from '../admin/metrics.js'
import { StateStream, type Propagation } from './state-stream.js'
import { ClusterTraffic } from './traffic.js'
import { PortCheck } from './ports.js'
import { isMessage, SNAPSHOT_INTERVAL, TRIAL_GRANT, UNRESPONSIVE_AFTER, type Generation, type Outcomes, type ReportedFailure, type ToPrimary, type ToWorker } from './protocol.js'

/** How long a metrics scrape waits for a worker's answer before leaving it out. */
const METRICS_TIMEOUT = 2_000
/** Replacements of a worker that keeps exiting wait this long (ms): RESPAWN_DELAY, then after QUICK_RESPAWNS restarts RESPAWN_BACKOFF. */
const RESPAWN_DELAY = 100
const RESPAWN_BACKOFF = 2_000
const QUICK_RESPAWNS = 5

/** One worker as the status page shows it. */
export interface WorkerStatus {
  worker: number
  pid: number | undefined
  /** The primary's generation this worker serves, and the state version it applied last. */
  generation: number
  version: number
  serving: boolean
  /** Requests it forwarded (as of its last report). */
  requests: number
  /** Times this worker slot was started again (after an exit or when it stopped answering). */
  restarts: number
  /** Starts in a row that failed since this slot last served, and the last one's reason (while it keeps failing). */
  failedStarts: number
  startError: string | undefined
  /** ms since its last report; undefined while no process holds the slot (a replacement is due). */
  silentMs: number | undefined
}

export interface WorkersStatus {
  workers: WorkerStatus[]
  generation: number
  version: number
  /** From the primary's decision until every worker applied it, ms: the last and the slowest measured. */
  propagation: { measured: number; last: Propagation | undefined; slowest: Propagation | undefined }
}

interface Member {
  slot: number
  worker: Worker
  generation: number
  version: number
  serving: boolean
  heard: number
  listeners: string[]
  /** The generation it last failed to apply (it serves the one before and is sent the current one again); 0 none. */
  failed: number
  /** The generation its init carried: what it serves once it says so. */
  started: number
  /** It said it serves: an exit before that is a start that failed. */
  served: boolean
  /** Why its start failed, as it said (it exits next). */
  startError: string | undefined
  /** The servers whose trial request it sent and has not reported on yet: due again if it exits first. */
  trials: Set<PeerHealth>
}

/** One worker slot across the processes that held it: what the status page and the respawn backoff count. */
interface Slot {
  restarts: number
  failedStarts: number
  /** The reason of the last failed start, and the one said last (a loop is said once per reason). */
  startError: string | undefined
  said: string | undefined
}

/** `workers` as a number of processes: "auto" is one per core; undefined runs one process. */
export function workerCount(setting: Config['workers']): number | undefined {
  return setting === 'auto' ? availableParallelism() : setting
}

/**
 * The generation every worker serves: the file's settings, and each group's live servers beside them, as this
 * membership built them (an empty list too). Discovery runs here only (a worker opens no registry session and
 * resolves no name), and so does the fleet.
 */
function workerGeneration(vigil: Vigil, source: string): Generation {
  const c = vigil.config
  const upstreams: Config['upstreams'] = {}
  const servers: Generation['servers'] = []
  for (const [name, u] of Object.entries(c.upstreams)) {
    // Checks run here, once per server; a worker's check gates are the primary's.
    // A subset placed by the fleet goes as the file has it: each worker places it with the primary's consumer view
    // (sent beside the config), since the subsets are keyed by every consumer's id.
    const { active: _checks, ...settings } = u
    upstreams[name] = settings
    servers.push([name, (vigil.upstreams.get(name) as Upstream).config.servers.map(serverSpec)])
  }
  // The fleet's registration is the proxy's, held by the primary: a worker keeps the settings and starts no fleet.
  // The level the primary runs at (PUT /log may have set it) for a worker that starts or reloads.
  const log = { ...c.log, level: vigil.log.level as NonNullable<NonNullable<Config['log']>['level']> }
  const config = { ...c, upstreams, log, admin: undefined, workers: undefined, reload: { watch: false } }
  return { generation: vigil.generation, source, config, servers, consumer: vigil.fleet?.consumers.view }
}

export class Cluster {
  readonly log: Logger
  private readonly members = new Map<number, Member>()
  private readonly stream: StateStream
  private readonly traffic: ClusterTraffic
  private readonly ports = new PortCheck(() => [...this.members.values()].flatMap((m) => m.listeners))
  private readonly slots: Slot[]
  private readonly timers: NodeJS.Timeout[] = []
  private stopping: Promise<void> | undefined
  private starting: { resolve: () => void; reject: (err: Error) => void } | undefined
  private readonly metricWaits = new Map<number, (m: RegistryJson) => void>()
  private metricIds = 0
  private configDue = false
  private lastSource = 'start'
  /** The current generation as last built for the workers; the newest one a worker applied (or started with), whole. */
  private offered: Generation | undefined
  private applied: Generation | undefined
  private readonly propagation: Histogram

  constructor(
    readonly vigil: Vigil,
    readonly count: number,
  ) {
    this.log = vigil.log
    this.slots = Array.from({ length: count }, () => ({ restarts: 0, failedStarts: 0, startError: undefined, said: undefined }))
    const upstreams = (): ReturnType<() => Vigil['upstreams']> => vigil.upstreams
    this.traffic = new ClusterTraffic(upstreams)
    this.propagation = new Histogram({
      name: 'vigil_state_propagation_seconds',
      help: "time from the primary's health decision until every worker applied it",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [vigil.metrics.registry],
    })
    this.stream = new StateStream(
      upstreams,
      (d) => this.broadcast({ t: 'state', ...d }),
      (p) => {
        this.propagation.observe(p.ms / 1000)
        const r = (ms: number): number => Math.round(ms * 100) / 100
        this.log.debug({ version: p.version, ms: r(p.ms), sentMs: r(p.sent), receivedMs: r(p.received) }, 'state applied by every worker')
      },
      () => [...this.members.values()].filter((m) => m.serving).sort((a, b) => a.slot - b.slot).map((m) => m.worker.id),
    )
    // PUT /log sets the primary's level: every worker takes it, as one process would. A reload's level (set by its
    // swap, right after the commit) goes down with its generation instead, in the config sent next: a worker that
    // cannot apply that generation keeps the level of the one it serves.
    vigil.log.on('level-change', (level: string) => {
      if (!this.configDue) this.broadcast({ t: 'level', level })
    })
    vigil.metrics.workers = () => this.workerMetrics()
    vigil.workers = () => this.status()
    vigil.updates.subscribe({
      applied: (record) => {
        this.lastSource = record.source
        this.stream.watch()
        // After the swap (the config becomes current after the commit, in the same turn).
        if (this.configDue) return
        this.configDue = true
        setImmediate(() => this.sendConfig())
      },
    })
  }

  /** Start the primary's Vigil, then the workers; resolves once every worker serves. */
  async start(): Promise<this> {
    await this.vigil.start()
    this.stream.watch()
    const serving = new Promise<void>((resolve, reject) => (this.starting = { resolve, reject }))
    for (let slot = 0; slot < this.count; slot++) this.fork(slot)
    try {
      await serving
    } catch (err) {
      await this.stop(0)
      throw err
    }
    this.starting = undefined
    this.every(SNAPSHOT_INTERVAL, () => {
      this.broadcast({ t: 'snapshot', ...this.stream.snapshot() })
      this.retryConfigs()
    })
    this.every(UNRESPONSIVE_AFTER / 5, () => this.watchdog())
    this.every(TRIAL_GRANT, () => this.stream.regrant(performance.now()))
    const first = [...this.members.values()][0]
    this.log.info(
      {
        listeners: first?.listeners,
        admin: this.vigil.adminAddress === undefined ? undefined : `${this.vigil.adminAddress.address}:${this.vigil.adminAddress.port}`,
        upstreams: Object.fromEntries([...this.vigil.upstreams].map(([n, u]) => [n, u.peers.map((p) => p.address)])),
        workers: [...this.members.values()].map((m) => m.worker.process.pid),
      },
      'vigil started',
    )
    return this
  }

  reload(source: 'signal' | 'api' = 'signal'): Promise<unknown> {
    return this.vigil.reload(source)
  }

  /** Log rotation: every worker reopens its access log. */
  reopen(): void {
    this.vigil.access.reopen()
    this.broadcast({ t: 'reopen' })
  }

  /** Every worker drains within `grace` and exits; then the primary stops. */
  stop(grace?: number): Promise<void> {
    this.stopping ??= this.shutdown(grace ?? this.grace())
    return this.stopping
  }

  /** One row per slot: a slot whose worker exited (one that keeps failing to start, say) shows until it is back. */
  status(): WorkersStatus {
    const now = performance.now()
    const bySlot = new Map([...this.members.values()].map((m) => [m.slot, m]))
    const workers = this.slots.map(({ restarts, failedStarts, startError }, slot): WorkerStatus => {
      const m = bySlot.get(slot)
      const counts = { restarts, failedStarts, startError }
      if (m === undefined) return { worker: slot, pid: undefined, generation: 0, version: 0, serving: false, requests: 0, ...counts, silentMs: undefined }
      const requests = this.traffic.requestsOf(m.worker.id)
      return { worker: slot, pid: m.worker.process.pid, generation: m.generation, version: m.version, serving: m.serving, requests, ...counts, silentMs: Math.round(now - m.heard) }
    })
    const s = this.stream
    return { workers, generation: this.vigil.generation, version: s.version, propagation: { measured: s.measured, last: s.last, slowest: s.slowest } }
  }

  private grace(): number {
    return this.vigil.shutdownGrace
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms)
    t.unref()
    this.timers.push(t)
  }

  private fork(slot: number): void {
    const worker = cluster.fork()
    const m: Member = { slot, worker, generation: 0, version: 0, serving: false, heard: performance.now(), listeners: [], failed: 0, started: 0, served: false, startError: undefined, trials: new Set() }
    this.members.set(worker.id, m)
    worker.on('message', (msg: unknown) => {
      if (isMessage<ToPrimary>(msg)) this.onMessage(m, msg)
    })
    worker.on('exit', (code, signal) => this.exited(m, code, signal))
    // A channel that fails (the worker died mid-send) is the 'exit' handler's business.
    worker.on('error', (err) => this.log.debug({ worker: slot, err: err.message }, 'worker channel error'))
  }

  private send(m: Member, msg: ToWorker): void {
    if (!m.worker.isConnected()) return
    m.worker.send(msg, (err: Error | null) => {
      if (err !== null) this.log.debug({ worker: m.slot, err: err.message }, 'message to a worker not delivered')
    })
  }

  /** To every worker that serves; returns their ids. */
  private broadcast(msg: ToWorker): number[] {
    const ids: number[] = []
    for (const [id, m] of this.members) {
      if (!m.serving) continue
      this.send(m, msg)
      ids.push(id)
    }
    return ids
  }

  private onMessage(m: Member, msg: ToPrimary): void {
    m.heard = performance.now()
    switch (msg.t) {
      case 'hello': {
        const g = this.startWith(m)
        m.started = g.generation
        this.send(m, { t: 'init', snapshot: this.stream.snapshot(), ...g })
        return
      }
      case 'serving':
        m.serving = m.served = true
        m.generation = m.started
        this.workerApplied(m.started)
        // Started on the generation the others serve: the current one comes again every few seconds until it applies.
        if (m.started !== this.vigil.generation) m.failed = this.vigil.generation
        m.listeners = msg.listeners
        m.version = this.stream.version
        // It got its snapshot before serving; anything decided since then comes as a snapshot too.
        this.send(m, { t: 'snapshot', ...this.stream.snapshot() })
        if (this.starting !== undefined && [...this.members.values()].every((x) => x.serving)) this.starting.resolve()
        if (this.starting === undefined) this.backInService(m)
        return
      case 'failed':
        // At the cluster's start, vigil does not start; later, its exit is the failed start to count and say.
        m.startError = msg.error
        if (this.starting === undefined) return
        this.log.error({ worker: m.slot, err: msg.error }, 'worker could not start')
        this.starting.reject(new Error(msg.error))
        return
      case 'batch':
        m.generation = msg.generation
        m.version = msg.version
        for (const [upstream, address, ok, at] of msg.ok) this.judge({ upstream, address, runs: [ok], times: [at], rescued: 0, trial: 0, trialFailure: undefined, failure: undefined })
        this.traffic.report(m.worker.id, msg.traffic)
        this.latency(msg.latency)
        this.clearIdleSuspicions()
        return
      case 'outcome': {
        const h = this.passive(msg.upstream, msg.address)
        if (msg.trial !== 0 && h !== undefined) m.trials.delete(h)
        this.judge(msg)
        // The decision may have changed nothing: the worker still hears it (it may have skipped the server). After
        // the state the decision changed is sent (a microtask queued during judge()).
        queueMicrotask(() => {
          const s = this.stream.stateOf(msg.upstream, msg.address)
          if (s !== undefined) this.send(m, { t: 'verdict', servers: [s] })
        })
        return
      }
      case 'stall':
        this.stall(msg.upstream, msg.address, msg.suspect, msg.evidence)
        return
      case 'trial': {
        // The one trial is on its way: no other worker gets it (the primary's state is 'probing' for all) until its
        // outcome comes. One that went nowhere, or whose worker exits first, is due again, granted anew.
        const h = this.passive(msg.upstream, msg.address)
        if (h === undefined) return
        if (!msg.sent) {
          m.trials.delete(h)
          h.trialAbandoned()
        } else if (h.state === 'trial') {
          m.trials.add(h)
          h.dispatched(Date.now())
        }
        return
      }
      case 'ack':
        m.version = msg.version
        this.stream.applied(m.worker.id, msg.version, msg.received, msg.at)
        return
      case 'resync':
        this.send(m, { t: 'snapshot', ...this.stream.snapshot() })
        return
      case 'generation':
        m.listeners = msg.listeners
        if (msg.ok) {
          m.generation = msg.generation
          this.workerApplied(msg.generation)
          if (m.failed !== 0) this.log.info({ worker: m.slot, generation: msg.generation }, 'the worker applied the generation on a retry')
          m.failed = 0
          return
        }
        // Said once per generation; it is sent again with every snapshot until it applies (a port that frees up).
        if (m.failed !== msg.generation) {
          this.log.error({ worker: m.slot, generation: msg.generation, err: msg.error }, 'a worker could not apply the generation; it serves the one before, and is sent it again every few seconds')
        }
        m.failed = msg.generation
        return
      case 'metrics':
        this.metricWaits.get(msg.id)?.(msg.metrics)
        return
      case 'port':
        void this.ports.check(msg.address).then((error) => this.send(m, { t: 'port', id: msg.id, error }))
        return
    }
  }

  /**
   * A worker's outcomes through the group's passive health, in the order the detectors count them: a fail-open
   * success, the trial's outcome (the trial is taken here when a worker ran it), then the successes and failures as
   * they came.
   */
  private judge(o: Outcomes): void {
    const u = this.vigil.upstreams.get(o.upstream)
    const peer = u?.find(o.address)
    const h = peer?.passive
    if (u === undefined || peer === undefined || h === undefined) return
    const g = u.passive
    const now = Date.now()
    if (o.rescued > 0) g.judge(h, Role.LastResort, undefined, now)
    if (o.trial !== 0) {
      if (h.state === 'trial') h.dispatched(now)
      g.judge(h, Role.Trial, o.trial === 2 ? failure(o.trialFailure) : undefined, now)
    }
    // No vouching here: these successes may predate a suspicion. A worker that sees the server answer again
    // says so at once (its 'stall' report), as one process would clear it on that answer.
    const f = failure(o.failure)
    let fails = 0
    let oks = 0
    for (let i = 0; i < o.runs.length; i++) {
      const run = o.runs[i] as number
      const counted = i % 2 === 0 ? undefined : f
      const at = o.times[i] ?? now
      for (let n = 0; n < run; n++) g.judge(h, Role.Normal, counted, at)
      if (counted === undefined) oks += run
      else fails += run
    }
    // The fleet weighs its quorum against the proxy's own traffic, which is its workers': the last outcome reported.
    const ok = fails > 0 || o.trial === 2 ? false : oks > 0 || o.rescued > 0 || o.trial === 1 ? true : undefined
    if (ok !== undefined) this.vigil.fleet?.health.answered(peer, ok, now)
  }

  /** A worker's response times join the group's (every worker's): the p99 that changes goes down as the next version. */
  private latency(groups: readonly [string, number[]][]): void {
    if (groups.length === 0) return
    for (const [upstream, times] of groups) {
      const watch = this.vigil.upstreams.get(upstream)?.passive.stall
      if (watch !== undefined) for (const ms of times) watch.sample(ms)
    }
    this.stream.latencyChanged()
  }

  /**
   * A stall suspicion whose requests are held (re-dispatch off) lasts until the server answers or no request waits
   * on it any more, as in one process. The workers hold those requests, and each sees only its own, so they leave
   * the second to the primary (stall.ts): once every worker has reported since the suspicion with nothing in flight
   * there, nothing waits on it.
   */
  private clearIdleSuspicions(): void {
    for (const u of this.vigil.upstreams.values()) {
      if (u.passive.stall?.settings.redispatch !== false) continue
      for (const peer of u.peers) {
        const h = peer.passive
        if (h !== undefined && h.suspect && peer.inflight === 0 && this.traffic.allReportedSince(h.suspectedAt)) h.nothingWaits()
      }
    }
  }

  /** A live server's passive health. */
  private passive(upstream: string, address: string): PeerHealth | undefined {
    return this.vigil.upstreams.get(upstream)?.find(address)?.passive
  }

  /** A worker's stall watch suspects a server (or it answered again): the primary's cap decides for all. */
  private stall(upstream: string, address: string, suspect: boolean, evidence: Record<string, unknown> | undefined): void {
    const h = this.passive(upstream, address)
    if (h === undefined) return
    if (!suspect) h.answered(Date.now())
    else if (!h.suspect) h.stallVerdict(true, { waiting: Number(evidence?.['waiting'] ?? 0), threshold: Number(evidence?.['threshold'] ?? 0), p99: Number(evidence?.['p99'] ?? 0) })
  }

  private sendConfig(): void {
    this.configDue = false
    this.ports.retain(this.vigil.config.listeners.map((l) => l.address))
    this.broadcast(this.configMessage())
  }

  /** The current generation for a worker, with the consumer view its fleet-placed subsets are computed from. */
  private configMessage(): ToWorker {
    return { t: 'config', ...this.offer() }
  }

  private offer(): Generation {
    return (this.offered = workerGeneration(this.vigil, this.lastSource))
  }

  private workerApplied(generation: number): void {
    if (this.offered?.generation === generation) this.applied = this.offered
  }

  /**
   * What a new worker starts with: the current generation; but where its slot's last start failed, the newest
   * one a worker applied, whole (the last good state, as the serving workers keep it). A generation no worker can
   * apply (a listener on a port another process holds) would otherwise keep a slot empty: with `workers: 1`, the
   * whole proxy, where nginx's new worker inherits its master's sockets and serves. It is sent the current one
   * again until it applies, as a serving worker is.
   */
  private startWith(m: Member): Generation {
    const current = this.offer()
    const last = this.applied
    return (this.slots[m.slot] as Slot).failedStarts > 0 && last !== undefined && last.generation !== current.generation ? last : current
  }

  /** Every worker that failed to apply a generation, and serves an older one, is sent the current one again. */
  private retryConfigs(): void {
    const generation = this.vigil.generation
    for (const m of this.members.values()) {
      if (m.serving && m.failed !== 0 && m.generation !== generation) this.send(m, this.configMessage())
    }
  }

  /** A replacement serves: a slot that failed to start until now says it is back, and counts afresh. */
  private backInService(m: Member): void {
    const slot = this.slots[m.slot] as Slot
    const failedStarts = slot.failedStarts === 0 ? undefined : slot.failedStarts
    Object.assign(slot, { failedStarts: 0, startError: undefined, said: undefined })
    const behind = m.started === this.vigil.generation ? undefined : this.vigil.generation
    this.log.info({ worker: m.slot, pid: m.worker.process.pid, failedStarts, generation: m.started, behind }, 'worker serving')
  }

  /**
   * A replacement exited before it served (a listener its generation cannot bind, say): it is started again, as
   * nginx's master does, on the newest generation a worker applied (startWith). Said at each of the first starts
   * that fail in a row; at the QUICK_RESPAWNS-th the slot retries every RESPAWN_BACKOFF from then on (its restarts
   * are past QUICK_RESPAWNS too), which is said once, and again only when the reason changes; each try is a debug
   * line.
   */
  private startFailed(m: Member, slot: Slot, line: Record<string, unknown>): void {
    const error = m.startError ?? 'it exited before serving'
    slot.failedStarts++
    slot.startError = error
    const said = { ...line, failedStarts: slot.failedStarts, err: error }
    if (slot.failedStarts < QUICK_RESPAWNS) this.log.error(said, 'worker could not start; starting a new one')
    else if (slot.said === error) this.log.debug(said, 'worker could not start; starting a new one')
    else {
      slot.said = error
      this.log.error({ ...said, retryEveryMs: RESPAWN_BACKOFF }, 'worker keeps failing to start; starting a new one every few seconds until one serves')
    }
  }

  /** A worker that has not reported for UNRESPONSIVE_AFTER is killed (its exit starts a new one). */
  private watchdog(): void {
    const now = performance.now()
    for (const m of this.members.values()) {
      if (!m.serving || now - m.heard < UNRESPONSIVE_AFTER) continue
      this.log.warn({ worker: m.slot, pid: m.worker.process.pid, silentMs: Math.round(now - m.heard) }, 'worker stopped answering; killing it for a new one')
      m.serving = false
      m.worker.process.kill('SIGKILL')
    }
  }

  private exited(m: Member, code: number | null, signal: string | null): void {
    this.members.delete(m.worker.id)
    this.stream.left(m.worker.id)
    this.traffic.left(m.worker.id)
    // A trial it ran never reports: as in one process when its client is gone, another request may try.
    for (const h of m.trials) h.trialAbandoned()
    if (this.stopping !== undefined) return
    if (this.starting !== undefined && !m.serving) {
      this.starting.reject(new Error(`worker ${m.slot} exited before serving (${signal ?? `code ${code ?? '?'}`})`))
      return
    }
    const slot = this.slots[m.slot] as Slot
    const restarts = ++slot.restarts
    const line = { worker: m.slot, pid: m.worker.process.pid, code, signal, restarts }
    if (m.served) this.log.warn(line, 'worker exited; starting a new one')
    else this.startFailed(m, slot, line)
    const t = setTimeout(() => {
      if (this.stopping === undefined) this.fork(m.slot)
    }, restarts > QUICK_RESPAWNS ? RESPAWN_BACKOFF : RESPAWN_DELAY)
    t.unref()
  }

  private async workerMetrics(): Promise<RegistryJson[]> {
    const asks = [...this.members.values()]
      .filter((m) => m.serving)
      .map(
        (m) =>
          new Promise<RegistryJson | undefined>((resolve) => {
            const id = ++this.metricIds
            const timer = setTimeout(() => done(undefined), METRICS_TIMEOUT)
            const done = (r: RegistryJson | undefined): void => {
              clearTimeout(timer)
              this.metricWaits.delete(id)
              resolve(r)
            }
            this.metricWaits.set(id, done)
            this.send(m, { t: 'metrics', id })
          }),
      )
    return (await Promise.all(asks)).filter((r): r is RegistryJson => r !== undefined)
  }

  private async shutdown(grace: number): Promise<void> {
    for (const t of this.timers) clearInterval(t)
    const exits = [...this.members.values()].map((m) => new Promise<void>((resolve) => (m.worker.isDead() ? resolve() : m.worker.once('exit', () => resolve()))))
    if (exits.length > 0) {
      this.log.info({ workers: exits.length, grace }, 'stopping workers')
      for (const m of this.members.values()) this.send(m, { t: 'stop', grace })
      // A worker that outlives its grace period (and a second more to close) is killed.
      const kill = setTimeout(() => {
        for (const m of this.members.values()) m.worker.process.kill('SIGKILL')
      }, grace + 1_000)
      await Promise.all(exits)
      clearTimeout(kill)
    }
    await this.vigil.stop(0)
  }
}

/** The failure a worker reported, as the detectors count it. */
function failure(r: ReportedFailure | undefined): Failure | undefined {
  if (r === undefined) return undefined
  return failureOf(r.code) ?? { kind: r.kind, status: r.status, code: r.code, beforeSend: false }
}
