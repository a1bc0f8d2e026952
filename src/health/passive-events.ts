// Passive health's transitions as events: one HealthEvent emitted as 'health' on the Upstream per transition
// (ejected, recovered, trial, restored, capped, suspect, cleared; the group's no_eligible and eligible), joined to the one
// health emitter (log, metrics, status page) as `source: 'passive'` events.
import type { HealthEvents } from './events.js'
import type { Evidence } from './eject/detector.js'
import type { StallEvidence } from './stall.js'

export type HealthEventKind = 'ejected' | 'recovered' | 'trial' | 'restored' | 'capped' | 'suspect' | 'cleared' | 'no_eligible' | 'eligible'

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

/** Passive transitions join the one health emitter (log, metrics, status) as `source: 'passive'` events. */
export function reportPassive(events: HealthEvents, e: HealthEvent): void {
  const evidence: Record<string, unknown> = { ...e.evidence }
  if (e.duration !== undefined) evidence['duration'] = e.duration
  if (e.multiplier !== undefined) evidence['multiplier'] = e.multiplier
  if (e.failure !== undefined) evidence['failure'] = e.failure
  events.report({ upstream: e.upstream, server: e.peer ?? '*', source: 'passive', event: e.kind, reason: e.reason, evidence })
}
