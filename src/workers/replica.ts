// A cluster worker's health view: a replica of the state its primary decided, by server, applied to the live
// peers' gates (check, passive, operator; a due trial, and a suspect server's stall trials, only in the worker
// they were granted to) and weights (the fleet's suspicion lowers one). Changes come versioned; one that does not
// follow the version held is not applied and the worker asks for a snapshot. The replica outlives generations:
// after a reload it is applied again to the new generation's peers, so a server the primary already judged is
// never eligible by default. Each group's stall watch judges by the proxy's p99 the primary sends (stall.ts), kept
// here across generations too.
import type { Upstream } from '../upstream/upstream.js'
import type { Delta, GroupLatency, ServerState, Snapshot } from './protocol.js'

const key = (upstream: string, address: string): string => `${upstream}\u0000${address}`

export class Replica {
  version = 0
  private readonly states = new Map<string, ServerState>()
  /** Per group, the proxy's p99 (ms). */
  private readonly latency = new Map<string, number>()

  constructor(
    private readonly upstreams: () => ReadonlyMap<string, Upstream>,
    /** This worker's cluster id: a trial granted to another worker is an ejection here. */
    private readonly self: number,
  ) {}

  /** The whole state: what it does not list is gone. */
  snapshot(s: Snapshot): void {
    this.states.clear()
    this.version = s.version
    this.apply(s.servers)
    this.adopt(s.latency)
  }

  /** False when `d` does not follow the version held: nothing applied, a snapshot is due. */
  change(d: Delta): boolean {
    if (d.base !== this.version) return false
    this.version = d.version
    this.apply(d.servers)
    this.adopt(d.latency)
    return true
  }

  /** The primary's current state of servers this worker reported on (it overrides a local skip). */
  verdict(servers: readonly ServerState[]): void {
    this.apply(servers)
  }

  /** A new generation went live here: its peers take the state held. */
  reapply(): void {
    this.apply([...this.states.values()])
    this.adopt([...this.latency])
  }

  private adopt(groups: readonly GroupLatency[]): void {
    for (const [upstream, p99] of groups) {
      this.latency.set(upstream, p99)
      this.upstreams().get(upstream)?.passive.stall?.adopt(p99)
    }
  }

  private apply(servers: readonly ServerState[]): void {
    const touched = new Set<Upstream>()
    for (const s of servers) {
      this.states.set(key(s[0], s[1]), s)
      const u = this.upstreams().get(s[0])
      const peer = u?.find(s[1])
      if (u === undefined || peer === undefined) continue
      const [, , checkUp, passive, suspect, operator, trialWorker, weightShare] = s
      peer.checkUp = checkUp
      peer.operator = operator
      peer.passive?.mirror(passive === 'trial' && trialWorker !== this.self ? 'ejected' : passive, suspect, trialWorker === this.self)
      if (weightShare !== 1 || peer.weightShare !== 1) u.shareWeight(peer, weightShare)
      touched.add(u)
    }
    for (const u of touched) u.refresh()
  }
}
