// The primary's side of the workers' health view: every gate change of a live group (a check, an ejection, a trial
// due, an operator action, a reload) marks the state dirty; the flush runs as soon as the code that decided returns
// (a microtask: the changes of one decision are one version, and nothing else the loop has queued, I/O or timers,
// runs before it is sent) and sends what changed since the last version, as the next version, to every worker. A
// full snapshot goes every SNAPSHOT_INTERVAL and to any worker that asks (it missed a version) or joins. Each
// worker acknowledges the versions it applied (a snapshot covers every version up to its own); the time from the
// primary's decision until the last worker applied it is the propagation time, with the time to hand it to every
// channel (sent) and until the last worker's loop read it (received), so a slow one says where it waited.
// A server's trial request, once due, is granted to one worker (in turn), as one process sends one: nginx's peer
// state in a shared zone lets one worker through per fail_timeout. A grant not used within TRIAL_GRANT moves on
// to the next worker (that one may have no traffic); once the trial is sent the primary holds it for all. The
// stall trials of a suspect server (stall re-dispatch) are granted the same way, and move on every TRIAL_GRANT
// while it stays suspect: the primary cannot tell whether one was sent, and the next worker may have the traffic.
// Each group's p99 response time (over every worker's samples, stall.ts) goes the same way, as part of a version
// when it changed and in every snapshot, so every worker judges stalls by the proxy's yardstick. It is not a
// health decision: a version that carries only it is not measured as a propagation.
import type { Upstream } from '../upstream/upstream.js'
import type { Peer } from '../upstream/peer.js'
import type { StallWatch } from '../health/stall.js'
import { TRIAL_GRANT, wallNow, type Delta, type GroupLatency, type ServerState, type Snapshot } from './protocol.js'

const key = (upstream: string, address: string): string => `${upstream}\u0000${address}`

const encode = (s: ServerState): string => `${s[2] ? 1 : 0}${s[3]}${s[4] ? 1 : 0}${s[5]}${s[6]} ${s[7]}`

/** Versions kept waiting for their acknowledgements; older ones are dropped unmeasured. */
const PENDING_VERSIONS = 64

export interface Propagation {
  /** The version, and ms from the decision until the last worker applied it. */
  version: number
  ms: number
  /** ms from the decision until it was handed to every worker's channel, and until the last worker read it. */
  sent: number
  received: number
}

interface Pending {
  decided: number
  sent: number
  waiting: Set<number>
  received: number
  applied: number
}

export class StateStream {
  version = 0
  private readonly sent = new Map<string, string>()
  /** Per stall watch, the p99 last sent (a group whose passive settings changed has a new watch: its p99 goes). */
  private readonly sentLatency = new WeakMap<StallWatch, number>()
  private readonly watched = new WeakSet<Upstream['group']>()
  /** wallNow() of the first change not sent yet; 0 when none waits. */
  private dirtySince = 0
  private scheduled = false
  /** Versions sent and not yet applied by every worker (oldest first): when, and who still has to apply it. */
  private readonly pending = new Map<number, Pending>()
  /** Every propagation measured, the last and the slowest (ms). */
  measured = 0
  last: Propagation | undefined = undefined
  slowest: Propagation | undefined = undefined
  private readonly flushNow = (): void => this.flush()
  /** Per server in its trial: the worker granted it, and since when (performance.now()). */
  private readonly grants = new Map<string, { worker: number; since: number }>()
  private turn = 0

  constructor(
    private readonly upstreams: () => ReadonlyMap<string, Upstream>,
    /** Send a change to every serving worker; returns their ids (who must acknowledge it). */
    private readonly broadcast: (d: Delta) => number[],
    private readonly propagated: (p: Propagation) => void,
    /** The ids of the workers that serve, in a stable order (who may be granted a trial). */
    private readonly serving: () => readonly number[],
  ) {}

  /** Follow the gate changes of every live group (call after each generation: new groups join). */
  watch(): void {
    for (const u of this.upstreams().values()) {
      // A group's events outlive its generations: one listener per group.
      if (this.watched.has(u.group)) continue
      this.watched.add(u.group)
      u.on('change', () => this.dirty())
    }
    this.dirty()
  }

  dirty(): void {
    if (this.dirtySince === 0) this.dirtySince = wallNow()
    this.schedule()
  }

  /** New response times at the primary: a group's p99 may have moved (no health decision). */
  latencyChanged(): void {
    this.schedule()
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    queueMicrotask(this.flushNow)
  }

  /** The servers whose state changed since the last version, as the next version. */
  flush(): void {
    this.scheduled = false
    // A flush for new response times may find a server change no 'change' event announced (one that left the gates
    // as they were): it is measured from now.
    const decided = this.dirtySince === 0 ? wallNow() : this.dirtySince
    this.dirtySince = 0
    const changed: ServerState[] = []
    const live = new Set<string>()
    for (const u of this.upstreams().values()) {
      for (const p of u.peers) {
        const s = this.state(u, p)
        const k = key(u.name, p.address)
        live.add(k)
        const e = encode(s)
        if (this.sent.get(k) === e) continue
        this.sent.set(k, e)
        changed.push(s)
      }
    }
    for (const k of this.sent.keys()) if (!live.has(k)) this.sent.delete(k)
    for (const k of this.grants.keys()) if (!live.has(k)) this.grants.delete(k)
    const latency: GroupLatency[] = []
    for (const u of this.upstreams().values()) {
      const watch = u.passive.stall
      if (watch === undefined || watch.held === 0) continue
      const p99 = watch.ownP99()
      if (this.sentLatency.get(watch) === p99) continue
      this.sentLatency.set(watch, p99)
      latency.push([u.name, p99])
    }
    if (changed.length === 0 && latency.length === 0) return
    const d: Delta = { version: ++this.version, base: this.version - 1, decided, servers: changed, latency }
    const waiting = this.broadcast(d)
    if (waiting.length > 0 && changed.length > 0) this.pending.set(d.version, { decided, sent: wallNow(), waiting: new Set(waiting), received: 0, applied: 0 })
    if (this.pending.size > PENDING_VERSIONS) this.pending.delete(this.pending.keys().next().value as number)
  }

  /** The whole state at the current version. */
  snapshot(): Snapshot {
    const servers: ServerState[] = []
    for (const u of this.upstreams().values()) for (const p of u.peers) servers.push(this.state(u, p))
    return { version: this.version, servers, latency: this.latency() }
  }

  /** Every group's p99 (those with stall detection and samples: a worker judges by its own until there are some). */
  private latency(): GroupLatency[] {
    const out: GroupLatency[] = []
    for (const u of this.upstreams().values()) {
      const watch = u.passive.stall
      if (watch !== undefined && watch.held > 0) out.push([u.name, watch.ownP99()])
    }
    return out
  }

  /** The current state of one server (the verdict after a worker's report); undefined when it is not live. */
  stateOf(upstream: string, address: string): ServerState | undefined {
    const u = this.upstreams().get(upstream)
    const p = u?.find(address)
    return u === undefined || p === undefined ? undefined : this.state(u, p)
  }

  /** Grants older than TRIAL_GRANT, not used, move to the next worker (as the next version). */
  regrant(now: number): void {
    const ids = this.serving()
    if (ids.length < 2) return
    let moved = false
    for (const g of this.grants.values()) {
      if (now - g.since < TRIAL_GRANT) continue
      g.worker = ids[(ids.indexOf(g.worker) + 1) % ids.length] as number
      g.since = now
      moved = true
    }
    if (moved) this.dirty()
  }

  private state(u: Upstream, p: Peer): ServerState {
    const h = p.passive
    const passive = h?.state ?? 'ok'
    const suspect = h?.suspect ?? false
    const trials = passive === 'trial' || (suspect && u.passive.stall?.settings.redispatch === true)
    const trialWorker = trials ? this.grantee(key(u.name, p.address)) : this.ungrant(key(u.name, p.address))
    return [u.name, p.address, p.checkUp, passive, suspect, p.operator, trialWorker, p.weightShare]
  }

  /** The worker that may send the trial of server `k`: the one granted it while it serves, else the next in turn. */
  private grantee(k: string): number {
    const ids = this.serving()
    const g = this.grants.get(k)
    if (g !== undefined && ids.includes(g.worker)) return g.worker
    if (ids.length === 0) return 0
    const worker = ids[this.turn++ % ids.length] as number
    this.grants.set(k, { worker, since: performance.now() })
    return worker
  }

  private ungrant(k: string): 0 {
    this.grants.delete(k)
    return 0
  }

  /**
   * Worker `id` read a message at `received` and by `at` (both wallNow()) held `version`: versions apply in order,
   * and a snapshot holds every change before it, so that is every version up to it.
   */
  applied(id: number, version: number, received: number, at: number): void {
    for (const [v, p] of this.pending) {
      if (v > version) break
      if (!p.waiting.delete(id)) continue
      p.received = Math.max(p.received, received - p.decided)
      p.applied = Math.max(p.applied, at - p.decided)
      if (p.waiting.size === 0) this.settle(v, p)
    }
  }

  /** A worker left: no version waits for it any more. */
  left(id: number): void {
    for (const [version, v] of this.pending) if (v.waiting.delete(id) && v.waiting.size === 0) this.settle(version, v)
  }

  private settle(version: number, v: Pending): void {
    this.pending.delete(version)
    const p: Propagation = { version, ms: v.applied, sent: v.sent - v.decided, received: v.received }
    this.measured++
    this.last = p
    if (this.slowest === undefined || p.ms > this.slowest.ms) this.slowest = p
    this.propagated(p)
  }
}
