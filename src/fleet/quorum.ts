// The rule that turns other vigils' observations into a decision here. Pure functions: the fleet's shared health
// (shared-health.ts) applies what they decide. Local evidence always wins over the fleet's: a vigil whose own
// requests to a server succeed ignores any quorum, so one consumer's partition never spreads to the others.
import { isFailing, type Observation } from './observations.js'

/** What this vigil's own traffic to a server says lately (ms since epoch; 0 for never). */
export interface LocalTraffic {
  lastAttempt: number
  lastSuccess: number
  lastFailure: number
}

/**
 * - `none`: fewer than `quorum` observers report the server failing;
 * - `ignored`: they do, but this vigil's own requests to it succeed since (local success wins);
 * - `eject`: they do, and this vigil has no traffic of its own to it: the quorum is its evidence;
 * - `suspect`: they do, and its own recent traffic failed: check it now and often, lower its weight.
 */
export type Decision = 'none' | 'ignored' | 'eject' | 'suspect'

/**
 * The default quorum: max(2, 10% of the consumers that can observe the server, rounded up). `observers`: the
 * consumers using the server: all of the fleet's, or under `subset` those whose subset holds it; 10% of the whole
 * fleet could exceed them and never be reached. The floor of 2 stays even where fewer than 3 consumers use a
 * server: one other observer's word alone would spread its partition.
 */
export function quorumOf(configured: number | undefined, observers: number): number {
  return configured ?? Math.max(2, Math.ceil(observers / 10))
}

/** The observers that report the server failing now, each report made within `window`. */
export function reporting(observations: Iterable<Observation> | undefined, now: number, window: number): Observation[] {
  const out: Observation[] = []
  if (observations === undefined) return out
  for (const o of observations) if (isFailing(o) && now - o.at <= window) out.push(o)
  return out
}

/**
 * `reporters`: the observers reporting the server failing (reporting()). Local success wins when this vigil's
 * last request to the server succeeded and fewer than `quorum` of the reported failures began after it (it
 * answers the older ones): a success from before the failure others report is no answer to it. Observers' times are their clocks:
 * the fleet's clocks are assumed to agree to well within `localWindow`.
 */
export function decide(reporters: readonly Observation[], quorum: number, local: LocalTraffic | undefined, now: number, localWindow: number): Decision {
  if (reporters.length < quorum) return 'none'
  const recent = now - localWindow
  if (local === undefined || local.lastAttempt < recent) return 'eject'
  const formed = reporters.map((o) => o.since).sort((a, b) => b - a)[quorum - 1] as number
  if (local.lastSuccess >= recent && local.lastSuccess >= formed && local.lastSuccess >= local.lastFailure) return 'ignored'
  return 'suspect'
}

/**
 * Other observers beyond the quorum whose failing reports make one more report from this vigil worth nothing:
 * half the quorum, at least 1. Observers leave without warning (a vigil stops, its lease runs out, a zone of
 * consumers goes), and the vigils that held back notice it only at their next list, then write after their
 * jitter. With quorum + quorum/2 reports out there, a third of the writers can vanish at once (one zone of three,
 * a rolling restart of a third of the fleet) and the quorum still holds while the others catch up; a margin of 1
 * alone would let two observers stopping together drop it for a moment. The price: a failure costs 1.5 × quorum
 * writes instead of the bare quorum, still far from one per consumer.
 */
export const writeMargin = (quorum: number): number => Math.max(1, Math.ceil(quorum / 2))

/**
 * What this vigil's own record of a server is worth to the fleet now:
 * - `report`: other consumers take their check state from it (it is one of the server's shareChecks checkers);
 * - `enough`: at least quorum + writeMargin other observers already report the server failing within window;
 * - `more`: anything else.
 */
export type Need = 'report' | 'enough' | 'more'

export const needOf = (reporters: number, quorum: number): Exclude<Need, 'report'> => (reporters >= quorum + writeMargin(quorum) ? 'enough' : 'more')

/**
 * Whether this vigil writes its newest state of a server (the "enough has been said" rule): a check report others
 * read, always; a failing state, unless enough was said; a state that is not failing only to take back a failing
 * record this vigil wrote: with none written there is nothing to retract.
 */
export function worthWriting(failing: boolean, recordedFailing: boolean, need: Need): boolean {
  if (need === 'report') return true
  return failing ? need !== 'enough' : recordedFailing
}
