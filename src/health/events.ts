// Health changes are events on one emitter; the log (and anything else: metrics, status) listens to it.
// Active checks, passive accounting and operator actions all report here, one event per transition.
import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import type { Peer } from '../upstream/peer.js'
import type { PeerPassiveSnapshot } from './ejection.js'

/** `fleet`: a decision taken on other vigils' observations (src/fleet/). */
export type HealthSource = 'active' | 'passive' | 'operator' | 'fleet'

export interface HealthEvent {
  upstream: string
  server: string
  source: HealthSource
  /** What happened: 'up' and 'down' (checks), 'ejected' and 'restored' (passive), 'inconclusive' (a streak of
   * checks that could not conclude because vigil itself lagged), 'draining', 'disabled', 'enabled' (operator). */
  event: string
  reason: string
  /** What the decision rests on: counts, the last check's result, latency, the loop lag measured... */
  evidence?: Record<string, unknown>
}

export class HealthEvents extends EventEmitter<{ health: [HealthEvent] }> {
  report(event: HealthEvent): void {
    this.emit('health', event)
  }
}

const WARN = new Set(['down', 'ejected', 'inconclusive', 'disabled', 'capped', 'suspect', 'no_eligible'])

/** One structured line per transition. */
export function logHealthEvents(events: HealthEvents, log: Logger): void {
  events.on('health', (e) => {
    const line = { upstream: e.upstream, server: e.server, source: e.source, event: e.event, reason: e.reason, evidence: e.evidence }
    if (WARN.has(e.event)) log.warn(line, `server ${e.event}`)
    else log.info(line, `server ${e.event}`)
  })
}

export interface Ejection {
  /** The failure class that caused it: `error`, `timeout`, `invalid_header` or `http_NNN`. */
  failure: string
  /** The named reason (e.g. `max_fails`, `consecutive_5xx`), as counted in vigil_ejections_total. */
  reason: string
  /** Wall-clock time (ms since epoch) the ejection ends. */
  until: number
}

/**
 * What the active checker and the status page need from passive health, implemented by the passive module:
 * a peer's passive state, its current ejection, a way to lift it when a check that tests what failed has
 * passed, and a way to vouch that the peer answers (a passing check clears a stall suspicion).
 */
export interface PassiveHealthLink {
  snapshot(peer: Peer): PeerPassiveSnapshot | undefined
  ejection(peer: Peer): Ejection | undefined
  restore(peer: Peer, evidence: Record<string, unknown>): void
  vouch(peer: Peer): void
}

/** What passive health asks of the active checker: check a peer that just failed a request at once (HAProxy's `observe`). */
export interface RecheckLink {
  recheck(peer: Peer): void
}
