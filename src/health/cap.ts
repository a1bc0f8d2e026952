// The ejection cap: passive evidence (ejections, stall suspicions) never takes out more than
// maxEjectPercent of a group's primaries, and never the only primary. A wrong detector must not empty a group.
import type { PeerHealth } from './ejection.js'

/**
 * How many of `primaries` passive evidence may hold out at once: floor(primaries × percent / 100), rounded
 * down like Envoy's max_ejection_percent, so 50% of 3 is 1 and 10% of 5 is 0; with `atLeastOne`, never less
 * than one. A group of one never ejects (there would be nothing left to send to).
 */
export function ejectionAllowance(primaries: number, percent: number, atLeastOne: boolean): number {
  if (primaries <= 1) return 0
  const allowed = Math.floor((primaries * percent) / 100)
  return atLeastOne ? Math.max(1, allowed) : allowed
}

/** May passive evidence take `h` out now? Backups and servers already out always may. */
export function mayTakeOut(h: PeerHealth, peers: readonly PeerHealth[], percent: number, atLeastOne: boolean): boolean {
  if (h.peer.backup || h.out) return true
  let primaries = 0
  let out = 0
  for (const p of peers) {
    if (p.peer.backup || p.peer.configDown) continue
    primaries++
    if (p.out) out++
  }
  return out + 1 <= ejectionAllowance(primaries, percent, atLeastOne)
}
