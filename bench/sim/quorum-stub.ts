// Stand-in for src/fleet/quorum.ts (branch fleet-share, not in main yet): the same rule as docs/fleet.md states
// it, with the same names, so the import switches without the figures moving. Deleted by the merge that brings it.

export interface LocalTraffic {
  lastAttempt: number
  lastSuccess: number
  lastFailure: number
}

export type Decision = 'none' | 'ignored' | 'eject' | 'suspect'

export function quorumOf(configured: number | undefined, consumers: number): number {
  return configured ?? Math.max(2, Math.ceil(consumers / 10))
}

export function decide(reporters: number, quorum: number, local: LocalTraffic | undefined, now: number, localWindow: number): Decision {
  if (reporters < quorum) return 'none'
  const recent = now - localWindow
  if (local === undefined || local.lastAttempt < recent) return 'eject'
  if (local.lastSuccess >= recent && local.lastSuccess >= local.lastFailure) return 'ignored'
  return 'suspect'
}
