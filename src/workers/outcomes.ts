// A cluster worker's side of passive health: its conclusive outcomes are counted in one slot per server (made
// once; a success is a count bumped without allocating, a failure extends the slot's runs) and reported to the
// primary, which judges them with the one state machine (health/ejection.ts). Successes go in the batch every
// BATCH_INTERVAL; a failure (it may eject under maxFails), a trial's outcome and a fail-open success go at once, at
// most one report per server per URGENT_INTERVAL (the ones in between are coalesced into it: successes and failures
// in the order they came, as one process counts them, each run with when it came, the time the primary judges it
// at rather than its arrival). A refused connection also skips the server here at once, within the cap, until the
// primary's verdict arrives. The batch also carries each group's response times since the last one: the primary's
// stall watch takes the group's p99 from every worker's (stall.ts).
import type { Upstream } from '../upstream/upstream.js'
import type { Failure } from '../health/outcome.js'
import { Role, type PeerHealth } from '../health/ejection.js'
import type { OutcomeSink, PassiveHealth } from '../health/passive.js'
import { BATCH_INTERVAL, URGENT_INTERVAL, type Outcomes, type ReportedFailure, type ToPrimary, type Traffic } from './protocol.js'

/** One server's outcomes not reported yet. */
export class PendingOutcomes {
  /** Successes not in `runs` yet (since the last failure or report); before them, the runs not reported yet (Outcomes). */
  ok = 0
  runs: number[] = []
  /** When the last of `ok` came, and the last outcome of each run (Outcomes: the times they are judged at). */
  okAt = 0
  times: number[] = []
  rescued = 0
  trial: 0 | 1 | 2 = 0
  trialFailure: ReportedFailure | undefined = undefined
  failure: ReportedFailure | undefined = undefined
  /** performance.now() of the last urgent report, and its timer while the next one waits its turn. */
  lastSent = -Infinity
  timer: NodeJS.Timeout | undefined = undefined

  constructor(
    readonly upstream: string,
    readonly address: string,
  ) {}

  get urgent(): boolean {
    return this.runs.length !== 0 || this.trial !== 0 || this.rescued !== 0
  }
}

const reported = (f: Failure): ReportedFailure => ({ kind: f.kind, status: f.status, code: f.code })

function sendLater(r: OutcomeReporter, p: PendingOutcomes): void {
  p.timer = undefined
  r.sendUrgent(p)
}

function flush(r: OutcomeReporter): void {
  r.flush()
}

export class OutcomeReporter implements OutcomeSink {
  private timer: NodeJS.Timeout | undefined = undefined

  constructor(
    private readonly upstreams: () => ReadonlyMap<string, Upstream>,
    private readonly send: (m: ToPrimary) => void,
    /** The primary's generation and state version this worker serves, reported with every batch. */
    private readonly serving: () => { generation: number; version: number },
  ) {}

  start(): void {
    this.adoptAll()
    this.timer = setInterval(flush, BATCH_INTERVAL, this)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.flush()
  }

  /** Every server of the live groups gets its slot (at start and after each generation), so the hot path makes none. */
  adoptAll(): void {
    for (const u of this.upstreams().values()) for (const p of u.peers) if (p.passive !== undefined) this.slot(p.passive)
  }

  /** Hot path: one conclusive outcome (`counted` undefined for a success). */
  outcome(group: PassiveHealth, h: PeerHealth, role: Role, counted: Failure | undefined, now: number): void {
    const p = this.slot(h)
    if (counted === undefined) {
      if (role === Role.Normal) {
        p.ok++
        p.okAt = now
        return
      }
      if (role === Role.Trial) p.trial = 1
      else p.rescued++
    } else if (role === Role.Trial) {
      p.trial = 2
      p.trialFailure = reported(counted)
    } else {
      // A failure right after failures adds to their run (`runs` ends with one), else starts one after the successes.
      const runs = p.runs
      const last = runs.length - 1
      if (p.ok === 0 && last > 0) {
        runs[last] = (runs[last] as number) + 1
        p.times[last] = now
      } else {
        runs.push(p.ok, 1)
        p.times.push(p.okAt, now)
      }
      p.ok = 0
      p.failure = reported(counted)
      // Own evidence: a refused connection says the server is gone; skip it here now, within the cap.
      if (counted.code === 'connect_refused' && h.state === 'ok' && group.mayTakeOut(h)) h.mirror('ejected', h.suspect)
    }
    this.urgent(p)
  }

  /** The trial went nowhere: the primary grants it again (maybe to another worker); until then it is ejected here. */
  abandoned(h: PeerHealth): void {
    h.mirror('ejected', h.suspect)
    this.send({ t: 'trial', upstream: h.group.upstream.name, address: h.peer.address, sent: false })
  }

  private slot(h: PeerHealth): PendingOutcomes {
    return (h.unreported ??= new PendingOutcomes(h.group.upstream.name, h.peer.address))
  }

  private urgent(p: PendingOutcomes): void {
    if (p.timer !== undefined) return
    const wait = p.lastSent + URGENT_INTERVAL - performance.now()
    if (wait <= 0) this.sendUrgent(p)
    else p.timer = setTimeout(sendLater, wait, this, p)
  }

  /** Every outcome not reported yet, the successes since the last failure too (they come after it). */
  sendUrgent(p: PendingOutcomes): void {
    if (!p.urgent) return
    if (p.ok !== 0) {
      p.runs.push(p.ok)
      p.times.push(p.okAt)
    }
    const m: Outcomes = { upstream: p.upstream, address: p.address, runs: p.runs, times: p.times, rescued: p.rescued, trial: p.trial, trialFailure: p.trialFailure, failure: p.failure }
    p.runs = []
    p.times = []
    p.ok = p.rescued = p.trial = 0
    p.trialFailure = p.failure = undefined
    p.lastSent = performance.now()
    this.send({ t: 'outcome', ...m })
  }

  /** The batch: successes, every server's live numbers and the groups' response times; also the worker's heartbeat. */
  flush(): void {
    const ok: [string, string, number, number][] = []
    const traffic: Traffic[] = []
    const responseTimes: [string, number[]][] = []
    for (const u of this.upstreams().values()) {
      const times = u.passive.stall?.taken()
      if (times !== undefined && times.length > 0) responseTimes.push([u.name, times])
      for (const peer of u.peers) {
        const p = peer.passive?.unreported
        // Successes after failures not reported yet go with them (a report is due), after them.
        if (p !== undefined && p.ok !== 0 && p.runs.length === 0) {
          ok.push([u.name, peer.address, p.ok, p.okAt])
          p.ok = 0
        }
        const latency = peer.stats.count === 0 ? -1 : peer.latency
        const grpc = peer.protocol === 'http1' ? [] : Array.from(peer.stats.grpcCodes)
        traffic.push([u.name, peer.address, peer.requests, peer.failures, peer.inflight, peer.waiting, peer.oldestWait, peer.poolTimeouts, peer.stuck, latency, peer.lastAnswered, peer.streams, peer.goaways, grpc])
      }
    }
    this.send({ t: 'batch', ...this.serving(), ok, traffic, latency: responseTimes })
  }
}
