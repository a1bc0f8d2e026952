// Shared checks (fleet.shareChecks): each server is probed by the k registered consumers that rendezvous hashing
// (highest random weight) picks for it, so the probe rate per provider is k, not the fleet size; when consumers
// come and go, only the servers whose top k changed move. The others take its state from what those k publish.
import { hashString } from '../balance/hash.js'
import type { Observation } from './observations.js'
import type { LocalTraffic } from './quorum.js'

/** A consumer's rank for a server: the balancer's string hash (FNV-1a and murmur3's finalizer) of both. */
export const score = (consumer: string, server: string): number => hashString(`${consumer}\u0000${server}`)

/** The `k` consumers that check `server`: the highest scores, ties broken by id. */
export function checkersOf(server: string, consumers: readonly string[], k: number): string[] {
  return consumers
    .map((id) => ({ id, s: score(id, server) }))
    .sort((a, b) => b.s - a.s || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .slice(0, k)
    .map((c) => c.id)
}

/**
 * Down reports of the k checkers a non-checker needs before it takes a server down on their word: a strict
 * majority (more than half of k), which for k ≥ 2 is always at least 2, so one checker partitioned from a
 * provider can never take it down elsewhere. k = 1 has no majority to speak of: its one report needs local
 * corroboration (sharedState).
 */
export const checkMajority = (k: number): number => Math.floor(k / 2) + 1

/**
 * What a consumer that does not probe `server` does with its checkers' reports (each made within `window`):
 * - `down`: a strict majority of the k checkers report it down by check (checkMajority), or with k = 1 the one
 *   checker does and this vigil's own last request to it, within `localWindow`, failed;
 * - `up`: no checker reports it down, or this vigil's own last request, within `localWindow`, succeeded after the
 *   reported failures began (local success wins, as over the quorum);
 * - `verify`: some do, too few to trust: this vigil checks the server itself until the reports agree or clear;
 * - undefined while no checker has said anything yet (keep the state as it is).
 */
export function sharedState(
  checkers: readonly string[],
  reports: ReadonlyMap<string, Observation> | undefined,
  k: number,
  now: number,
  window: number,
  local: LocalTraffic | undefined,
  localWindow: number,
): { state: 'down' | 'up' | 'verify'; reports: Observation[] } | undefined {
  const heard = checkers.map((c) => reports?.get(c)).filter((o): o is Observation => o !== undefined)
  if (heard.length === 0) return undefined
  const down = heard.filter((o) => o.checkDown && now - o.at <= window)
  if (down.length === 0) return { state: 'up', reports: heard }
  const recent = now - localWindow
  const lastFailed = local !== undefined && local.lastAttempt >= recent && local.lastFailure > local.lastSuccess
  const answered = local !== undefined && local.lastSuccess >= recent && local.lastSuccess >= local.lastFailure && down.every((o) => local.lastSuccess >= o.since)
  if (answered) return { state: 'up', reports: heard }
  const trusted = k === 1 ? lastFailed : down.length >= checkMajority(k)
  return { state: trusted ? 'down' : 'verify', reports: heard }
}
