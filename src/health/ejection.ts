// The passive ejection state machine of one server: ok → ejected (for a growing, jittered time, unless the cap
// forbids it) → trial (one live request let through) → probing (that request running) → ok, or ejected again.
// Which failures lead to an ejection is the detector's business (eject/, one per mode); when the ejection ends,
// the timer's; whether the server may leave, the cap's (cap.ts); stall suspicion is the stall watch's (stall.ts).
import type { Peer } from '../upstream/peer.js'
import { failureClass, type Failure } from './outcome.js'
import type { Detector } from './eject/detector.js'
import { RateDetector, type BreakerHost } from './eject/rate.js'
import type { Ejection } from './events.js'
import { WaitList, type StallEvidence } from './stall.js'
import { RecoveryProbe, recoveryKind, type RecoveryHost, type RecoveryKind } from './recovery.js'
import type { ProbeResult } from './probes/index.js'
import type { PassiveHealth } from './passive.js'
import type { PendingOutcomes } from '../workers/outcomes.js'

export type PassiveState = 'ok' | 'ejected' | 'trial' | 'probing'

/** The first quiet time before a stall trial, ms, and the most it doubles to. */
export const STALL_TRIAL_WAIT = 250
export const STALL_TRIAL_MAX = 1_000

/** Ejections that grow are stretched by up to this share, so consumers do not come back in lockstep. */
export const EJECT_JITTER = 0.1

/** The named reason of an ejection, by the mode that decided it (the label of vigil_ejections_total). */
export const EJECT_REASONS = {
  nginx: 'max_fails',
  consecutive: 'consecutive_failures',
  window: 'failures_in_window',
  rate: 'failure_rate',
  // Outlier mode ejects from its sweep, naming the algorithm that decided: success_rate or failure_percentage.
  outlier: 'success_rate',
} as const
/** The single trial request after an ejection failed: ejected again. */
export const TRIAL_FAILED = 'trial_failed'

/** Why a stall suspicion was cleared: the server answered, or nothing waits on it any more (no answer to judge by). */
const RESPONDED = 'responded again'
const NOTHING_WAITS = 'no request waiting any more'

/** How a request was let through to its peer, decided at dispatch. */
export enum Role {
  Normal = 0,
  /** The one trial request after an ejection. */
  Trial = 1,
  /** Sent to a non-eligible peer because nothing was eligible (fail open). */
  LastResort = 2,
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

export class PeerHealth implements BreakerHost, RecoveryHost {
  state: PassiveState = 'ok'
  suspect = false
  /** When this process last suspected it (Date.now()): a cluster's primary judges its workers' reports after it. */
  suspectedAt = 0
  /** Suspect, but nothing waits on it any more (all raced elsewhere): one request may go to see if it answers. */
  private stallTrial = false
  /** While suspect with nothing waiting: since when, and how many stall trials went (they back off). */
  private quietSince = 0
  private stallTrials = 0
  /**
   * Whether this process lets its stall trials through: in a cluster, only the worker its primary granted them to
   * (src/workers/state-stream.ts, in turn), so the proxy sends one at a time, as one process does.
   */
  private stallTrialsHere = true
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
  /**
   * When the cap last kept this peer in. One episode lasts while the cap keeps holding it, less than failTimeout
   * apart (successes in between do not end it: a flapping peer would log every failure), so the log says it once.
   */
  private cappedAt = 0
  private timer: NodeJS.Timeout | undefined = undefined
  /** Duration computed for the ejection the rate breaker is about to report. */
  private pending = 0
  /** The recovery probe of the current ejection, while it runs (recovery.ts). */
  private recovery: RecoveryProbe | undefined = undefined
  /** Why the trial now due was opened: its ejection time ended, or a recovery probe passed. */
  private trialReason = ''
  /** Requests waiting on this peer for response headers (for stall detection). */
  readonly waits: WaitList = new WaitList(this)
  /** Set once by the group right after construction (the rate detector needs this object as its host). */
  detector: Detector | undefined = undefined
  /** A cluster worker's outcomes not yet reported to its primary (src/workers/outcomes.ts). */
  unreported: PendingOutcomes | undefined = undefined

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
    if (this.detector?.record(failed, now) === true) this.eject(EJECT_REASONS[this.group.settings.mode], now)
  }

  /** The trial request's outcome will never come (cancelled, client gone): let another request try. */
  trialAbandoned(): void {
    if (this.state !== 'probing') return
    this.state = 'trial'
    this.applyGate()
  }

  dispatched(now: number): Role {
    if (this.stallTrial) {
      this.stallTrial = false
      this.applyGate()
    }
    switch (this.state) {
      case 'ok':
        return Role.Normal
      case 'trial':
        this.state = 'probing'
        this.trials++
        this.applyGate()
        this.group.emit(this, 'trial', this.trialReason, { evidence: this.detector?.evidence(now), multiplier: this.multiplier })
        return Role.Trial
      default:
        return Role.LastResort
    }
  }

  /**
   * Eject now for the named `reason`, unless the cap or a group of one forbids it. `shared`: evidence from
   * elsewhere (the fleet's observers, src/fleet/) that the decision rests on instead of this vigil's detector.
   */
  eject(reason: string, now: number, shared?: Record<string, unknown>): void {
    const g = this.group
    if (this.state === 'ejected') return
    const failure = this.lastFailure?.code
    if (this.state === 'ok' && !g.mayTakeOut(this)) {
      this.capped++
      if (this.detector instanceof RateDetector) this.detector.reset()
      const episode = this.cappedAt !== 0 && now - this.cappedAt <= g.settings.failTimeout
      this.cappedAt = now
      if (!episode) {
        g.emit(this, 'capped', `${reason}; not ejected: the cap holds (maxEjectPercent of the primaries, never a group of one)`, { evidence: shared ?? this.detector?.evidence(now), failure })
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
    this.cappedAt = 0
    // The rate breaker times its own half-open; the counting modes reopen the gate with a timer.
    if (!(this.detector instanceof RateDetector)) {
      this.timer = setTimeout(reopen, duration, this)
      this.timer.unref()
    }
    const recovery = this.startRecovery()
    g.emit(this, 'ejected', reason, { evidence: { ...(shared ?? this.detector?.evidence(now)), recovery }, failure, duration, multiplier: this.multiplier })
    this.applyGate()
  }

  /** The probe that matches the evidence, when passive.recoveryProbe is on and one can disprove it. */
  private startRecovery(): RecoveryKind | undefined {
    this.recovery?.stop()
    this.recovery = undefined
    const settings = this.group.settings.recovery
    const up = this.group.upstream
    const kind = settings === undefined ? undefined : recoveryKind(this.ejectFailure, up.active)
    if (kind !== undefined) this.recovery = new RecoveryProbe(this, kind, this.peer, up.active, up.timeouts.connect, settings as NonNullable<typeof settings>)
    return kind
  }

  /** The ejection time is over: one trial request may go, unless a recovery probe still finds the server down. */
  openTrial(): void {
    this.timer = undefined
    if (this.state !== 'ejected' || this.recovery?.failing === true) return
    this.openGateForTrial('ejection time over, one request let through')
  }

  private openGateForTrial(reason: string): void {
    this.state = 'trial'
    this.trialReason = reason
    this.applyGate()
  }

  /** A recovery probe passed: in nginx mode the trial request is due at once; other modes restore. */
  recoveryPassed(kind: RecoveryKind, result: ProbeResult, probes: number): void {
    this.recovery = undefined
    if (this.state !== 'ejected') return
    const evidence = { probe: kind, probes, result: result.reason }
    if (this.group.settings.mode !== 'nginx') return this.restore(Date.now(), 'recovery probe passed', evidence)
    clearTimeout(this.timer)
    this.timer = undefined
    this.openGateForTrial('recovery probe passed, one request let through')
    this.group.emit(this, 'recovered', 'recovery probe passed: the trial request is due now', { evidence })
  }

  /** Back in rotation: the trial succeeded, or other evidence (a passing check: `evidence`) disproved the ejection. */
  restore(now: number, reason: string, evidence?: Record<string, unknown>): void {
    if (this.state === 'ok') return
    clearTimeout(this.timer)
    this.timer = undefined
    this.recovery?.stop()
    this.recovery = undefined
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

  /** The stall watch's verdict changed: suspect (unless the cap forbids it) or clear. */
  stallVerdict(stalled: boolean, evidence: StallEvidence): void {
    if (stalled) {
      if (!this.group.mayTakeOut(this)) return
      this.suspect = true
      this.suspectedAt = Date.now()
      this.stalls++
      this.group.emit(this, 'suspect', 'no response for far longer than the group takes', { evidence })
      this.applyGate()
    } else this.clear(this.waits.head === undefined ? NOTHING_WAITS : RESPONDED, evidence)
  }

  /**
   * Suspect, and every request that waited on it was raced elsewhere and cancelled (stall re-dispatch): that is
   * no evidence it answers again, so it stays suspect, and one request at a time is let through to find out,
   * after a quiet time that doubles from 250 ms to 1 s (a frozen server costs a few slow requests, not many).
   */
  maybeStallTrial(now: number): void {
    if (!this.suspect || this.stallTrial || !this.stallTrialsHere) return
    if (this.quietSince === 0) this.quietSince = now
    if (now - this.quietSince < Math.min(STALL_TRIAL_WAIT * 2 ** this.stallTrials, STALL_TRIAL_MAX)) return
    this.quietSince = 0
    this.stallTrials++
    this.stallTrial = true
    this.applyGate()
  }

  private endSuspicion(): void {
    this.suspect = false
    this.stallTrial = false
    this.quietSince = 0
    this.stallTrials = 0
  }

  /** A response (or a passing check) from a suspect peer clears the suspicion at once: it answers again. */
  answered(now: number): void {
    this.waits.lastResponse = now
    if (this.suspect) this.clear(RESPONDED)
  }

  /**
   * A cluster's primary: no worker has a request waiting on this suspect server any more (their in-flight counts),
   * so, as in one process when its last waiting request is gone, there is nothing left to suspect it on.
   */
  nothingWaits(): void {
    if (this.suspect) this.clear(NOTHING_WAITS)
  }

  private clear(reason: string, evidence?: StallEvidence | Record<string, unknown>): void {
    this.endSuspicion()
    this.group.emit(this, 'cleared', reason, evidence === undefined ? {} : { evidence })
    this.applyGate()
  }

  /**
   * A cluster worker's copy of the state its primary decided (src/workers/replica.ts), or a skip on its own
   * evidence until the primary decides. No event and no timer: the primary reports and times its decisions. A
   * trial this worker is already running stays running; `stallTrials`: this worker holds the grant of the stall
   * trials (a stall trial not yet sent closes when the grant moves on).
   */
  mirror(state: PassiveState, suspect: boolean, stallTrials = this.stallTrialsHere): void {
    this.state = state === 'trial' && this.state === 'probing' ? 'probing' : state
    this.stallTrialsHere = stallTrials
    if (!stallTrials) this.stallTrial = false
    if (suspect && !this.suspect) {
      this.suspect = true
      // As on a suspicion of its own (stall.ts): every request already waiting on it may be raced elsewhere.
      if (this.group.stall?.settings.redispatch === true) this.waits.notifyStalled(Date.now(), -1)
    } else if (!suspect && this.suspect) this.endSuspicion()
    this.applyGate()
  }

  /** A peer is out of rotation on passive evidence (for the cap). */
  get out(): boolean {
    return this.suspect || this.state === 'ejected' || this.state === 'probing'
  }

  private applyGate(): void {
    const ok = (this.state === 'ok' || this.state === 'trial') && (!this.suspect || this.stallTrial)
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
    this.recovery?.stop()
    if (this.detector instanceof RateDetector) this.detector.shutdown()
  }
}

function reopen(h: PeerHealth): void {
  h.openTrial()
}

