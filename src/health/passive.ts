// Passive health: the outcome of every real request → failure accounting (one Detector per peer, by mode)
// → ejection (capped, growing, jittered) → the single trial request → restore. Plus stall suspicion: a peer
// whose oldest waiting request is far older than the group usually takes gets no new requests meanwhile.
// Every transition is one HealthEvent emitted on the Upstream ('health'); logs, metrics and the status page listen.
import { EventEmitter } from 'node:events'
import type { Passive } from '../config/schema.js'
import { ms } from '../config/duration.js'
import type { Peer } from '../upstream/peer.js'
import type { Upstream } from '../upstream/upstream.js'
import { FailureSet, failureClass, type Failure } from './outcome.js'
import type { Detector, Evidence } from './eject/detector.js'
import type { Ejection, HealthEvents, PassiveHealthLink, RecheckLink } from './events.js'
import { NginxDetector } from './eject/nginx.js'
import { ConsecutiveDetector } from './eject/consecutive.js'
import { WindowDetector } from './eject/window.js'
import { RATE_BUCKETS, RateDetector, type BreakerHost } from './eject/rate.js'

export const PASSIVE_DEFAULTS = {
  mode: 'nginx',
  maxFails: 1,
  failTimeout: 10_000,
  failOn: ['error', 'timeout', 'invalid_header'],
  maxEjectPercent: 50,
  /** Outside nginx mode, like Envoy's max_ejection_time. In nginx mode it defaults to ejectTime: no growth. */
  maxEjectTime: 300_000,
  failPercent: 50,
  minRequests: 10,
  failOpen: true,
  stallFactor: 10,
  stallFloor: 200,
} as const

/** Ejections that grow are stretched by up to this share, so consumers do not come back in lockstep. */
export const EJECT_JITTER = 0.1
/** How often waiting requests are inspected for stalls. */
const STALL_TICK = 100
/** Response times kept for the group's p99. */
const LATENCY_SAMPLES = 512

export type PassiveState = 'ok' | 'ejected' | 'trial' | 'probing'

/** The named reason of an ejection, by the mode that decided it (the label of vigil_ejections_total). */
export const EJECT_REASONS = {
  nginx: 'max_fails',
  consecutive: 'consecutive_failures',
  window: 'failures_in_window',
  rate: 'failure_rate',
} as const
/** The single trial request after an ejection failed: ejected again. */
export const TRIAL_FAILED = 'trial_failed'

export type HealthEventKind = 'ejected' | 'trial' | 'restored' | 'capped' | 'suspect' | 'cleared' | 'no_eligible' | 'eligible'

export interface HealthEvent {
  kind: HealthEventKind
  upstream: string
  /** The peer's address; undefined for group events (no_eligible, eligible). */
  peer: string | undefined
  reason: string
  evidence?: Evidence | StallEvidence | Record<string, unknown>
  /** For `ejected` and `capped`: the code of the last failure counted (`connect_refused`, `http_503`...). */
  failure?: string
  /** For `ejected`: how long, ms; and the ejection-time multiplier (consecutive ejections, decayed while healthy). */
  duration?: number
  multiplier?: number
}

export interface StallEvidence {
  /** Age of the oldest request still waiting for response headers, ms. */
  waiting: number
  threshold: number
  p99: number
}

export interface PeerPassiveSnapshot {
  address: string
  state: PassiveState
  suspect: boolean
  /** Epoch ms when the current ejection ends (trial time), or undefined. */
  ejectedUntil: number | undefined
  /** The named reason and the failure code of the current ejection (also while its trial is due or running). */
  ejectionReason: string | undefined
  ejectionFailure: string | undefined
  ejections: number
  /** Consecutive ejections not yet decayed: the current ejection-time multiplier. */
  multiplier: number
  trials: number
  capped: number
  stalls: number
}

/** How a request was let through to its peer, decided at dispatch. */
export enum Role {
  Normal = 0,
  /** The one trial request after an ejection. */
  Trial = 1,
  /** Sent to a non-eligible peer because nothing was eligible (fail open). */
  LastResort = 2,
}

/** A request waiting for response headers; Attempt implements it (an intrusive list: no allocation). */
export interface Waiting {
  readonly started: number
  role: Role
  prevWaiting: Waiting | undefined
  nextWaiting: Waiting | undefined
  waitingOn: PeerHealth | undefined
}

interface Settings {
  mode: NonNullable<Passive['mode']>
  maxFails: number
  failTimeout: number
  ejectTime: number
  maxEjectTime: number
  maxEjectPercent: number
  failPercent: number
  minRequests: number
  failOpen: boolean
  stall: { factor: number; floor: number } | undefined
}

/** How long an ejection lasts before any growth: `ejectTime`, else `failTimeout` (nginx's one setting for both). */
export function ejectTimeOf(c: Pick<Passive, 'ejectTime' | 'failTimeout'> | undefined): number {
  return ms(c?.ejectTime ?? c?.failTimeout ?? PASSIVE_DEFAULTS.failTimeout)
}

function settings(c: Passive | undefined): Settings {
  const d = PASSIVE_DEFAULTS
  const mode = c?.mode ?? d.mode
  const failTimeout = ms(c?.failTimeout ?? d.failTimeout)
  const ejectTime = ejectTimeOf(c)
  const stall = c?.stall
  return {
    mode,
    maxFails: c?.maxFails ?? d.maxFails,
    failTimeout,
    ejectTime,
    maxEjectTime: Math.max(ejectTime, ms(c?.maxEjectTime ?? (mode === 'nginx' ? ejectTime : d.maxEjectTime))),
    maxEjectPercent: c?.maxEjectPercent ?? d.maxEjectPercent,
    failPercent: c?.failPercent ?? d.failPercent,
    minRequests: c?.minRequests ?? d.minRequests,
    failOpen: c?.failOpen ?? d.failOpen,
    stall: stall?.enabled === false ? undefined : { factor: stall?.factor ?? d.stallFactor, floor: ms(stall?.floor ?? d.stallFloor) },
  }
}

/** The passive state of one peer. */
export class PeerHealth implements BreakerHost {
  state: PassiveState = 'ok'
  suspect = false
  ejectedUntil = 0
  restoredAt = 0
  lastResponse = 0
  multiplier = 0
  ejections = 0
  trials = 0
  capped = 0
  stalls = 0
  /** The last failure counted, and the named reason and failure of the current ejection. */
  private lastFailure: Failure | undefined = undefined
  private ejectReason = ''
  private ejectFailure: Failure | undefined = undefined
  /** Set when the cap kept this peer in; cleared by its next success, so the log says it once. */
  private cappedNow = false
  private timer: NodeJS.Timeout | undefined = undefined
  /** Duration computed for the ejection the rate breaker is about to report. */
  private pending = 0
  waitHead: Waiting | undefined = undefined
  waitTail: Waiting | undefined = undefined
  /** Set once by the group right after construction (the rate detector needs this object as its host). */
  detector: Detector | undefined = undefined

  constructor(
    readonly group: PassiveHealth,
    readonly peer: Peer,
  ) {}

  /** Outcome of a request this peer answered (or failed); `failure` already filtered by failOn, undefined for a success. */
  record(role: Role, failure: Failure | undefined, now: number): void {
    const failed = failure !== undefined
    if (failed) this.lastFailure = failure
    if (role === Role.Trial) {
      if (this.state !== 'probing') return
      if (this.detector instanceof RateDetector) this.detector.record(failed)
      else if (failed) this.eject(TRIAL_FAILED, now)
      else this.restore(now, 'trial succeeded')
      return
    }
    if (this.state !== 'ok') {
      // Old requests finishing after the ejection say nothing new; a fail-open success proves the peer works.
      if (role === Role.LastResort && !failed) this.restore(now, 'answered while failing open')
      return
    }
    if (!failed) this.cappedNow = false
    if (this.detector?.record(failed, now) === true) this.eject(EJECT_REASONS[this.group.settings.mode], now)
  }

  /** The trial request's outcome will never come (cancelled, client gone): let another request try. */
  trialAbandoned(): void {
    if (this.state !== 'probing') return
    this.state = 'trial'
    this.applyGate()
  }

  dispatched(now: number): Role {
    switch (this.state) {
      case 'ok':
        return Role.Normal
      case 'trial':
        this.state = 'probing'
        this.trials++
        this.applyGate()
        this.group.emit(this, 'trial', 'ejection time over, one request let through', { evidence: this.detector?.evidence(now), multiplier: this.multiplier })
        return Role.Trial
      default:
        return Role.LastResort
    }
  }

  /** Eject now for the named `reason`, unless the cap or a group of one forbids it. */
  eject(reason: string, now: number): void {
    const g = this.group
    if (this.state === 'ejected') return
    const failure = this.lastFailure?.code
    if (this.state === 'ok' && !g.mayTakeOut(this)) {
      this.capped++
      if (this.detector instanceof RateDetector) this.detector.reset()
      if (!this.cappedNow) {
        this.cappedNow = true
        g.emit(this, 'capped', `${reason}; not ejected: the cap holds (maxEjectPercent of the primaries, never a group of one)`, { evidence: this.detector?.evidence(now), failure })
      }
      return
    }
    const duration = this.detector instanceof RateDetector ? this.pending : this.nextDuration(now)
    if (this.state === 'ok') this.multiplier = this.decayedMultiplier(now)
    this.multiplier++
    this.state = 'ejected'
    this.ejections++
    this.ejectedUntil = now + duration
    this.ejectReason = reason
    this.ejectFailure = this.lastFailure
    this.cappedNow = false
    // The rate breaker times its own half-open; the counting modes reopen the gate with a timer.
    if (!(this.detector instanceof RateDetector)) {
      this.timer = setTimeout(reopen, duration, this)
      this.timer.unref()
    }
    g.emit(this, 'ejected', reason, { evidence: this.detector?.evidence(now), failure, duration, multiplier: this.multiplier })
    this.applyGate()
  }

  openTrial(): void {
    this.timer = undefined
    if (this.state !== 'ejected') return
    this.state = 'trial'
    this.applyGate()
  }

  /** Back in rotation: the trial succeeded, or other evidence (a passing check: `evidence`) disproved the ejection. */
  restore(now: number, reason: string, evidence?: Record<string, unknown>): void {
    if (this.state === 'ok') return
    clearTimeout(this.timer)
    this.timer = undefined
    this.state = 'ok'
    this.restoredAt = now
    this.detector?.reset()
    this.group.emit(this, 'restored', reason, { evidence, multiplier: this.multiplier })
    this.applyGate()
  }

  /** The current ejection (including its due or running trial); undefined while in rotation. */
  ejection(): Ejection | undefined {
    if (this.state === 'ok') return undefined
    const f = this.ejectFailure
    return { failure: f === undefined ? '' : failureClass(f), reason: this.ejectReason, until: this.ejectedUntil }
  }

  /** Envoy-style: each ejectTime spent healthy takes one step off the multiplier. */
  private decayedMultiplier(now: number): number {
    if (this.multiplier === 0) return 0
    const healthy = Math.floor((now - this.restoredAt) / this.group.settings.ejectTime)
    return Math.max(0, this.multiplier - healthy)
  }

  /** ejectTime × (consecutive ejections), capped at maxEjectTime; jittered when it can grow at all. */
  private nextDuration(now: number): number {
    const s = this.group.settings
    const previous = this.state === 'ok' ? this.decayedMultiplier(now) : this.multiplier
    const base = Math.min(s.ejectTime * (previous + 1), s.maxEjectTime)
    return s.maxEjectTime > s.ejectTime ? Math.round(base * (1 + Math.random() * EJECT_JITTER)) : base
  }

  ejectDuration(): number {
    this.pending = this.nextDuration(Date.now())
    return this.pending
  }

  breakerOpened(): void {
    this.eject(this.state === 'probing' ? TRIAL_FAILED : EJECT_REASONS.rate, Date.now())
  }

  breakerHalfOpen(): void {
    this.openTrial()
  }

  breakerClosed(): void {
    this.restore(Date.now(), 'trial succeeded')
  }

  /** How long the oldest waiting request has waited with no response from this peer meanwhile; 0 when none waits. */
  silentFor(now: number): number {
    const head = this.waitHead
    return head === undefined ? 0 : now - Math.max(head.started, this.lastResponse)
  }

  /** Suspect or clear, by how long the peer has kept a request waiting without answering anything. */
  checkStall(now: number, threshold: number, p99: number): void {
    const head = this.waitHead
    const stalled = this.silentFor(now) > threshold
    if (stalled === this.suspect) return
    const evidence: StallEvidence = { waiting: head === undefined ? 0 : now - head.started, threshold, p99 }
    if (stalled) {
      if (!this.group.mayTakeOut(this)) return
      this.suspect = true
      this.stalls++
      this.group.emit(this, 'suspect', 'no response for far longer than the group takes', { evidence })
    } else {
      this.suspect = false
      this.group.emit(this, 'cleared', head === undefined ? 'no request waiting any more' : 'responded again', { evidence })
    }
    this.applyGate()
  }

  /** A response (or a passing check) from a suspect peer clears the suspicion at once: it answers again. */
  answered(now: number): void {
    this.lastResponse = now
    if (!this.suspect) return
    this.suspect = false
    this.group.emit(this, 'cleared', 'responded again')
    this.applyGate()
  }

  /** A peer is out of rotation on passive evidence (for the cap). */
  get out(): boolean {
    return this.suspect || this.state === 'ejected' || this.state === 'probing'
  }

  private applyGate(): void {
    const ok = (this.state === 'ok' || this.state === 'trial') && !this.suspect
    if (this.peer.passiveOk === ok) return
    this.peer.passiveOk = ok
    this.group.upstream.refresh()
  }

  snapshot(): PeerPassiveSnapshot {
    return {
      address: this.peer.address,
      state: this.state,
      suspect: this.suspect,
      ejectedUntil: this.state === 'ejected' ? this.ejectedUntil : undefined,
      ejectionReason: this.state === 'ok' ? undefined : this.ejectReason,
      ejectionFailure: this.state === 'ok' ? undefined : this.ejectFailure?.code,
      ejections: this.ejections,
      multiplier: this.multiplier,
      trials: this.trials,
      capped: this.capped,
      stalls: this.stalls,
    }
  }

  close(): void {
    clearTimeout(this.timer)
    if (this.detector instanceof RateDetector) this.detector.shutdown()
  }
}

function reopen(h: PeerHealth): void {
  h.openTrial()
}

function tick(g: PassiveHealth): void {
  const now = Date.now()
  // A tick that comes late means vigil's own event loop lagged: responses may be sitting unread, so
  // the ages say nothing about the providers this time (inconclusive, like a lagged active check).
  const lagged = now - g.lastTick > 2 * STALL_TICK
  g.lastTick = now
  if (!lagged) g.checkStalls(now)
}

function rotate(e: EventEmitter): void {
  e.emit('rotate')
}

/** Passive health of one upstream group. */
export class PassiveHealth {
  readonly settings: Settings
  readonly failOn: FailureSet
  /** Follows the group's peers: see sync(). */
  peers: readonly PeerHealth[]
  private readonly rotate: EventEmitter | undefined
  private readonly timers: NodeJS.Timeout[] = []
  private readonly latencies = new Float64Array(LATENCY_SAMPLES)
  private readonly sorted = new Float64Array(LATENCY_SAMPLES)
  private samples = 0
  private noneEligible = false
  lastTick = Date.now()
  /** The active checker, when the group has checks: a failed request asks it to check the peer at once. */
  checker: RecheckLink | undefined = undefined

  constructor(
    readonly upstream: Upstream,
    config: Passive | undefined,
  ) {
    const s = (this.settings = settings(config))
    this.failOn = new FailureSet(config?.failOn ?? PASSIVE_DEFAULTS.failOn, true)
    if (s.mode === 'rate') {
      this.rotate = new EventEmitter().setMaxListeners(0)
      this.every(s.failTimeout / RATE_BUCKETS, rotate, this.rotate)
    }
    this.peers = upstream.peers.map((p) => this.join(p))
    if (s.stall !== undefined) this.every(STALL_TICK, tick, this)
    upstream.on('change', onChange)
  }

  /** A peer starts clean here: in rotation as far as passive health goes (new settings start accounting afresh). */
  private join(p: Peer): PeerHealth {
    const h = new PeerHealth(this, p)
    h.detector = this.detector(h)
    p.passiveOk = true
    return (p.passive = h)
  }

  /**
   * The group's peers changed (a reload, an admin call, DNS; src/upstream/membership.ts): kept peers keep their
   * passive state, added ones start clean, removed ones stop their timers (their in-flight requests still settle).
   */
  sync(): void {
    const live = new Set(this.upstream.peers)
    for (const h of this.peers) if (!live.has(h.peer)) h.close()
    this.peers = this.upstream.peers.map((p) => (p.passive?.group === this ? p.passive : this.join(p)))
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
    }
  }

  /** Hot path: a request is being sent to `peer`; sets the role the passive state gives it. */
  dispatched(peer: Peer, w: Waiting, now: number): void {
    const h = peer.passive as PeerHealth
    if (this.settings.stall !== undefined) {
      w.waitingOn = h
      w.prevWaiting = h.waitTail
      if (h.waitTail === undefined) h.waitHead = w
      else h.waitTail.nextWaiting = w
      h.waitTail = w
    }
    w.role = h.dispatched(now)
  }

  /** Hot path: response headers arrived. */
  responded(w: Waiting, now: number): void {
    const h = w.waitingOn
    if (h === undefined) return
    unlink(h, w)
    h.answered(now)
    this.latencies[this.samples++ % LATENCY_SAMPLES] = now - w.started
  }

  /** Hot path: the attempt is over. `failure` undefined is a success; `conclusive` false means it says nothing. */
  settled(peer: Peer, w: Waiting, failure: Failure | undefined, conclusive: boolean, now: number): void {
    if (w.waitingOn !== undefined) unlink(w.waitingOn, w)
    const h = peer.passive as PeerHealth
    if (!conclusive) {
      if (w.role === Role.Trial) h.trialAbandoned()
      return
    }
    const counted = failure !== undefined && this.failOn.has(failure) ? failure : undefined
    h.record(w.role, counted, now)
    if (counted !== undefined) this.checker?.recheck(peer)
  }

  /** Evidence from elsewhere that the peer answers (an active check passed): it counts as a response. */
  vouch(peer: Peer, now: number): void {
    ;(peer.passive as PeerHealth).answered(now)
  }

  /** The cap: passive evidence never takes out more than maxEjectPercent of the primaries, nor a group of one. */
  mayTakeOut(h: PeerHealth): boolean {
    if (h.peer.backup || h.out) return true
    let primaries = 0
    let out = 0
    for (const p of this.peers) {
      if (p.peer.backup || p.peer.configDown) continue
      primaries++
      if (p.out) out++
    }
    if (primaries <= 1) return false
    return out + 1 <= Math.floor((primaries * this.settings.maxEjectPercent) / 100)
  }

  checkStalls(now: number): void {
    const stall = this.settings.stall as { factor: number; floor: number }
    let oldest = 0
    for (const h of this.peers) oldest = Math.max(oldest, h.silentFor(now))
    // The p99 costs a sort: only worth it when some peer is past the floor, or one is suspect already.
    if (oldest <= stall.floor && !this.peers.some(isSuspect)) return
    const p99 = this.p99()
    const threshold = Math.max(stall.floor, stall.factor * p99)
    for (const h of this.peers) h.checkStall(now, threshold, p99)
  }

  private p99(): number {
    const n = Math.min(this.samples, LATENCY_SAMPLES)
    if (n === 0) return 0
    const view = this.sorted.subarray(0, n)
    view.set(this.latencies.subarray(0, n))
    view.sort()
    return view[Math.min(n - 1, Math.floor(n * 0.99))] as number
  }

  emit(h: PeerHealth | undefined, kind: HealthEventKind, reason: string, extra: Partial<HealthEvent> = {}): void {
    const event: HealthEvent = { kind, upstream: this.upstream.name, peer: h?.peer.address, reason, ...extra }
    this.upstream.emit('health', event)
  }

  /** Logs once when the group runs out of eligible peers, and once when it has some again. */
  eligibilityChanged(): void {
    const none = this.upstream.eligibleCount === 0
    if (none === this.noneEligible) return
    this.noneEligible = none
    if (none) this.emit(undefined, 'no_eligible', this.settings.failOpen ? 'no eligible server: failing open to every non-down server' : 'no eligible server: answering 503')
    else this.emit(undefined, 'eligible', 'eligible servers again')
  }

  snapshot(): PeerPassiveSnapshot[] {
    return this.peers.map((h) => h.snapshot())
  }

  close(): void {
    for (const t of this.timers) clearInterval(t)
    for (const h of this.peers) h.close()
    this.upstream.off('change', onChange)
  }
}

function onChange(u: Upstream): void {
  u.passive.eligibilityChanged()
}

function isSuspect(h: PeerHealth): boolean {
  return h.suspect
}

function unlink(h: PeerHealth, w: Waiting): void {
  if (w.prevWaiting === undefined) h.waitHead = w.nextWaiting
  else w.prevWaiting.nextWaiting = w.nextWaiting
  if (w.nextWaiting === undefined) h.waitTail = w.prevWaiting
  else w.nextWaiting.prevWaiting = w.prevWaiting
  w.prevWaiting = w.nextWaiting = w.waitingOn = undefined
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

/** Passive transitions join the one health emitter (log, metrics, status) as `source: 'passive'` events. */
export function reportPassive(events: HealthEvents, e: HealthEvent): void {
  const evidence: Record<string, unknown> = { ...e.evidence }
  if (e.duration !== undefined) evidence['duration'] = e.duration
  if (e.multiplier !== undefined) evidence['multiplier'] = e.multiplier
  if (e.failure !== undefined) evidence['failure'] = e.failure
  events.report({ upstream: e.upstream, server: e.peer ?? '*', source: 'passive', event: e.kind, reason: e.reason, evidence })
}
