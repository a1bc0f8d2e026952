// The active checker (Tengine's nginx_upstream_check_module, with HAProxy's per-state intervals): probes every
// distinct (address, check) on its own schedule, applies rise/fall hysteresis, and opens or closes each peer's
// `checkUp` gate, which Upstream.refresh() turns into the eligible snapshot.
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { Peer } from '../upstream/peer.js'
import type { Upstream } from '../upstream/upstream.js'
import { checkCovers, type CheckSpec } from './check-spec.js'
import type { HealthEvents, PassiveHealthLink } from './events.js'
import { LoopLag } from './loop-lag.js'
import { RiseFall } from './rise-fall.js'
import { authority, createProbe, type Probe, type ProbeResult } from './probes/index.js'

export type CheckResult = 'success' | 'failure' | 'inconclusive'

export interface LastCheck {
  /** Wall-clock time the check finished (ms since epoch). */
  at: number
  result: CheckResult
  reason: string
  latencyMs: number
}

/**
 * A check that timed out while vigil's loop stalled this long is inconclusive: the stall, not the provider, may
 * have made it late. A fifth of the timeout, and never less than 50 ms (below that, stalls are common noise).
 */
export function stallLimit(timeout: number): number {
  return Math.max(50, timeout / 5)
}

/**
 * The wait before a server's next check. HAProxy's intervals: `fastInterval` while it is changing state,
 * `downInterval` while it is down, else `interval`; jittered by ±`jitter`. The first wait after the initial
 * check is spread over the whole interval instead (Tengine's random start), so checks do not run in lockstep.
 * `random` is in [0, 1).
 */
export function checkDelay(spec: CheckSpec, state: RiseFall, spread: boolean, random: number, hurried = false): number {
  const base = state.changing || hurried ? spec.fastInterval : state.down ? spec.downInterval : spec.interval
  return spread ? random * base : base * (1 + spec.jitter * (2 * random - 1))
}

/** Why a due check is left out: its servers stand outside this vigil's subset, or real traffic covers them. */
/** `shared`: another consumer checks it for the fleet (fleet.shareChecks), its results are taken from there. */
export type SkipReason = 'standby' | 'traffic' | 'shared'

/**
 * Whether the check of a server that is due now (by checkDelay) runs. A down server is always checked (its own
 * interval), so it can come back. One that is not down and stands by in every group listing it (outside this
 * vigil's subset rotation) is not checked: it gets no traffic from this vigil. Changing states keep their interval. With `trafficInterval`, one that
 * answered a real request within trafficInterval is checked only once per trafficInterval: passive evidence covers
 * it. `now`, `lastAnswered` (the latest success of a real request) and `lastCheck` (start of its latest check) are
 * wall-clock ms; a clock that went backwards checks.
 */
export function skipCheck(spec: CheckSpec, state: RiseFall, standby: boolean, lastAnswered: number, lastCheck: number, now: number): SkipReason | undefined {
  if (state.down) return undefined
  // Not yet checked, or failing when it left the rotation: it is checked at once if it comes back into it.
  if (standby) return 'standby'
  if (state.changing) return undefined
  const window = spec.trafficInterval
  if (window === undefined) return undefined
  const sinceAnswer = now - lastAnswered
  const sinceCheck = now - lastCheck
  return sinceAnswer >= 0 && sinceAnswer < window && sinceCheck >= 0 && sinceCheck < window ? 'traffic' : undefined
}

interface Member {
  upstream: Upstream
  peer: Peer
}

/** One distinct (address, check): probed once per interval however many groups list the address. */
export class CheckTarget {
  members: Member[] = []
  readonly state: RiseFall
  readonly probe: Probe
  timer: NodeJS.Timeout | undefined = undefined
  running = false
  closed = false
  /** The first periodic check after the initial one is spread over the interval (Tengine's random start). */
  spread = true
  checks = 0
  failures = 0
  inconclusive = 0
  /** Due checks left out (skipCheck), by reason. */
  skipped: Record<SkipReason, number> = { standby: 0, traffic: 0, shared: 0 }
  /** Wall-clock start of the latest check (ms), 0 before the first. */
  lastStart = 0
  /** Checks started per second, over about the last minute (the status page's probe rate). */
  readonly rate = new RateWindow(60_000)
  inconclusiveStreak = 0
  last: LastCheck | undefined = undefined
  /** Wall-clock time of the last up/down flip. */
  lastChange: number | undefined = undefined
  lastRecheck = -Infinity
  /** Checked at fastInterval whatever its state: other vigils report it failing (src/fleet/). */
  hurried = false

  constructor(
    /** host:port actually probed. */
    readonly address: string,
    readonly spec: CheckSpec,
    readonly limiter: Limiter,
    host: string,
    port: number,
  ) {
    this.state = new RiseFall(spec.rise, spec.fall, spec.defaultDown)
    this.probe = createProbe(spec, host, port)
  }
}

/**
 * Events per second over the last `width` ms, approximated from two fixed windows (the previous one weighted by how
 * much of it the sliding window still covers): two counters per server, no list of times.
 */
export class RateWindow {
  private start: number
  private current = 0
  private previous = 0

  constructor(
    readonly width: number,
    now = Date.now(),
  ) {
    this.start = now
  }

  add(now = Date.now()): void {
    this.roll(now)
    this.current++
  }

  perSecond(now = Date.now()): number {
    this.roll(now)
    const into = Math.min(1, Math.max(0, (now - this.start) / this.width))
    return ((this.previous * (1 - into) + this.current) * 1000) / this.width
  }

  private roll(now: number): void {
    const elapsed = now - this.start
    if (elapsed < this.width) return
    // The current window ends: it becomes the previous one, unless a whole window passed since, with nothing in it.
    const adjacent = elapsed < 2 * this.width
    this.previous = adjacent ? this.current : 0
    this.current = 0
    this.start = adjacent ? this.start + this.width : now
  }
}

/** A cap on checks running at once; the ones over it wait their turn (and their timeout starts only then). */
export class Limiter {
  private active = 0
  private readonly waiting: (() => void)[] = []

  constructor(readonly max: number) {}

  run(job: () => Promise<void>): void {
    if (this.active >= this.max) {
      this.waiting.push(() => this.run(job))
      return
    }
    this.active++
    void job().finally(() => {
      this.active--
      this.waiting.shift()?.()
    })
  }
}

export interface ActiveCheckerOptions {
  events: HealthEvents
  log: Logger
}

/**
 * Who probes what, when the fleet shares its checks (fleet.shareChecks): a target this vigil does not probe keeps
 * its schedule but skips the probe, and takes its state from adopt().
 */
export interface CheckDelegate {
  probes(target: CheckTarget): boolean
}

export class ActiveChecker {
  private targets = new Map<string, CheckTarget>()
  private byPeer = new Map<Peer, CheckTarget>()
  private limiters = new Map<string, Limiter>()
  private passive: PassiveHealthLink | undefined
  private started = false
  readonly lag = new LoopLag()
  delegate: CheckDelegate | undefined = undefined

  constructor(
    upstreams: ReadonlyMap<string, Upstream>,
    private readonly options: ActiveCheckerOptions,
  ) {
    this.update(upstreams)
  }

  /** Let passing checks lift passive ejections they disprove (the passive module calls this once). */
  linkPassive(link: PassiveHealthLink): void {
    this.passive = link
  }

  /**
   * Take the upstreams as they are now (at start and after a reload): targets that stay keep their state
   * and schedule, new ones are checked at once, removed ones stop. Peers get their target's current state.
   */
  update(upstreams: ReadonlyMap<string, Upstream>): void {
    const next = new Map<string, CheckTarget>()
    const limiters = new Map<string, Limiter>()
    const previous = this.byPeer
    this.byPeer = new Map()
    for (const upstream of upstreams.values()) {
      const spec = upstream.active
      if (spec === undefined) {
        // A group whose check was removed: nothing keeps its servers out any more.
        for (const peer of upstream.peers) peer.checkUp = true
        continue
      }
      const specKey = JSON.stringify(spec)
      let limiter = limiters.get(specKey)
      if (limiter === undefined) limiters.set(specKey, (limiter = this.limiters.get(specKey) ?? new Limiter(spec.maxInFlight)))
      for (const peer of upstream.peers) {
        const port = spec.port === 0 ? peer.port : spec.port
        const address = authority(peer.host, port)
        const key = `${address} ${specKey}`
        let target = next.get(key)
        const known = this.targets.get(key)
        if (target === undefined) {
          target = known ?? new CheckTarget(address, spec, limiter, peer.host, port)
          target.members = []
          next.set(key, target)
          if (this.started && known === undefined) this.schedule(target, 0)
        }
        if (known === undefined) this.inherit(target, previous.get(peer))
        target.members.push({ upstream, peer })
        this.byPeer.set(peer, target)
      }
    }
    // Gates once every member has joined: a new target several servers share is down if any of them was.
    for (const target of next.values()) for (const { peer } of target.members) peer.checkUp = !target.state.down
    for (const upstream of upstreams.values()) upstream.refresh()
    for (const [key, target] of this.targets) if (!next.has(key)) void this.retire(target)
    this.targets = next
    this.limiters = limiters
  }

  /**
   * A server whose check changed (another spec, so another target) keeps its up/down state: a server down by the
   * old check stays out until the new one passes `rise` times, and one that was up is not sent back to
   * `defaultDown`. Counting towards rise/fall starts afresh under the new thresholds; the new check runs at once.
   * When several servers now share one new target (a `port` that maps them onto one probed address), it is down
   * if any of them was.
   */
  private inherit(target: CheckTarget, before: CheckTarget | undefined): void {
    if (before === undefined || !before.state.checked) return
    const first = !target.state.checked
    target.state.down = first ? before.state.down : target.state.down || before.state.down
    target.state.checked = true
    if (first) {
      target.last = before.last
      target.lastChange = before.lastChange
    }
  }

  start(): void {
    if (this.started || this.targets.size === 0) return
    this.started = true
    // New servers are checked at once, so a default-down group does not wait an interval to serve.
    for (const target of this.targets.values()) this.schedule(target, 0)
  }

  async stop(): Promise<void> {
    this.started = false
    await Promise.all([...this.targets.values()].map((t) => this.retire(t)))
  }

  /** The check state behind a peer, for the status page and metrics; undefined when its group has no check. */
  stateOf(peer: Peer): CheckTarget | undefined {
    return this.byPeer.get(peer)
  }

  get all(): Iterable<CheckTarget> {
    return this.targets.values()
  }

  /**
   * Check this peer now, ahead of its schedule (HAProxy's `observe`: passive failures ask for confirmation).
   * At most once per `fastInterval`, and never while a check of it is already running.
   */
  recheck(peer: Peer): void {
    const target = this.byPeer.get(peer)
    if (target === undefined || !this.started || target.running) return
    const now = performance.now()
    if (now - target.lastRecheck < target.spec.fastInterval) return
    target.lastRecheck = now
    clearTimeout(target.timer)
    this.run(target, true)
  }

  private schedule(target: CheckTarget, delay: number): void {
    target.timer = setTimeout(() => this.run(target), delay)
    target.timer.unref()
  }

  /** A timer came due, or a recheck: check now, unless skipCheck leaves it out (then wait another interval). */
  private run(target: CheckTarget, forced = false): void {
    target.timer = undefined
    if (target.running || target.closed) return
    const now = Date.now()
    const skip = forced ? undefined : this.skip(target, now)
    if (skip !== undefined) {
      target.skipped[skip]++
      // Traffic-covered: back at the next interval (traffic may stop) or when trafficInterval ends, whichever is first.
      const next = checkDelay(target.spec, target.state, false, Math.random())
      this.schedule(target, skip === 'traffic' ? Math.min(next, target.lastStart + (target.spec.trafficInterval as number) - now) : next)
      return
    }
    target.running = true
    target.lastStart = now
    target.rate.add(now)
    target.limiter.run(() => this.probe(target))
  }

  private skip(target: CheckTarget, now: number): SkipReason | undefined {
    // Suspect on the fleet's word: its own checks must decide, traffic or not.
    if (target.hurried) return undefined
    if (this.delegate?.probes(target) === false) return 'shared'
    let standby = true
    let lastAnswered = 0
    for (const { peer } of target.members) {
      standby &&= peer.standby
      if (peer.lastAnswered > lastAnswered) lastAnswered = peer.lastAnswered
    }
    return skipCheck(target.spec, target.state, standby, lastAnswered, target.lastStart, now)
  }

  private async probe(target: CheckTarget): Promise<void> {
    // It may have waited for a slot while a reload or stop retired it.
    if (target.closed) return
    const timeout = target.spec.timeout
    const controller = new AbortController()
    const started = performance.now()
    let late = 0
    const timer = setTimeout(() => {
      late = performance.now() - started - timeout
      controller.abort()
    }, timeout)
    this.lag.hold()
    const result = await target.probe.check(controller.signal).finally(() => this.lag.release())
    clearTimeout(timer)
    const latency = performance.now() - started
    target.running = false
    if (target.closed || !this.started) return
    const stall = result.reason === 'timeout' ? Math.max(late, this.lag.longestSince(started)) : 0
    try {
      this.conclude(target, result, stall >= stallLimit(timeout) ? stall : undefined, latency)
    } catch (err) {
      // A failing listener (log, passive link) must not stop this server's checks.
      this.options.log.error({ err, address: target.address }, 'error while recording a check')
    }
    // Intervals run from check start to check start, so a slow server is still checked once per interval.
    this.schedule(target, Math.max(0, checkDelay(target.spec, target.state, target.spread, Math.random(), target.hurried) - latency))
    target.spread = false
  }

  private conclude(target: CheckTarget, result: ProbeResult, stall: number | undefined, latency: number): void {
    const spec = target.spec
    const state = target.state
    target.checks++
    target.last = { at: Date.now(), result: stall !== undefined ? 'inconclusive' : result.ok ? 'success' : 'failure', reason: result.reason, latencyMs: Math.round(latency) }
    if (stall !== undefined) {
      target.inconclusive++
      // One line per streak, when it reaches what would otherwise have been enough failures to go down.
      if (++target.inconclusiveStreak === spec.fall) {
        this.report(target, 'inconclusive', 'vigil_event_loop_lag', { streak: target.inconclusiveStreak, stallMs: Math.round(stall), timeoutMs: spec.timeout })
      }
      return
    }
    target.inconclusiveStreak = 0
    if (!result.ok) target.failures++
    const flipped = state.record(result.ok)
    if (flipped !== undefined) {
      target.lastChange = Date.now()
      for (const m of target.members) m.peer.checkUp = flipped === 'up'
      for (const u of new Set(target.members.map((m) => m.upstream))) u.refresh()
      this.report(target, flipped, result.reason, {
        rise: state.riseCount,
        fall: state.fallCount,
        latencyMs: target.last.latencyMs,
        detail: result.detail,
      })
    }
    if (result.ok && this.passive !== undefined) this.passed(target, this.passive)
  }

  /**
   * The state of a target this vigil does not probe, from the consumers that do (fleet.shareChecks): the same
   * gates, refresh and event as a check of its own would flip, with the reason `shared_check`.
   */
  adopt(target: CheckTarget, down: boolean, evidence: Record<string, unknown>): void {
    const state = target.state
    if (state.checked && state.down === down) return
    const flipped = state.down !== down
    state.checked = true
    state.down = down
    state.riseCount = state.fallCount = 0
    if (!flipped) return
    target.lastChange = Date.now()
    for (const m of target.members) m.peer.checkUp = !down
    for (const u of new Set(target.members.map((m) => m.upstream))) u.refresh()
    this.report(target, down ? 'down' : 'up', 'shared_check', evidence)
  }

  /**
   * Check a target now and at fastInterval from then on (true), or at its state's interval again (false). Not
   * through recheck(): its rate limit would drop the check when a passive failure has just rechecked the server,
   * and the next check would stay where the slow interval put it.
   */
  hurry(peer: Peer, on: boolean): void {
    const target = this.byPeer.get(peer)
    if (target === undefined || target.hurried === on) return
    target.hurried = on
    // A running check reschedules itself at the fast interval when it ends.
    if (!on || !this.started || target.running) return
    clearTimeout(target.timer)
    this.run(target, true)
  }

  /**
   * A passing check is evidence for passive health, as far as it tests what passive saw: one that got an answer
   * vouches that the peer answers (a stall suspicion ends; a bare TCP connect proves nothing, a frozen process
   * still accepts), and with `unejectOnPass` it lifts an ejection for a failure it disproves.
   */
  private passed(target: CheckTarget, passive: PassiveHealthLink): void {
    const spec = target.spec
    const answers = checkCovers(spec, 'timeout')
    for (const { peer } of target.members) {
      if (answers) passive.vouch(peer)
      const failure = spec.unejectOnPass ? passive.ejection(peer)?.failure : undefined
      if (failure !== undefined && checkCovers(spec, failure)) {
        passive.restore(peer, { check: spec.type, address: target.address, ejectedFor: failure })
      }
    }
  }

  private report(target: CheckTarget, event: string, reason: string, evidence: Record<string, unknown>): void {
    for (const { upstream, peer } of target.members) {
      this.options.events.report({
        upstream: upstream.name,
        server: peer.address,
        source: 'active',
        event,
        reason,
        evidence: { check: target.spec.type, address: target.address, ...evidence },
      })
    }
  }

  private retire(target: CheckTarget): Promise<void> {
    target.closed = true
    clearTimeout(target.timer)
    return target.probe.close()
  }
}
