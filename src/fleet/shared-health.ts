// What this vigil does with the fleet's observations, per server of every group, once a second and after every
// list: the quorum rule (quorum.ts) decides, this applies it. Suspect: checked at once and then at fastInterval,
// weight lowered to `suspectWeight` percent. Eject (no traffic of its own): a passive ejection named
// `fleet_quorum`, under the group's ejection cap like any other. Ignored (its own requests succeed) or gone:
// weight and interval back, an ejection taken on the fleet's word lifted. With shareChecks, the servers this
// vigil does not probe take their check state from the consumers that do (share-checks.ts).
import type { AttemptObserver } from '../health/monitor.js'
import type { ActiveChecker, CheckTarget } from '../health/active.js'
import type { HealthEvents } from '../health/events.js'
import type { Peer } from '../upstream/peer.js'
import type { Upstream } from '../upstream/upstream.js'
import type { Consumers } from './consumers.js'
import { FLEET_QUORUM, type GroupObservations, type Observation } from './observations.js'
import { decide, needOf, quorumOf, reporting, type Decision, type LocalTraffic, type Need } from './quorum.js'
import { checkersOf, sharedState } from './share-checks.js'

export interface SharedHealthSettings {
  quorum: number | undefined
  window: number
  localWindow: number
  /** Share of its weight a suspect server keeps (0-1]. */
  suspectShare: number
  /** fleet.shareChecks.k; undefined when every consumer checks every server. */
  shareChecks: number | undefined
}

/** The decision as applied here: the rule's, or `ejected` / `capped` for an `eject` the cap did or did not allow. */
export type Outcome = Exclude<Decision, 'eject'> | 'ejected' | 'capped'

interface Verdict {
  outcome: Outcome
  reporters: readonly Observation[]
  /** Weight and check interval changed by the suspicion (to undo). */
  suspect: boolean
}

export interface ServerFleetStatus {
  server: string
  /** Every other observer's last word on the server. */
  observers: Observation[]
  /** Observers reporting it failing within the window. */
  reporting: number
  quorum: number
  decision: Outcome
  /** With shareChecks: the consumers that check it, and whether this vigil is one. */
  checkers?: string[]
  probedHere?: boolean
  /** A non-checker checks it itself: too few of its checkers report it down to take their word. */
  verifying?: boolean
}

export interface SharedHealthOptions {
  id: string
  consumers: Consumers
  groups: ReadonlyMap<string, GroupObservations>
  upstreams: () => ReadonlyMap<string, Upstream>
  checker: ActiveChecker
  events: HealthEvents
  /** An outcome changed (metrics count them). */
  decided(upstream: string, outcome: Outcome): void
}

export class SharedHealth implements AttemptObserver {
  private readonly traffic = new Map<Peer, LocalTraffic>()
  private readonly verdicts = new Map<Peer, Verdict>()
  /** Checkers per probed address, for the consumer list they were computed from. */
  private checkersFor = new Map<string, string[]>()
  private checkersOfIds: readonly string[] = []
  /** Targets this vigil checks itself although others are its checkers: their reports are too few to trust. */
  private verifying = new Set<string>()

  constructor(
    readonly settings: SharedHealthSettings,
    private readonly options: SharedHealthOptions,
  ) {}

  /** Hot path (every settled attempt of every group): this vigil's own traffic to the peer. */
  finished(peer: Peer, status: number): void {
    this.answered(peer, status !== 0 && peer.passive?.group.failOn.hasStatus(status) !== true, Date.now())
  }

  /** One of this vigil's own requests to `peer` succeeded or failed at `now` (a cluster's primary: as its workers report them). */
  answered(peer: Peer, ok: boolean, now: number): void {
    let t = this.traffic.get(peer)
    if (t === undefined) this.traffic.set(peer, (t = { lastAttempt: 0, lastSuccess: 0, lastFailure: 0 }))
    t.lastAttempt = now
    if (ok) t.lastSuccess = now
    else t.lastFailure = now
  }

  /** Does this vigil probe `target` itself? Always, unless shareChecks picks other consumers for it. */
  probes(target: CheckTarget): boolean {
    return this.settings.shareChecks === undefined || this.verifying.has(target.address) || this.checks(target.address)
  }

  /** Is this vigil one of the k checkers of `address`? */
  private checks(address: string): boolean {
    return this.checkers(address).includes(this.options.id)
  }

  evaluate(now = Date.now()): void {
    const seen = new Set<Peer>()
    for (const u of this.options.upstreams().values()) {
      const g = this.options.groups.get(u.name)
      if (g === undefined) continue
      for (const peer of u.peers) {
        seen.add(peer)
        const reporters = reporting(g.others.get(peer.address)?.values(), now, this.settings.window)
        const quorum = this.quorumFor(u, peer)
        this.apply(u, peer, decide(reporters, quorum, this.traffic.get(peer), now, this.settings.localWindow), reporters, quorum, now)
      }
    }
    for (const peer of this.verdicts.keys()) if (!seen.has(peer)) this.verdicts.delete(peer)
    for (const peer of this.traffic.keys()) if (!seen.has(peer)) this.traffic.delete(peer)
    if (this.settings.shareChecks !== undefined) this.adoptShared(this.settings.shareChecks, now)
  }

  /** The quorum for a server of no subset: the configured one, or by default relative to every consumer. */
  get quorum(): number {
    return quorumOf(this.settings.quorum, this.options.consumers.view.count)
  }

  /** The quorum for `peer` of group `u`: under `subset`, the default counts only the consumers whose subset holds it. */
  quorumFor(u: Upstream, peer: Peer): number {
    const users = u.subset?.users(peer)
    return users === undefined ? this.quorum : quorumOf(this.settings.quorum, users)
  }

  /**
   * What this vigil's own record of `server` in group `upstream` is worth to the fleet now (quorum.ts Need): a
   * check report when it is one of the server's checkers; otherwise `enough` once quorum + margin other observers
   * report it failing within window, as this vigil sees them.
   */
  need(upstream: string, server: string, now: number): Need {
    const u = this.options.upstreams().get(upstream)
    const peer = u?.find(server)
    if (u === undefined || peer === undefined) return 'more'
    if (this.settings.shareChecks !== undefined) {
      const target = this.options.checker.stateOf(peer)
      if (target !== undefined && this.checks(target.address)) return 'report'
    }
    const reporters = reporting(this.options.groups.get(upstream)?.others.get(server)?.values(), now, this.settings.window)
    return needOf(reporters.length, this.quorumFor(u, peer))
  }

  /** Servers this vigil probes itself, and servers whose state it takes from others (fleet.shareChecks). */
  checkShare(): { probed: number; shared: number } {
    let probed = 0
    let shared = 0
    for (const target of this.options.checker.all) if (this.settings.shareChecks === undefined || this.checks(target.address)) probed++
    else shared++
    return { probed, shared }
  }

  status(upstream: Upstream, now = Date.now()): ServerFleetStatus[] {
    const g = this.options.groups.get(upstream.name)
    return upstream.peers.map((peer) => {
      const quorum = this.quorumFor(upstream, peer)
      const observers = [...(g?.others.get(peer.address)?.values() ?? [])]
      const s: ServerFleetStatus = {
        server: peer.address,
        observers,
        reporting: reporting(observers, now, this.settings.window).length,
        quorum,
        decision: this.verdicts.get(peer)?.outcome ?? 'none',
      }
      const target = this.options.checker.stateOf(peer)
      if (this.settings.shareChecks !== undefined && target !== undefined) {
        s.checkers = this.checkers(target.address)
        s.probedHere = s.checkers.includes(this.options.id)
        if (!s.probedHere && this.verifying.has(target.address)) s.verifying = true
      }
      return s
    })
  }

  /** The outcome for one server of a group, for its status row. */
  outcomeOf(peer: Peer): Outcome {
    return this.verdicts.get(peer)?.outcome ?? 'none'
  }

  private apply(u: Upstream, peer: Peer, decision: Decision, reporters: Observation[], quorum: number, now: number): void {
    const before = this.verdicts.get(peer)
    const h = peer.passive
    let outcome: Outcome
    const suspect = decision === 'eject' || decision === 'suspect'
    const evidence = { observers: reporters.map((o) => ({ observer: o.observer, event: o.event, reason: o.reason, at: new Date(o.at).toISOString() })), quorum }
    if (!suspect) {
      outcome = decision as 'none' | 'ignored'
      if (before?.suspect === true) this.unsuspect(u, peer)
      if (h?.ejection()?.reason === FLEET_QUORUM) h.restore(now, decision === 'none' ? 'fewer observers than the quorum report it failing' : 'its own requests succeed', evidence)
    } else {
      if (decision === 'eject' && h?.state === 'ok') h.eject(FLEET_QUORUM, now, evidence)
      outcome = decision === 'suspect' ? 'suspect' : h?.state === 'ok' ? 'capped' : 'ejected'
      if (before?.suspect !== true) this.options.checker.hurry(peer, true)
      this.lower(u, peer)
    }
    this.verdicts.set(peer, { outcome, reporters, suspect })
    if ((before?.outcome ?? 'none') === outcome) return
    this.options.decided(u.name, outcome)
    this.options.events.report({
      upstream: u.name,
      server: peer.address,
      source: 'fleet',
      event: outcome === 'none' ? 'cleared' : outcome,
      reason: REASONS[outcome],
      evidence,
    })
  }

  /** A suspect server keeps `suspectShare` of its weight (re-applied every evaluation: slow start may raise it). */
  private lower(u: Upstream, peer: Peer): void {
    if (u.shareWeight(peer, this.settings.suspectShare)) u.refresh()
  }

  private unsuspect(u: Upstream, peer: Peer): void {
    this.options.checker.hurry(peer, false)
    if (u.shareWeight(peer, 1)) u.refresh()
  }

  private checkers(address: string): string[] {
    const ids = this.options.consumers.view.ids
    if (ids !== this.checkersOfIds) {
      this.checkersFor = new Map()
      this.checkersOfIds = ids
    }
    let c = this.checkersFor.get(address)
    if (c === undefined) this.checkersFor.set(address, (c = checkersOf(address, ids, this.settings.shareChecks ?? ids.length)))
    return c
  }

  private adoptShared(k: number, now: number): void {
    const verifying = new Set<string>()
    for (const target of this.options.checker.all) {
      if (this.checks(target.address)) continue
      const checkers = this.checkers(target.address)
      for (const { upstream, peer } of target.members) {
        const shared = sharedState(checkers, this.options.groups.get(upstream.name)?.others.get(peer.address), k, now, this.settings.window, this.traffic.get(peer), this.settings.localWindow)
        if (shared === undefined) continue
        if (shared.state === 'verify') {
          // Too few checkers say down to trust them: its own checks decide, at their schedule (not at once: in a real
          // failure the other checkers' reports follow within writeJitter, and the whole fleet probing at once is
          // the load shared checks exist to avoid).
          verifying.add(target.address)
        } else {
          this.options.checker.adopt(target, shared.state === 'down', { checkers, reports: shared.reports.map((o) => ({ observer: o.observer, checkDown: o.checkDown, reason: o.reason })) })
        }
        break
      }
    }
    this.verifying = verifying
  }
}

const REASONS: Record<Outcome, string> = {
  none: 'fewer observers than the quorum report it failing',
  ignored: 'a quorum of observers report it failing; ignored: its own recent requests succeed',
  suspect: 'a quorum of observers report it failing: checked now and at the fast interval, weight lowered',
  ejected: 'a quorum of observers report it failing and this vigil has no traffic of its own to it',
  capped: 'a quorum of observers report it failing; not ejected: the cap holds',
}
