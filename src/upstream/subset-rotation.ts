// Which of a group's servers one vigil sends traffic to under `subset`: the members of its subset
// (src/upstream/subset.ts), plus replacements from outside it only while so many members are out (ejected, down by
// check, drained or disabled) that fewer than the ejection cap's floor would be left. The rest stand by: no
// traffic and, while up, no checks from this vigil (src/health/active.ts), which is where subsetting saves probes.
import type { Passive, Subset } from '../config/schema.js'
import { PASSIVE_DEFAULTS } from '../health/passive.js'
import { ejectionAllowance } from '../health/cap.js'
import type { Peer } from './peer.js'
import { consumerAt, SubsetAssignment, type Consumer } from './subset.js'

export type SubsetRole = 'member' | 'replacement' | 'standby'

export class SubsetRotation {
  /** This vigil's subset of the primaries that are not `down: true`, best score first. */
  readonly members: ReadonlySet<Peer>
  /** Candidates outside the subset, by this consumer's score, best first: replacements come from here. */
  private readonly spares: readonly Peer[]
  /** Members that must stay in rotation: the subset less what the ejection cap lets out. */
  readonly floor: number
  /** Replacements in rotation now (see rotation()). */
  private replacing: ReadonlySet<Peer> = new Set()
  /** The whole fleet's subsets of the candidates: how many consumers use each server. */
  private readonly assignment: SubsetAssignment
  /** This consumer's place in the sorted list of consumers (the status page shows it). */
  readonly index: number

  constructor(
    peers: readonly Peer[],
    readonly size: number,
    readonly consumer: Consumer,
    cap: { maxEjectPercent: number; ejectAtLeastOne: boolean },
  ) {
    const candidates = new Map(peers.filter((p) => !p.backup && !p.configDown).map((p) => [p.address, p]))
    this.assignment = new SubsetAssignment([...candidates.keys()], consumer.ids, size)
    this.index = consumer.ids.indexOf(consumer.id)
    this.members = new Set(this.assignment.subset(consumer.id).map((a) => candidates.get(a) as Peer))
    // The servers this consumer scores next are the ones it would have had with fewer members to choose from.
    this.spares = this.assignment.spares(consumer.id).map((a) => candidates.get(a) as Peer)
    this.floor = this.members.size - ejectionAllowance(this.members.size, cap.maxEjectPercent, cap.ejectAtLeastOne)
  }

  /**
   * The primaries in rotation now: every member (an ineligible one simply gets no traffic), then, while fewer than
   * `floor` members are eligible, the first eligible spares by score, one for each missing. Cheap: called on
   * every health change (Upstream.refresh), never per request.
   */
  rotation(): Peer[] {
    const out = [...this.members]
    let missing = this.floor
    for (const p of this.members) if (p.eligible) missing--
    const replacing = new Set<Peer>()
    for (const p of this.spares) {
      if (missing <= 0) break
      if (!p.eligible) continue
      replacing.add(p)
      out.push(p)
      missing--
    }
    this.replacing = replacing
    return out
  }

  role(peer: Peer): SubsetRole | undefined {
    if (peer.backup || peer.configDown) return undefined
    return this.members.has(peer) ? 'member' : this.replacing.has(peer) ? 'replacement' : 'standby'
  }

  /**
   * How many of the fleet's consumers have `peer` in their subset: those that can observe it. Undefined for a
   * server outside every subset (a backup, one configured down).
   */
  users(peer: Peer): number | undefined {
    return this.assignment.users(peer.address)
  }

  /** How many consumers share the group. */
  get count(): number {
    return this.assignment.consumers.length
  }

  get replacements(): number {
    return this.replacing.size
  }
}

/**
 * A group's rotation under its `subset` (undefined without one), with the group's ejection cap: consumer `placed`
 * (the fleet's registration), or `id` of `of` set by hand.
 */
export function subsetRotation(peers: readonly Peer[], config: Subset | undefined, passive: Passive | undefined, placed: Consumer | undefined): SubsetRotation | undefined {
  if (config === undefined) return undefined
  const consumer = placed ?? (config.id === undefined || config.of === undefined ? undefined : consumerAt(config.id, config.of))
  if (consumer === undefined) return undefined
  const cap = { maxEjectPercent: passive?.maxEjectPercent ?? PASSIVE_DEFAULTS.maxEjectPercent, ejectAtLeastOne: passive?.ejectAtLeastOne ?? false }
  return new SubsetRotation(peers, config.size, consumer, cap)
}
