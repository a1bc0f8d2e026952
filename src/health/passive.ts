// Passive health of one upstream group: the outcome of every real request (reported by the monitor,
// monitor.ts) → failure accounting (one Detector per server, by mode: eject/) → the ejection state machine
// (ejection.ts) under the cap (cap.ts) → the single trial request → restore. Plus the stall watch (stall.ts).
// Every transition is one event on the Upstream (passive-events.ts).
import { EventEmitter } from 'node:events'
import type { Passive } from '../config/schema.js'
import { ms } from '../config/duration.js'
import type { Peer } from '../upstream/peer.js'
import type { Upstream } from '../upstream/upstream.js'
import type { GroupState } from '../upstream/group-state.js'
import { FailureSet, type Failure } from './outcome.js'
import type { Detector } from './eject/detector.js'
import type { PassiveHealthLink, RecheckLink } from './events.js'
import { NginxDetector } from './eject/nginx.js'
import { ConsecutiveDetector } from './eject/consecutive.js'
import { WindowDetector } from './eject/window.js'
import { RATE_BUCKETS, RateDetector } from './eject/rate.js'
import { OUTLIER_DEFAULTS, OutlierDetector, outlierVerdicts, type OutlierSample, type OutlierSettings } from './eject/outlier.js'
import { PeerHealth, Role, type PeerPassiveSnapshot } from './ejection.js'
import { StallWatch, type StallSettings, type Waiting } from './stall.js'
import { mayTakeOut } from './cap.js'
import { RECOVERY_DEFAULTS, type RecoverySettings } from './recovery.js'
import type { HealthEvent, HealthEventKind } from './passive-events.js'

export const PASSIVE_DEFAULTS = {
  mode: 'nginx',
  maxFails: 1,
  failTimeout: 10_000,
  // A gRPC call that ends UNAVAILABLE is what a 502/503 is to HTTP: the provider could not serve it.
  failOn: ['error', 'timeout', 'invalid_header', 'grpc_UNAVAILABLE'],
  maxEjectPercent: 50,
  /** Outside nginx mode, like Envoy's max_ejection_time. In nginx mode it defaults to ejectTime: no growth. */
  maxEjectTime: 300_000,
  failPercent: 50,
  minRequests: 10,
  stallFactor: 10,
  stallFloor: 200,
} as const

export interface PassiveSettings {
  mode: NonNullable<Passive['mode']>
  maxFails: number
  failTimeout: number
  ejectTime: number
  maxEjectTime: number
  maxEjectPercent: number
  /** The cap always lets one server of a group of two or more out, whatever maxEjectPercent rounds down to. */
  ejectAtLeastOne: boolean
  failPercent: number
  minRequests: number
  stall: StallSettings | undefined
  /** Recovery probes of passive ejections (recovery.ts); undefined when off. */
  recovery: RecoverySettings | undefined
  outlier: OutlierSettings
}

/** How long an ejection lasts before any growth: `ejectTime`, else `failTimeout` (nginx's one setting for both). */
export function ejectTimeOf(c: Pick<Passive, 'ejectTime' | 'failTimeout'> | undefined): number {
  return ms(c?.ejectTime ?? c?.failTimeout ?? PASSIVE_DEFAULTS.failTimeout)
}

function settings(c: Passive | undefined): PassiveSettings {
  const d = PASSIVE_DEFAULTS
  const mode = c?.mode ?? d.mode
  const failTimeout = ms(c?.failTimeout ?? d.failTimeout)
  const ejectTime = ejectTimeOf(c)
  const stall = c?.stall
  const probe = typeof c?.recoveryProbe === 'object' ? c.recoveryProbe : { enabled: c?.recoveryProbe ?? true }
  const r = RECOVERY_DEFAULTS
  return {
    mode,
    maxFails: c?.maxFails ?? d.maxFails,
    failTimeout,
    ejectTime,
    maxEjectTime: Math.max(ejectTime, ms(c?.maxEjectTime ?? (mode === 'nginx' ? ejectTime : d.maxEjectTime))),
    maxEjectPercent: c?.maxEjectPercent ?? d.maxEjectPercent,
    ejectAtLeastOne: c?.ejectAtLeastOne ?? false,
    failPercent: c?.failPercent ?? d.failPercent,
    minRequests: c?.minRequests ?? d.minRequests,
    stall:
      stall?.enabled === false
        ? undefined
        : { factor: stall?.factor ?? d.stallFactor, floor: ms(stall?.floor ?? d.stallFloor), redispatch: stall?.redispatch ?? true },
    recovery:
      probe.enabled === false
        ? undefined
        : { interval: ms(probe.interval ?? r.interval), maxInterval: Math.max(ms(probe.interval ?? r.interval), ms(probe.maxInterval ?? r.maxInterval)) },
    outlier: outlierSettings(c?.outlier),
  }
}

function outlierSettings(c: Passive['outlier']): OutlierSettings {
  const d = OUTLIER_DEFAULTS
  return {
    interval: ms(c?.interval ?? d.interval),
    requestVolume: c?.requestVolume ?? d.requestVolume,
    minimumHosts: c?.minimumHosts ?? d.minimumHosts,
    stdevFactor: c?.stdevFactor ?? d.stdevFactor,
    stdevFloor: c?.stdevFloor ?? d.stdevFloor,
    threshold: c?.threshold ?? d.threshold,
    successRate: c?.successRate ?? d.successRate,
  }
}

function rotate(e: EventEmitter): void {
  e.emit('rotate')
}

function sweep(g: PassiveHealth): void {
  g.sweepOutliers(Date.now())
}

/** Passive health of one upstream group. */
export class PassiveHealth {
  readonly settings: PassiveSettings
  readonly failOn: FailureSet
  /** Follows the group's peers: see sync(). */
  peers: readonly PeerHealth[]
  private readonly rotate: EventEmitter | undefined
  private readonly timers: NodeJS.Timeout[] = []
  readonly stall: StallWatch | undefined
  /** The active checker, when the group has checks: a failed request asks it to check the peer at once. */
  checker: RecheckLink | undefined = undefined

  /** `group`: the lasting state of the group whose `peers` these are (its events, its live generation). */
  constructor(
    private readonly group: GroupState,
    peers: readonly Peer[],
    config: Passive | undefined,
  ) {
    const s = (this.settings = settings(config))
    this.failOn = new FailureSet(config?.failOn ?? PASSIVE_DEFAULTS.failOn, true)
    if (s.mode === 'rate') {
      this.rotate = new EventEmitter().setMaxListeners(0)
      this.every(s.failTimeout / RATE_BUCKETS, rotate, this.rotate)
    }
    if (s.mode === 'outlier') this.every(s.outlier.interval, sweep, this)
    this.peers = peers.map((p) => this.join(p))
    this.stall = s.stall === undefined ? undefined : new StallWatch(s.stall, () => this.peers)
  }

  /** The live generation: its check, its timeouts, its snapshot (these passive settings may outlive the one that built them). */
  get upstream(): Upstream {
    return this.group.live
  }

  /** A peer starts clean here: in rotation as far as passive health goes (new settings start accounting afresh). */
  private join(p: Peer): PeerHealth {
    const h = new PeerHealth(this, p)
    h.detector = this.detector(h)
    p.passiveOk = true
    return (p.passive = h)
  }

  /**
   * A new generation with the same passive settings has these `peers` (a reload, an admin call, DNS;
   * src/upstream/membership.ts): kept peers keep their passive state, added ones start clean, removed ones stop
   * their timers (their in-flight requests still settle).
   */
  sync(peers: readonly Peer[]): void {
    const live = new Set(peers)
    for (const h of this.peers) if (!live.has(h.peer)) h.close()
    this.peers = peers.map((p) => (p.passive?.group === this ? p.passive : this.join(p)))
  }

  private every<T>(period: number, fn: (arg: T) => void, arg: T): void {
    const t = setInterval(fn, Math.max(1, Math.floor(period)), arg)
    t.unref()
    this.timers.push(t)
  }

  private detector(h: PeerHealth): Detector | undefined {
    const s = this.settings
    if (s.maxFails === 0) return undefined
    switch (s.mode) {
      case 'nginx':
        return new NginxDetector(s.maxFails, s.failTimeout)
      case 'consecutive':
        return new ConsecutiveDetector(s.maxFails)
      case 'window':
        return new WindowDetector(s.maxFails, s.failTimeout)
      case 'rate':
        return new RateDetector(h, { failPercent: s.failPercent, minRequests: s.minRequests, window: s.failTimeout, rotate: this.rotate as EventEmitter })
      case 'outlier':
        return new OutlierDetector(s.outlier.interval)
    }
  }

  /** Outlier mode, once per interval: judge the servers in rotation against each other; eject the outliers, worst first. */
  sweepOutliers(now: number): void {
    const judged: PeerHealth[] = []
    const samples: OutlierSample[] = []
    for (const h of this.peers) {
      const d = h.detector
      if (!(d instanceof OutlierDetector)) continue
      const sample = d.take()
      // Only servers in rotation all interval compare alike; backups serve only when the primaries cannot.
      if (h.state !== 'ok' || h.peer.backup) continue
      judged.push(h)
      samples.push(sample)
    }
    for (const v of outlierVerdicts(samples, this.settings.outlier)) {
      const h = judged[v.index] as PeerHealth
      ;(h.detector as OutlierDetector).verdict = v
      h.eject(v.reason, now)
    }
  }

  /** Hot path: a request is being sent to `peer`; sets the role the passive state gives it. */
  dispatched(peer: Peer, w: Waiting, now: number): void {
    const h = peer.passive as PeerHealth
    if (this.stall !== undefined) h.waits.link(w)
    w.role = h.dispatched(now)
  }

  /** Hot path: response headers arrived. */
  responded(w: Waiting, now: number): void {
    const list = w.waitingOn
    if (list === undefined) return
    list.unlink(w)
    ;(list.owner as PeerHealth).answered(now)
    // Linked under settings with stall detection, answered under new ones (a reload in between) that may have none.
    this.stall?.sample(now - w.started)
  }

  /** Hot path: the attempt is over. `failure` undefined is a success; `conclusive` false means it says nothing. */
  settled(peer: Peer, w: Waiting, failure: Failure | undefined, conclusive: boolean, now: number): void {
    w.waitingOn?.unlink(w)
    const h = peer.passive as PeerHealth
    if (!conclusive) {
      if (w.role === Role.Trial) judging.abandoned(h)
      return
    }
    const counted = failure !== undefined && this.failOn.has(failure) ? failure : undefined
    judging.outcome(this, h, w.role, counted, now)
  }

  /**
   * One conclusive outcome (`counted`: the failure as failOn counts it, undefined for a success) through the state
   * machine, and a failure asks the checks for a re-check. A cluster's primary replays its workers' reports here.
   */
  judge(h: PeerHealth, role: Role, counted: Failure | undefined, now: number): void {
    h.record(role, counted, now)
    if (counted !== undefined) this.checker?.recheck(h.peer)
  }

  /** Evidence from elsewhere that the peer answers (an active check passed): it counts as a response. */
  vouch(peer: Peer, now: number): void {
    ;(peer.passive as PeerHealth).answered(now)
  }

  /** The cap (cap.ts): may passive evidence take `h` out now? */
  mayTakeOut(h: PeerHealth): boolean {
    return mayTakeOut(h, this.peers, this.settings.maxEjectPercent, this.settings.ejectAtLeastOne)
  }

  emit(h: PeerHealth | undefined, kind: HealthEventKind, reason: string, extra: Partial<HealthEvent> = {}): void {
    const event: HealthEvent = { kind, upstream: this.group.name, peer: h?.peer.address, reason, ...extra }
    this.group.emit('health', event)
  }

  snapshot(): PeerPassiveSnapshot[] {
    return this.peers.map((h) => h.snapshot())
  }

  close(): void {
    for (const t of this.timers) clearInterval(t)
    this.stall?.close()
    for (const h of this.peers) h.close()
  }
}

/**
 * Where a process's conclusive outcomes go: judged at once, here (one process, or a cluster's primary), or, in a
 * cluster worker, counted and reported to the primary that judges them (src/workers/outcomes.ts).
 */
export interface OutcomeSink {
  outcome(group: PassiveHealth, h: PeerHealth, role: Role, counted: Failure | undefined, now: number): void
  /** The trial request's outcome will never come (cancelled, client gone): another request may try. */
  abandoned(h: PeerHealth): void
}

const JUDGE_HERE: OutcomeSink = {
  outcome: (group, h, role, counted, now) => group.judge(h, role, counted, now),
  abandoned: (h) => h.trialAbandoned(),
}
let judging: OutcomeSink = JUDGE_HERE

/** A cluster worker sends its outcomes to the primary (once, at its start): a process has one role. */
export function reportOutcomesTo(sink: OutcomeSink): void {
  judging = sink
}

/**
 * Passive health as the active checker and the status page see it: every group's peers carry their PeerHealth,
 * so one stateless link serves all groups, and the groups a reload adds.
 */
export const passiveLink: PassiveHealthLink = {
  snapshot: (peer) => peer.passive?.snapshot(),
  ejection: (peer) => peer.passive?.ejection(),
  restore: (peer, evidence) => peer.passive?.restore(Date.now(), 'active check passed', evidence),
  vouch: (peer) => peer.passive?.group.vouch(peer, Date.now()),
}
