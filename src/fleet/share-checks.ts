// Shared checks (fleet.shareChecks): each server is probed by the k registered consumers that rendezvous hashing
// (highest random weight) picks for it, so the probe rate per provider is k, not the fleet size; when consumers
// come and go, only the servers whose top k changed move. The others take its state from what those k publish.
import { hashString } from '../balance/hash.js'
import type { Observation } from './observations.js'

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
 * The state a consumer that does not probe `server` takes from its checkers' reports: down when at least half of
 * the k checkers (rounded up) say it is down by check, each report made within `window`; undefined while no
 * checker has said anything yet (keep the state as it is).
 */
export function sharedState(checkers: readonly string[], reports: ReadonlyMap<string, Observation> | undefined, k: number, now: number, window: number): { down: boolean; reports: Observation[] } | undefined {
  const heard = checkers.map((c) => reports?.get(c)).filter((o): o is Observation => o !== undefined)
  if (heard.length === 0) return undefined
  const down = heard.filter((o) => o.checkDown && now - o.at <= window).length
  return { down: down >= Math.ceil(k / 2), reports: heard }
}
