// GET /ready: what a Kubernetes readiness probe (or a load balancer in front of vigil) asks. Ready once every
// listener is bound and every checked server has had its first check, so the first requests meet a known state;
// not ready again while draining after SIGTERM. Between the two it stays ready: a reload adding servers does not
// take vigil out of its own load balancer while their first checks run.
import type { Upstream } from '../upstream/upstream.js'
import type { ActiveChecker } from '../health/active.js'

export interface ReadySource {
  upstreams(): ReadonlyMap<string, Upstream>
  checker: ActiveChecker
  /** Whether every listener is bound (start finished) and whether vigil is draining (stop began). */
  lifecycle(): { listening: boolean; draining: boolean }
}

export interface Readiness {
  ready: boolean
  state: 'starting' | 'ready' | 'draining'
  listening: boolean
  /** Servers (`upstream/address`) whose first check has not finished yet; empty once ready. */
  awaitingFirstCheck: string[]
}

export class ReadyProbe {
  private reached = false

  constructor(private readonly source: ReadySource) {}

  get(): Readiness {
    const { listening, draining } = this.source.lifecycle()
    const awaiting = this.reached ? [] : this.awaitingFirstCheck()
    if (!draining && listening && awaiting.length === 0) this.reached = true
    const state = draining ? 'draining' : this.reached ? 'ready' : 'starting'
    return { ready: state === 'ready', state, listening, awaitingFirstCheck: awaiting }
  }

  private awaitingFirstCheck(): string[] {
    const out: string[] = []
    for (const u of this.source.upstreams().values()) {
      if (u.active === undefined) continue
      for (const p of u.peers) if ((this.source.checker.stateOf(p)?.checks ?? 0) === 0) out.push(`${u.name}/${p.address}`)
    }
    return out
  }
}
