// One run of the fleet simulation: N consumers × M providers, one fault on provider P0 at t = 0, one strategy.
// A discrete-event model on a virtual clock (ms): one binary heap of events (flatqueue), one seeded generator.
//
// What is vigil's own code: the failure classes and failOn (health/outcome.ts), the nginx/consecutive/window
// detectors (health/eject/), Tengine's rise/fall (health/rise-fall.ts), the check schedule (checkDelay in
// health/active.ts, resolveCheck), the cap's allowance (health/cap.ts), recovery-probe kinds and backoff
// (health/recovery.ts), the ejection time and its jitter (PASSIVE_DEFAULTS, ejectTimeOf, EJECT_JITTER), the
// subset (upstream/subset.ts) and the hash behind rendezvous hashing (balance/hash.ts). What is re-stated here
// is the wiring around them that in vigil runs on timers and sockets (PeerHealth's ok → ejected → trial →
// probing, the stall watch's first suspicion, the checker's recheck), kept to the same rules; ASSUMPTIONS says
// where the model is coarser.
import FlatQueue from 'flatqueue'
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus'
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64'
import { ms } from '../../src/config/duration.js'
import { hashString } from '../../src/balance/hash.js'
import { checkDelay, skipCheck } from '../../src/health/active.js'
import { resolveCheck, checkCovers, type CheckSpec } from '../../src/health/check-spec.js'
import { ejectionAllowance } from '../../src/health/cap.js'
import { EJECT_JITTER, STALL_TRIAL_MAX, STALL_TRIAL_WAIT } from '../../src/health/ejection.js'
import { ejectTimeOf, PASSIVE_DEFAULTS } from '../../src/health/passive.js'
import { probeDelay, recoveryKind } from '../../src/health/recovery.js'
import { RiseFall } from '../../src/health/rise-fall.js'
import { classifyError, failureClass, FailureSet, httpFailure, type Failure } from '../../src/health/outcome.js'
import type { Detector } from '../../src/health/eject/detector.js'
import { NginxDetector } from '../../src/health/eject/nginx.js'
import { ConsecutiveDetector } from '../../src/health/eject/consecutive.js'
import { WindowDetector } from '../../src/health/eject/window.js'
import { SubsetAssignment } from '../../src/upstream/subset.js'
import { decide } from './quorum-stub.js'
import { needOf, quorumOf, worthWriting, writeMargin, type LocalTraffic } from '../../src/fleet/quorum.js'
import { checkMajority } from '../../src/fleet/share-checks.js'
import { providerFault, registryOutage, type Fault, type SimParams, type Strategy } from './model.js'

export interface RunResult {
  fault: Fault
  strategy: string
  consumers: number
  providers: number
  /** Consumers that use the faulty provider (all of them without subsetting). */
  watchers: number
  /** Mean probes per second a healthy provider receives over the run (checks; the registry fault includes fallbacks). */
  probesPerProvider: number
  /** Probes per second the faulty provider received during the fault: checks plus recovery probes. */
  probesFaulty: number
  /** Requests the fault failed or stalled, fleet-wide (attempts, before any retry). */
  failed: number
  /** Requests sent to the faulty provider during the fault. */
  sentToFaulty: number
  /** Consumers the fault concerns (that see it) and how many took the provider out; detection ms from the fault. */
  affected: number
  detected: number
  detectP50: number | null
  detectP99: number | null
  /** A healthy provider taken out by a consumer (noise ejections; the partitioned one by the consumers that reach it). */
  falseEjections: number
  /** Ejections decided on shared evidence (quorum or checkers' results) rather than a consumer's own. */
  sharedDecisions: number
  /** Times the cap kept a server in. */
  capped: number
  registryWrites: number
  /** Writes of P0's observers skipped because enough others already reported the failure (src/fleet/quorum.ts worthWriting). */
  suppressedWrites: number
  /** Most registry writes in one second. */
  writesPeak: number
  events: number
  wallMs: number
}

// Event kinds, packed below the index: id = index × 16 + kind.
const REQ = 0
const REQ_TIMEOUT = 1
const TRIAL_TIMEOUT = 2
const STALL = 3
const CHECK = 4
const CHECK_DONE = 5
const EJECT_END = 6
const RECOVERY = 7
const WRITE = 8
const QUORUM = 9
const NOISE = 10
const BYSTANDER_END = 11
const OUTAGE_START = 12
const OUTAGE_END = 13
const REFRESH = 14
const TICK = 15

// Passive states of one consumer's view of P0 (PeerHealth.state).
const OK = 0
const EJECTED = 1
const TRIAL = 2
const PROBING = 3

const REFUSED = classifyError({ code: 'ECONNREFUSED' })
const CONNECT_TIMEOUT = classifyError({ code: 'UND_ERR_CONNECT_TIMEOUT' })
const RESPONSE_TIMEOUT = classifyError({ code: 'UND_ERR_HEADERS_TIMEOUT' })
const RESET = classifyError({ code: 'ECONNRESET' })
const HTTP_503 = httpFailure(503)
/** The failure the observers report, which an ejection on the fleet's word carries (it picks the recovery probe). */
const REPORTED: Record<Fault, Failure> = { kill: REFUSED, freeze: RESPONSE_TIMEOUT, partition: CONNECT_TIMEOUT, degrade: HTTP_503, registry: RESET, 'registry+kill': REFUSED }

/** Time a refused connect, a 503 or a passing check takes, ms. */
const FAST = 1

/**
 * A stable 32-bit seed per (seed, fault, stream). Not per strategy: every strategy of a fault draws the same
 * numbers for the same consumer (common random numbers), so strategies differ by their rules, not their luck.
 */
function streamSeed(seed: number, fault: Fault, stream: string | number): number {
  return (hashString(`${seed} ${fault} ${stream}`) ^ seed) | 0
}

type Draw = () => number
function stream(seed: number, fault: Fault, name: string | number): Draw {
  const g = xoroshiro128plus(streamSeed(seed, fault, name))
  return () => uniformFloat64(g)
}
/** An exponential wait (ms) at `rate` per ms. */
const exp = (draw: Draw, rate: number): number => (rate <= 0 ? Infinity : -Math.log(1 - draw()) / rate)

/** The detector vigil builds for the mode (health/passive.ts); the sim supports the counting modes. */
function detectorFor(mode: string, maxFails: number, failTimeout: number): Detector {
  switch (mode) {
    case 'nginx':
      return new NginxDetector(maxFails, failTimeout)
    case 'consecutive':
      return new ConsecutiveDetector(maxFails)
    case 'window':
      return new WindowDetector(maxFails, failTimeout)
    default:
      throw new Error(`sim: passive mode "${mode}" is not modelled (nginx, consecutive, window are)`)
  }
}

/** The `k` consumers (indexes into `candidates`) that check `server`: highest rendezvous score first. */
export function checkersOf(server: string, candidates: readonly number[], k: number): number[] {
  const scored = candidates.map((c, i) => ({ i, s: hashString(`${c}|${server}`) }))
  scored.sort((a, b) => b.s - a.s || a.i - b.i)
  return scored.slice(0, k).map((x) => x.i)
}

/** Fenwick tree over 100 ms buckets: failing observations in the registry by the time they were made. */
class TimeCounts {
  private readonly tree: Int32Array
  constructor(
    private readonly bucket: number,
    span: number,
  ) {
    this.tree = new Int32Array(Math.ceil(span / bucket) + 2)
  }
  private index(t: number): number {
    return Math.min(this.tree.length - 1, Math.max(1, Math.floor(t / this.bucket) + 1))
  }
  add(t: number, d: number): void {
    for (let i = this.index(t); i < this.tree.length; i += i & -i) this.tree[i] = (this.tree[i] as number) + d
  }
  /** Observations made at or before t. */
  upTo(t: number): number {
    let n = 0
    for (let i = this.index(t); i > 0; i -= i & -i) n += this.tree[i] as number
    return n
  }
}

interface Bystander {
  detector: Detector
  /** Time of the previous failure on this pair. */
  last: number
  outUntil: number
}

const providerNames = (m: number): string[] => Array.from({ length: m }, (_, i) => `10.0.${i >> 8}.${i & 255}:8080`)

const subsetCache = new Map<string, Int32Array>()
/** Every consumer's subset (provider indexes, `size` per consumer), computed once per fleet shape. */
function subsets(n: number, m: number, size: number): Int32Array {
  const key = `${n} ${m} ${size}`
  const known = subsetCache.get(key)
  if (known !== undefined) return known
  const names = providerNames(m)
  const index = new Map(names.map((name, i) => [name, i]))
  const views = new Int32Array(n * size)
  // Consumers named by their indexes, as `subset.id` / `subset.of` set by hand name them.
  const assignment = new SubsetAssignment(names, Array.from({ length: n }, (_, c) => String(c)), size)
  for (let c = 0; c < n; c++) assignment.subset(String(c)).forEach((name, j) => (views[c * size + j] = index.get(name) as number))
  subsetCache.set(key, views)
  return views
}

/**
 * What consumer 0 did with each request it had for P0, for checking the model's passive state machine against
 * vigil's PeerHealth (test/fleet-sim.test.ts replays it): sent or not, as the trial request or not, and the outcome
 * (a failure's code; undefined for a success or a hang).
 */
export type RequestTrace = (t: number, sent: boolean, trial: boolean, failure: Failure | undefined) => void

export function simulate(p: SimParams, fault: Fault, strategy: Strategy, trace?: RequestTrace): RunResult {
  const wallStart = performance.now()
  // One stream per consumer of P0 (its requests, checks, probes), one for registry writes, one for noise elsewhere.
  const sharing = stream(p.seed, fault, 'sharing')
  const noiseDraw = stream(p.seed, fault, 'noise')

  const spec: CheckSpec = resolveCheck(strategy.trafficAware ? { ...p.active, trafficInterval: p.trafficInterval } : p.active, undefined)
  const passive = p.passive
  const mode = passive.mode ?? PASSIVE_DEFAULTS.mode
  const maxFails = passive.maxFails ?? PASSIVE_DEFAULTS.maxFails
  const failTimeout = ms(passive.failTimeout ?? PASSIVE_DEFAULTS.failTimeout)
  const ejectTime = ejectTimeOf(passive)
  const maxEjectTime = Math.max(ejectTime, ms(passive.maxEjectTime ?? (mode === 'nginx' ? ejectTime : PASSIVE_DEFAULTS.maxEjectTime)))
  const maxEjectPercent = passive.maxEjectPercent ?? PASSIVE_DEFAULTS.maxEjectPercent
  const atLeastOne = passive.ejectAtLeastOne ?? false
  const failOn = new FailureSet(passive.failOn ?? PASSIVE_DEFAULTS.failOn, true)
  const stallOn = passive.stall?.enabled !== false
  const stallFloor = ms(passive.stall?.floor ?? PASSIVE_DEFAULTS.stallFloor)
  const recoveryOn = passive.recoveryProbe !== false && (typeof passive.recoveryProbe !== 'object' || passive.recoveryProbe.enabled !== false)
  const recoverySettings = { interval: spec.fastInterval, maxInterval: spec.fastInterval }
  const rules = p.fleet
  const T = p.duration
  const N = p.consumers
  const M = p.providers

  // Who uses what. Without subsetting every consumer uses every provider.
  const names = providerNames(M)
  const size = strategy.subset ? Math.min(p.subsetSize, M) : M
  const views = strategy.subset ? subsets(N, M, size) : undefined
  // The faulty provider: consumer 0's first (with subsets: its subset's first).
  const P0 = views === undefined ? 0 : (views[0] as number)
  const watcherList: number[] = []
  for (let c = 0; c < N; c++) {
    if (views === undefined) watcherList.push(c)
    else for (let j = 0; j < size; j++) if (views[c * size + j] === P0) watcherList.push(c)
  }
  const W = watcherList.length
  const draws: Draw[] = watcherList.map((c) => stream(p.seed, fault, c))
  const cons = Int32Array.from(watcherList)
  const checkerSet = strategy.shareChecks ? checkersOf(names[P0] as string, watcherList, rules.checkers) : []
  // The partitioned consumer: the worst case for the strategy, one of P0's checkers when checks are shared.
  const victim = strategy.shareChecks ? (checkerSet[0] as number) : 0
  // vigil's default quorum is 10% of the consumers that use the server (under subsetting, those whose subset holds it).
  const quorum = quorumOf(rules.quorum, W)
  // A strict majority of the k checkers (src/fleet/share-checks.ts); k = 1's local corroboration is not modelled.
  const checkersNeeded = checkMajority(rules.checkers)

  const provider = providerFault(fault)
  const faultyFor = (i: number): boolean => provider === 'kill' || provider === 'freeze' || provider === 'degrade' || (provider === 'partition' && i === victim)
  const outageEnd = registryOutage(fault) ? p.outage : -Infinity
  let registryDown = false

  // Per-watcher state: consumer cons[i]'s view of P0.
  const lambda = new Float64Array(W).fill(p.rate / size)
  const weight = new Float64Array(W).fill(1)
  const pstate = new Uint8Array(W)
  const suspect = new Uint8Array(W)
  const stallAt = new Float64Array(W).fill(NaN)
  /** While suspect with nothing waiting: when the next stall trial may go, and how many went (they back off). */
  const stallTrialAt = new Float64Array(W).fill(Infinity)
  const stallTrials = new Int32Array(W)
  const mult = new Float64Array(W)
  const restoredAt = new Float64Array(W).fill(-1e9)
  const ejectedUntil = new Float64Array(W).fill(NaN)
  const recoveryAt = new Float64Array(W).fill(NaN)
  const recoveryFailing = new Uint8Array(W)
  const recoveryProbes = new Int32Array(W)
  const ejectFailure: (Failure | undefined)[] = new Array<Failure | undefined>(W).fill(undefined)
  const detectors: Detector[] = Array.from({ length: W }, () => detectorFor(mode, maxFails, failTimeout))
  const checks = new Uint8Array(W)
  const riseFall: RiseFall[] = []
  const checkAt = new Float64Array(W).fill(NaN)
  const checkRunning = new Uint8Array(W)
  const checkOk = new Uint8Array(W)
  const checkStart = new Float64Array(W)
  /** The due check is a recheck (a counted failure asked for it): it runs whatever skipCheck says. */
  const forced = new Uint8Array(W)
  const lastRecheck = new Float64Array(W).fill(-Infinity)
  const sharedDown = new Uint8Array(W)
  const lastSuccess = new Float64Array(W)
  const lastRequest = new Float64Array(W)
  const eligible = new Uint8Array(W).fill(1)
  const outFlag = new Uint8Array(W)
  const detectedAt = new Float64Array(W).fill(NaN)
  // Registry: what each watcher published about P0 (failing: ejected on its own evidence or down by check;
  // checkDown: down by its check), when, and whether a write is waiting.
  const published = new Uint8Array(W)
  const publishedDown = new Uint8Array(W)
  const publishedAt = new Float64Array(W)
  const pending = new Uint8Array(W)
  const observations = new TimeCounts(100, T + 2 * rules.window)
  // The same failing reports by the time their failure began (the first write of the streak): for "began after".
  const failingSince = new TimeCounts(100, T + 2 * rules.window)
  const publishedSince = new Float64Array(W)
  // What the watchers see of the registry: each write becomes visible watchDelay later (its QUORUM event), the
  // record it replaced goes at the same moment; by the time each visible report was made.
  const visible = new TimeCounts(100, T + 2 * rules.window)
  const visibleFailing = new Uint8Array(W)
  const visibleAt = new Float64Array(W)
  /** A failing state it held back (enough others said it): written when they are too few and it still sees it. */
  const held = new Uint8Array(W)
  const heldList: number[] = []
  /** When its next restatement is due (a REFRESH event at another time is a stale one). */
  const refreshAt = new Float64Array(W).fill(NaN)
  const fleetEjected = new Uint8Array(W)
  const lastFailure = new Float64Array(W).fill(-Infinity)
  let quorumOn = false
  let checkersOn = false
  /** While anything is reported, the watchers look again each second: reports age out without a write. */
  let ticking = false
  /** Providers each consumer holds out on passive or shared evidence, for the cap. */
  const consumerOut = new Int32Array(N)
  const isChecker = new Uint8Array(W)
  for (const i of checkerSet) isChecker[i] = 1

  let failed = 0
  let sentToFaulty = 0
  let falseEjections = 0
  let sharedDecisions = 0
  let capped = 0
  let probesFaulty = 0
  let registryWrites = 0
  let suppressedWrites = 0
  const writesPerSecond = new Int32Array(Math.ceil(T / 1000) + 1)
  let events = 0

  const q = new FlatQueue<number>()
  const push = (t: number, i: number, kind: number): void => {
    if (t <= T) q.push(i * 16 + kind, t)
  }

  const mayTakeOut = (c: number): boolean => consumerOut[c]! + 1 <= ejectionAllowance(size, maxEjectPercent, atLeastOne)

  /** Down by check: its own check, or (shared checks) its checkers' published verdict. */
  const checkUpOf = (i: number): boolean => (checks[i] === 1 ? !(riseFall[i] as RiseFall).down : sharedDown[i] === 0)

  /** Recompute the gates after any change: eligibility (detection / false ejection) and "out" for the cap. */
  const update = (i: number, t: number): void => {
    const out = suspect[i] === 1 || pstate[i] === EJECTED || pstate[i] === PROBING ? 1 : 0
    if (out !== outFlag[i]) {
      outFlag[i] = out
      consumerOut[cons[i] as number]! += out === 1 ? 1 : -1
    }
    const now = checkUpOf(i) && (pstate[i] === OK || pstate[i] === TRIAL) && suspect[i] === 0 ? 1 : 0
    if (now === eligible[i]) return
    eligible[i] = now
    if (now === 1) return
    if (!faultyFor(i)) falseEjections++
    else if (Number.isNaN(detectedAt[i])) detectedAt[i] = t
  }

  /** A transition to write: after writeJitter (deferred while the registry is down); the write takes the state then. */
  const publish = (i: number, t: number): void => {
    if (!strategy.shareObservations || pending[i] === 1) return
    pending[i] = 1
    push((registryDown ? outageEnd : t) + sharing() * rules.writeJitter, i, WRITE)
  }

  /** Registry writes that nothing in the model reads (noise ejections of bystanders): counted, deferred while it is down. */
  const countWrite = (t: number): void => {
    const at = (t < outageEnd ? outageEnd : t) + sharing() * rules.writeJitter
    if (at > T) return
    registryWrites++
    writesPerSecond[Math.floor(at / 1000)]!++
  }

  const checkDown = (i: number): boolean => checks[i] === 1 && (riseFall[i] as RiseFall).down
  /** What this consumer reports: its own evidence only (a fleet ejection is not written again: no echo). */
  const failing = (i: number): boolean => (pstate[i] !== OK && fleetEjected[i] === 0) || checkDown(i)

  const restore = (i: number, t: number): void => {
    if (pstate[i] === OK) return
    pstate[i] = OK
    restoredAt[i] = t
    ejectedUntil[i] = NaN
    recoveryAt[i] = NaN
    ;(detectors[i] as Detector).reset()
    fleetEjected[i] = 0
    update(i, t)
    publish(i, t)
  }

  const decayed = (i: number, t: number): number => (mult[i] === 0 ? 0 : Math.max(0, mult[i]! - Math.floor((t - restoredAt[i]!) / ejectTime)))

  const eject = (i: number, t: number, failure: Failure, shared: boolean): void => {
    if (pstate[i] === EJECTED) return
    const c = cons[i] as number
    if (pstate[i] === OK && outFlag[i] === 0 && !mayTakeOut(c)) {
      capped++
      return
    }
    const previous = pstate[i] === OK ? decayed(i, t) : mult[i]!
    const base = Math.min(ejectTime * (previous + 1), maxEjectTime)
    const duration = maxEjectTime > ejectTime ? Math.round(base * (1 + (draws[i] as Draw)() * EJECT_JITTER)) : base
    if (pstate[i] === OK) mult[i] = decayed(i, t)
    mult[i]!++
    pstate[i] = EJECTED
    ejectedUntil[i] = t + duration
    ejectFailure[i] = failure
    push(t + duration, i, EJECT_END)
    // An ejection on its own evidence (a failed trial after a fleet ejection) is its own again, and is written.
    fleetEjected[i] = shared ? 1 : 0
    if (shared) sharedDecisions++
    // A recovery probe for connection-level evidence: the group's check at its fast interval, the first at once.
    recoveryFailing[i] = 0
    recoveryAt[i] = NaN
    if (recoveryOn && recoveryKind(failure, spec) !== undefined) {
      recoveryFailing[i] = 1
      recoveryProbes[i] = 0
      recoveryAt[i] = t
      push(t, i, RECOVERY)
    }
    update(i, t)
    publish(i, t)
  }

  /** A check outcome for P0 from consumer i: [passes, ms it takes]. */
  const probe = (i: number): [boolean, number] => {
    if (!faultyFor(i)) return [true, FAST]
    switch (provider) {
      case 'kill':
        return [false, FAST]
      case 'degrade':
        return [(draws[i] as Draw)() >= p.degradeErrors, FAST]
      default:
        return [false, spec.timeout]
    }
  }

  const scheduleCheck = (i: number, t: number): void => {
    checkAt[i] = t
    push(t, i, CHECK)
  }

  /** HAProxy's observe: a counted failure asks for a check now, at most once per fastInterval. */
  const recheck = (i: number, t: number): void => {
    if (checks[i] === 0 || checkRunning[i] === 1 || t - lastRecheck[i]! < spec.fastInterval) return
    lastRecheck[i] = t
    forced[i] = 1
    scheduleCheck(i, t)
  }

  const record = (i: number, failure: Failure | undefined, trial: boolean, t: number): void => {
    const counted = failure !== undefined && failOn.has(failure) ? failure : undefined
    if (counted !== undefined) lastFailure[i] = t
    if (trial) {
      if (pstate[i] !== PROBING) return
      if (counted !== undefined) eject(i, t, counted, false)
      else restore(i, t)
    } else if (pstate[i] === OK && (detectors[i] as Detector).record(counted !== undefined, t)) {
      eject(i, t, counted as Failure, false)
    }
    if (counted !== undefined) recheck(i, t)
    // Its own evidence changed while the fleet reports the server failing: decide again.
    if (quorumOn) decideFor(i, t)
  }

  /** It answered: a real request (`real`: its last success, for traffic-aware checks and the fleet rule) or a check. */
  const answered = (i: number, t: number, real: boolean): void => {
    if (real) lastSuccess[i] = t
    if (suspect[i] === 0) return
    suspect[i] = 0
    stallTrials[i] = 0
    stallTrialAt[i] = Infinity
    update(i, t)
  }

  /** Failing reports about P0 made within the window, as every watcher sees them at t. */
  const reporters = (t: number): number => observations.upTo(t) - observations.upTo(t - rules.window - 1e-9)
  const reportsItself = (i: number, t: number): boolean => published[i] === 1 && t - publishedAt[i]! <= rules.window
  /** Failing reports within window that watcher i sees at t, its own left out. */
  const visibleOthers = (i: number, t: number): number =>
    visible.upTo(t) - visible.upTo(t - rules.window - 1e-9) - (visibleFailing[i] === 1 && t - visibleAt[i]! <= rules.window ? 1 : 0)
  /** vigil's Need for watcher i's record: a checker's is a check report; otherwise enough or more, as it sees others. */
  const needFor = (i: number, t: number): 'report' | 'enough' | 'more' => (strategy.shareChecks && isChecker[i] === 1 ? 'report' : needOf(visibleOthers(i, t), quorum))
  /** A write became visible to every watcher: its report replaces the one that watcher's earlier write left. */
  const show = (i: number): void => {
    if (visibleFailing[i] === 1) visible.add(visibleAt[i] as number, -1)
    visibleFailing[i] = published[i] as number
    visibleAt[i] = publishedAt[i] as number
    if (visibleFailing[i] === 1) visible.add(visibleAt[i] as number, 1)
  }
  /** Held-back failures whose observers may now be too few: written (after the jitter, and asked again then). */
  const reconsider = (t: number): void => {
    if (heldList.length === 0 || visible.upTo(t) - visible.upTo(t - rules.window - 1e-9) - 1 >= quorum + writeMargin(quorum)) return
    let k = 0
    for (const i of heldList) {
      if (held[i] === 0) continue
      if (!failing(i)) {
        held[i] = 0
        continue
      }
      heldList[k++] = i
      if (pending[i] === 0 && needFor(i, t) !== 'enough') publish(i, t)
    }
    heldList.length = k
  }

  /** docs/fleet.md's rule for consumer i at quorum: ignore (own recent success), eject (no own traffic), or suspect. */
  const decideFor = (i: number, t: number): void => {
    const itself = reportsItself(i, t)
    const others = reporters(t) - (itself ? 1 : 0)
    const success = lastSuccess[i] as number
    const after = failingSince.upTo(t) - (success < 0 ? 0 : failingSince.upTo(success)) - (itself && (publishedSince[i] as number) > success ? 1 : 0)
    const local: LocalTraffic = { lastAttempt: lastRequest[i] as number, lastSuccess: success, lastFailure: lastFailure[i] as number }
    const decision = decide(others, Math.min(others, after), quorum, local, t, rules.localWindow)
    if (decision === 'eject' && (pstate[i] === OK || pstate[i] === TRIAL)) eject(i, t, REPORTED[fault], true)
    else if (decision === 'suspect' && weight[i] === 1) {
      weight[i] = rules.suspectWeight
      recheck(i, t)
    } else if (decision === 'ignored') weight[i] = 1
  }

  // A registry change became visible to every watcher (or a report may have aged out): the quorum and, with
  // shared checks, the checkers' verdict.
  const evaluate = (t: number): void => {
    const on = reporters(t) >= quorum
    if (on !== quorumOn) {
      quorumOn = on
      for (let i = 0; i < W; i++) {
        if (on) decideFor(i, t)
        else {
          // The quorum is gone: the suspicion ends, and so does an ejection taken on the fleet's word.
          weight[i] = 1
          if (fleetEjected[i] === 1) restore(i, t)
        }
      }
    }
    if (strategy.shareChecks) {
      let down = 0
      for (const i of checkerSet) if (publishedDown[i] === 1 && t - publishedAt[i]! <= rules.window) down++
      const verdict = down >= checkersNeeded
      if (verdict !== checkersOn) {
        checkersOn = verdict
        for (let i = 0; i < W; i++) {
          if (checks[i] === 1) continue
          sharedDown[i] = verdict ? 1 : 0
          if (verdict) sharedDecisions++
          update(i, t)
        }
      }
    }
  }

  // Bystanders: every (consumer, provider) pair but P0's, where only failures matter (see ASSUMPTIONS).
  const bystanders = new Map<number, Bystander>()
  const bystanderEnds: number[] = []
  const freeEnds: number[] = []
  const noiseRate = ((N * p.rate - W * (p.rate / size)) * p.noise) / 1000
  const pickBystander = (): [number, number] => {
    for (;;) {
      const c = Math.floor(noiseDraw() * N)
      const j = Math.floor(noiseDraw() * size)
      const server = views === undefined ? j : (views[c * size + j] as number)
      // P0's pairs are modelled request by request, their noise included.
      if (server !== P0) return [c, server]
    }
  }
  const noise = (t: number): void => {
    push(t + exp(noiseDraw, noiseRate), 0, NOISE)
    const [c, server] = pickBystander()
    const key = c * M + server
    let b = bystanders.get(key)
    if (b === undefined) bystanders.set(key, (b = { detector: detectorFor(mode, maxFails, failTimeout), last: -Infinity, outUntil: -Infinity }))
    if (t < b.outUntil) return // out of rotation: this request went elsewhere
    const rate = p.rate / size / 1000
    // The latest success before this failure is all a counting detector needs of the successes in between.
    const success = t - exp(noiseDraw, rate)
    if (success > b.last) b.detector.record(false, success)
    b.last = t
    if (!b.detector.record(true, t)) return
    if (!mayTakeOut(c)) {
      capped++
      return
    }
    // A reset is connection-level evidence: the recovery check passes at once and the next request is the trial.
    falseEjections++
    b.detector.reset()
    b.outUntil = t + (recoveryOn ? FAST : ejectTime) + exp(noiseDraw, rate)
    consumerOut[c]!++
    const slot = freeEnds.pop() ?? bystanderEnds.length
    bystanderEnds[slot] = c
    push(b.outUntil, slot, BYSTANDER_END)
    if (strategy.shareObservations) {
      countWrite(t)
      countWrite(b.outUntil)
    }
  }

  // Start: steady state, every check passing, phases spread; each watcher's last success drawn backwards in time.
  for (let i = 0; i < W; i++) {
    const draw = draws[i] as Draw
    lastSuccess[i] = -exp(draw, lambda[i]! / 1000)
    lastRequest[i] = lastSuccess[i]!
    push(exp(draw, lambda[i]! / 1000), i, REQ)
    const own = !strategy.shareChecks || isChecker[i] === 1
    checks[i] = own ? 1 : 0
    const rf = new RiseFall(spec.rise, spec.fall, false)
    rf.checked = true
    riseFall.push(rf)
    // Before the fault: checks due every interval, phases spread; traffic-aware, the last one ran within trafficInterval.
    const phase = draw() * spec.interval
    const last = draw()
    checkStart[i] = spec.trafficInterval === undefined ? phase - spec.interval : -last * spec.trafficInterval
    if (own) scheduleCheck(i, phase)
  }
  if (noiseRate > 0) push(exp(noiseDraw, noiseRate), 0, NOISE)
  if (registryOutage(fault)) {
    push(0, 0, OUTAGE_START)
    push(p.outage, 0, OUTAGE_END)
  }

  while (q.length > 0) {
    const t = q.peekValue() as number
    const id = q.pop() as number
    const kind = id & 15
    const i = (id - kind) / 16
    events++
    switch (kind) {
      case REQ: {
        push(t + exp(draws[i] as Draw, (lambda[i]! * weight[i]!) / 1000), i, REQ)
        // A suspect server (nothing else keeping it out) lets one request through once its quiet time is over.
        const stallTrial = eligible[i] === 0 && suspect[i] === 1 && t >= stallTrialAt[i]! && (pstate[i] === OK || pstate[i] === TRIAL) && checkUpOf(i)
        if (eligible[i] === 0 && !stallTrial) {
          if (i === 0) trace?.(t, false, false, undefined)
          break
        }
        if (stallTrial) {
          stallTrials[i]!++
          stallTrialAt[i] = Infinity
        }
        const trial = pstate[i] === TRIAL
        if (trial) {
          pstate[i] = PROBING
          update(i, t)
        }
        lastRequest[i] = t
        const faulty = faultyFor(i)
        if (faulty) sentToFaulty++
        if (faulty && (provider === 'freeze' || provider === 'partition')) {
          // It hangs: a timeout later (connect or response), and a stall suspicion once it waited stallFloor.
          failed++
          push(t + (provider === 'freeze' ? p.timeouts.response : p.timeouts.connect), i, trial ? TRIAL_TIMEOUT : REQ_TIMEOUT)
          if (stallOn && Number.isNaN(stallAt[i])) {
            stallAt[i] = t + stallFloor
            push(t + stallFloor, i, STALL)
          }
          break
        }
        const d = (draws[i] as Draw)()
        const failure = faulty ? (provider === 'kill' ? REFUSED : d < p.degradeErrors ? HTTP_503 : undefined) : d < p.noise ? RESET : undefined
        if (faulty && failure !== undefined) failed++
        if (i === 0) trace?.(t, true, trial, failure)
        if (failure === undefined) answered(i, t, true)
        record(i, failure, trial, t)
        break
      }
      case REQ_TIMEOUT:
      case TRIAL_TIMEOUT:
        record(i, provider === 'freeze' ? RESPONSE_TIMEOUT : CONNECT_TIMEOUT, kind === TRIAL_TIMEOUT, t)
        break
      case STALL:
        stallAt[i] = NaN
        if (lastSuccess[i]! > t - stallFloor) break
        if (suspect[i] === 1) {
          // Its requests were raced elsewhere: quiet again, the next stall trial after a wait that doubles.
          stallTrialAt[i] = t + Math.min(STALL_TRIAL_WAIT * 2 ** stallTrials[i]!, STALL_TRIAL_MAX)
          break
        }
        if (outFlag[i] === 0 && !mayTakeOut(cons[i] as number)) {
          capped++
          break
        }
        suspect[i] = 1
        stallTrialAt[i] = t + STALL_TRIAL_WAIT
        update(i, t)
        break
      case CHECK: {
        if (checkAt[i] !== t || checks[i] === 0) break
        checkAt[i] = NaN
        // vigil's skipCheck: an up, settled server that answered real requests within trafficInterval waits.
        const skip = forced[i] === 1 ? undefined : skipCheck(spec, riseFall[i] as RiseFall, false, lastSuccess[i] as number, checkStart[i] as number, t)
        forced[i] = 0
        if (skip !== undefined) {
          const next = checkDelay(spec, riseFall[i] as RiseFall, false, (draws[i] as Draw)())
          // A timer fires at least 1 ms later (setTimeout): without that, float rounding could skip forever.
          scheduleCheck(i, t + Math.max(1, Math.min(next, checkStart[i]! + (spec.trafficInterval as number) - t)))
          break
        }
        checkRunning[i] = 1
        checkStart[i] = t
        probesFaulty++
        const [ok, latency] = probe(i)
        checkOk[i] = ok ? 1 : 0
        push(t + latency, i, CHECK_DONE)
        break
      }
      case CHECK_DONE: {
        checkRunning[i] = 0
        const rf = riseFall[i] as RiseFall
        const ok = checkOk[i] === 1
        const flipped = rf.record(ok)
        if (flipped !== undefined) {
          update(i, t)
          publish(i, t)
        }
        if (ok) {
          // A passing HTTP check answers: it ends a stall suspicion and lifts an ejection it disproves.
          if (checkCovers(spec, 'timeout')) answered(i, t, false)
          const f = ejectFailure[i]
          if (spec.unejectOnPass && pstate[i] !== OK && f !== undefined && checkCovers(spec, failureClass(f))) restore(i, t)
        }
        const latency = t - checkStart[i]!
        scheduleCheck(i, t + Math.max(0, checkDelay(spec, rf, false, (draws[i] as Draw)()) - latency))
        break
      }
      case EJECT_END:
        // The ejection time is over: one trial request, unless a recovery probe still finds the server down.
        if (pstate[i] !== EJECTED || ejectedUntil[i] !== t || recoveryFailing[i] === 1) break
        pstate[i] = TRIAL
        update(i, t)
        break
      case RECOVERY: {
        if (recoveryAt[i] !== t || pstate[i] !== EJECTED) break
        probesFaulty++
        recoveryProbes[i]!++
        const [ok, latency] = probe(i)
        if (ok) {
          // nginx mode: the trial request is due at once; the other modes restore.
          recoveryFailing[i] = 0
          recoveryAt[i] = NaN
          if (mode === 'nginx') {
            ejectedUntil[i] = NaN
            pstate[i] = TRIAL
            update(i, t)
          } else restore(i, t)
        } else {
          recoveryAt[i] = t + latency + probeDelay(recoveryProbes[i] as number, recoverySettings, (draws[i] as Draw)())
          push(recoveryAt[i] as number, i, RECOVERY)
        }
        break
      }
      case WRITE: {
        if (registryDown) {
          push(outageEnd + sharing() * rules.writeJitter, i, WRITE)
          break
        }
        pending[i] = 0
        const now = failing(i) ? 1 : 0
        // A newer state replaced an unwritten older one and equals what is published: nothing to write.
        const refresh = now === 1 && published[i] === 1 && t - publishedAt[i]! >= rules.window - rules.writeJitter
        const wasHeld = held[i] === 1
        if (now === 0) held[i] = 0
        if (now === published[i] && !refresh && !(now === 1 && wasHeld)) {
          // An end of a failure it never wrote: nothing to take back (vigil counts it as suppressed).
          if (now === 0 && wasHeld) suppressedWrites++
          break
        }
        // Enough has been said (src/fleet/quorum.ts worthWriting): asked when the write's turn comes, as vigil's writer does.
        if (!worthWriting(now === 1, published[i] === 1, needFor(i, t))) {
          suppressedWrites++
          if (now === 1) {
            if (held[i] === 0) heldList.push(i)
            held[i] = 1
            // Its restatement is due a window later, under the same rule.
            refreshAt[i] = t + rules.window - rules.writeJitter
            push(refreshAt[i] as number, i, REFRESH)
          }
          break
        }
        held[i] = 0
        registryWrites++
        writesPerSecond[Math.floor(t / 1000)]!++
        if (published[i] === 1) observations.add(publishedAt[i] as number, -1)
        if (published[i] === 1 && now === 0) failingSince.add(publishedSince[i] as number, -1)
        if (published[i] === 0 && now === 1) failingSince.add((publishedSince[i] = t), 1)
        published[i] = now
        publishedDown[i] = checkDown(i) ? 1 : 0
        publishedAt[i] = t
        if (now === 1) {
          observations.add(t, 1)
          // An observer that still sees the failure says it again every window.
          refreshAt[i] = t + rules.window - rules.writeJitter
          push(refreshAt[i] as number, i, REFRESH)
        }
        push(t + rules.watchDelay, i, QUORUM)
        if (!ticking) {
          ticking = true
          push(t + 1_000, 0, TICK)
        }
        break
      }
      case REFRESH:
        if (refreshAt[i] !== t) break
        if ((published[i] === 1 || held[i] === 1) && failing(i)) publish(i, t)
        break
      case QUORUM:
        show(i)
        evaluate(t)
        reconsider(t)
        break
      case TICK:
        evaluate(t)
        reconsider(t)
        ticking = quorumOn || checkersOn || reporters(t) > 0
        if (ticking) push(t + 1_000, 0, TICK)
        break
      case NOISE:
        noise(t)
        break
      case BYSTANDER_END:
        consumerOut[bystanderEnds[i] as number]!--
        freeEnds.push(i)
        break
      case OUTAGE_START:
        registryDown = true
        break
      case OUTAGE_END:
        registryDown = false
        break
    }
  }

  const affected: number[] = []
  for (let i = 0; i < W; i++) if (faultyFor(i)) affected.push(i)
  const times = affected.map((i) => detectedAt[i] as number).filter((d) => !Number.isNaN(d))
  const quantileOf = (qq: number): number | null => {
    if (affected.length === 0) return null
    // Consumers that never took it out count as never (Infinity): p99 is "never" when more than 1% did not.
    const all = affected.map((i) => (Number.isNaN(detectedAt[i]) ? Infinity : (detectedAt[i] as number))).sort((a, b) => a - b)
    const v = all[Math.min(all.length - 1, Math.max(0, Math.ceil(qq * all.length) - 1))] as number
    return Number.isFinite(v) ? v : null
  }

  return {
    fault,
    strategy: strategy.name,
    consumers: N,
    providers: M,
    watchers: W,
    probesPerProvider: healthyProbeRate(p, strategy, size),
    probesFaulty: (probesFaulty * 1000) / T,
    failed,
    sentToFaulty,
    affected: affected.length,
    detected: times.length,
    detectP50: quantileOf(0.5),
    detectP99: quantileOf(0.99),
    falseEjections,
    sharedDecisions,
    capped,
    registryWrites,
    suppressedWrites,
    writesPeak: Math.max(0, ...writesPerSecond),
    events,
    wallMs: Math.round(performance.now() - wallStart),
  }
}

/**
 * Probes per second a healthy provider receives, averaged over providers and the run: its consumers' steady
 * checks (every check passes, so nothing changes state). Traffic-aware: a consumer whose pair sees a request
 * within trafficInterval with probability π waits trafficInterval, else interval (a renewal average).
 * Shared checks: its `checkers` only (with the registry away they keep checking and the others keep the last
 * state they read, docs/fleet.md).
 */
export function healthyProbeRate(p: SimParams, s: Strategy, size: number): number {
  const spec = resolveCheck(p.active, undefined)
  const consumersPer = (p.consumers * size) / p.providers
  const pairRate = p.rate / size / 1000
  const seen = 1 - Math.exp(-pairRate * p.trafficInterval)
  const period = s.trafficAware ? seen * p.trafficInterval + (1 - seen) * spec.interval : spec.interval
  return (s.shareChecks ? Math.min(p.fleet.checkers, consumersPer) : consumersPer) * (1000 / period)
}
