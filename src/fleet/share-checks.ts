// Shared checks (fleet.shareChecks): each server is probed by the k registered consumers that rendezvous hashing
// (highest random weight) picks for it, so the probe rate per provider is k, not the fleet size; when consumers
// come and go, only the servers whose top k changed move. The others take its state from what those k publish.
import type { Observation } from './observations.js'

/** 32-bit FNV-1a of `consumer` and `server`, then murmur3's finalizer: fast, and well spread for ranking. */
export function score(consumer: string, server: string): number {
  let h = 0x811c9dc5
  const mix = (s: string): void => {
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i)
      h = Math.imul(h, 0x01000193)
    }
  }
  mix(consumer)
  mix('\u0000')
  mix(server)
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

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
