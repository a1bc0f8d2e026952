// src/fleet/quorum.ts's decide(), restated over counts: vigil's takes the reporting observations and sorts their
// `since` per decision, O(W log W), which at 10,000 consumers and a decision after every outcome is too slow; the
// simulation keeps the reports in Fenwick trees and passes the counts. The same rule, the same names.
import type { Decision, LocalTraffic } from '../../src/fleet/quorum.js'

/**
 * `reporters`: other observers reporting the server failing within window; `beganAfter`: how many of their failures
 * began after this consumer's last success. Local success wins when it is recent, its last outcome, and fewer than
 * `quorum` of the reported failures began after it.
 */
export function decide(reporters: number, beganAfter: number, quorum: number, local: LocalTraffic | undefined, now: number, localWindow: number): Decision {
  if (reporters < quorum) return 'none'
  const recent = now - localWindow
  if (local === undefined || local.lastAttempt < recent) return 'eject'
  if (local.lastSuccess >= recent && local.lastSuccess >= local.lastFailure && beganAfter < quorum) return 'ignored'
  return 'suspect'
}
