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
