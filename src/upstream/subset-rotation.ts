// Which of a group's servers one vigil sends traffic to under `subset`: the members of its subset
// (src/upstream/subset.ts), plus replacements from outside it only while so many members are out (ejected, down by
// check, drained or disabled) that fewer than the ejection cap's floor would be left. The rest stand by: no
// traffic and, while up, no checks from this vigil (src/health/active.ts), which is where subsetting saves probes.
import type { Passive, Subset } from '../config/schema.js'
import { PASSIVE_DEFAULTS } from '../health/passive.js'
import { ejectionAllowance } from '../health/cap.js'
import type { Peer } from './peer.js'
import { ring, subset, subsetUsers, type Consumer } from './subset.js'

export type SubsetRole = 'member' | 'replacement' | 'standby'

export class SubsetRotation {
  /** The servers the subset is drawn from: primaries that are not `down: true`, in ring order. */
  readonly members: ReadonlySet<Peer>
  /** Candidates outside the subset, in ring order from the end of the subset's window: replacements come from here. */
  private readonly spares: readonly Peer[]
  /** Members that must stay in rotation: the subset less what the ejection cap lets out. */
  readonly floor: number
  /** Replacements in rotation now (see rotation()). */
  private replacing: ReadonlySet<Peer> = new Set()
  /** The candidates' addresses, and per address how many of the fleet's subsets hold it (computed when first asked). */
  private readonly candidates: readonly string[]
  private usersOf: Map<string, number> | undefined

  constructor(
    peers: readonly Peer[],
    readonly size: number,
    readonly consumer: Consumer,
    cap: { maxEjectPercent: number; ejectAtLeastOne: boolean },
  ) {
    const candidates = new Map(peers.filter((p) => !p.backup && !p.configDown).map((p) => [p.address, p]))
    this.candidates = [...candidates.keys()]
    const chosen = subset(this.candidates, consumer, size)
    this.members = new Set(chosen.map((a) => candidates.get(a) as Peer))
    // subset() walks the ring from the consumer's start; the spares continue that walk past its last member.
    const inSubset = new Set(chosen)
    this.spares = ringFrom([...candidates.keys()], chosen)
      .filter((a) => !inSubset.has(a))
      .map((a) => candidates.get(a) as Peer)
    this.floor = this.members.size - ejectionAllowance(this.members.size, cap.maxEjectPercent, cap.ejectAtLeastOne)
  }

  /**
   * The primaries in rotation now: every member (an ineligible one simply gets no traffic), then, while fewer than
   * `floor` members are eligible, the first eligible spares in ring order, one for each missing. Cheap: called on
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
   * How many of the fleet's consumers (this one's `count`) have `peer` in their subset: those that can observe it.
   * Undefined for a server outside every subset (a backup, one configured down).
   */
  users(peer: Peer): number | undefined {
    this.usersOf ??= subsetUsers(this.candidates, this.consumer.count, this.size)
    return this.usersOf.get(peer.address)
  }

  get replacements(): number {
    return this.replacing.size
  }
}

/** Every address of `all` in ring order, starting just after the last of `window` (a run of that ring). */
function ringFrom(all: readonly string[], window: readonly string[]): string[] {
  const order = ring(all)
  const last = order.indexOf(window[window.length - 1] as string)
  return order.slice(last + 1).concat(order.slice(0, last + 1))
}

/** A group's rotation under its `subset` (undefined without one), with the group's ejection cap. */
export function subsetRotation(peers: readonly Peer[], config: Subset | undefined, passive: Passive | undefined): SubsetRotation | undefined {
  if (config === undefined || config.id === undefined || config.of === undefined) return undefined
  const cap = { maxEjectPercent: passive?.maxEjectPercent ?? PASSIVE_DEFAULTS.maxEjectPercent, ejectAtLeastOne: passive?.ejectAtLeastOne ?? false }
  return new SubsetRotation(peers, config.size, { index: config.id, count: config.of }, cap)
}
