// Shared observations of one fleet: each vigil writes its own health transitions for the servers of its groups
// (ejected by passive health, down by an active check, and their ends) as one record per server under
// `<fleet.path>/observations/<group>/<server>@<id>`, and reads every other vigil's. Only this vigil's own
// evidence is written: a transition it took on the fleet's word is not echoed back (see SHARED_REASONS). And only
// what the fleet still needs to hear (quorum.ts worthWriting): a failure enough others already report is held
// back, and written as soon as they are too few while this vigil still sees it; an end is written only to take
// back a failing record this vigil wrote.
import type { Logger } from 'pino'
import type { RawRecord } from '../discovery/formats.js'
import type { Subscription } from '../discovery/subscription.js'
import type { HealthEvent } from '../health/events.js'
import type { RecordWriter } from './writer.js'
import { worthWriting, type Need } from './quorum.js'

/** What one observer says about one server. */
export interface Observation {
  observer: string
  server: string
  /** Ejected by this observer's passive health. */
  ejected: boolean
  /** Down by this observer's active check. */
  checkDown: boolean
  /** The last transition: `ejected`, `restored` (passive), `down`, `up` (active). */
  event: string
  reason: string
  source: 'active' | 'passive'
  /** When the last transition happened, and when the observer last said so (ms since epoch, its clock). */
  since: number
  at: number
}

export const isFailing = (o: Observation): boolean => o.ejected || o.checkDown

/** Reasons of transitions taken on shared evidence: never written back as this vigil's own observation. */
export const FLEET_QUORUM = 'fleet_quorum'
export const SHARED_CHECK = 'shared_check'
const SHARED_REASONS = new Set([FLEET_QUORUM, SHARED_CHECK])

/** A record's name: the server (URL-encoded: no "/" in a ZooKeeper node name) and the observer. */
export const recordName = (server: string, observer: string): string => `${encodeURIComponent(server)}@${observer}`

/** A record another vigil wrote, or undefined when it is not one (logged once by the caller as invalid). */
export function parseObservation(r: RawRecord): Observation | undefined {
  let o: unknown
  try {
    o = JSON.parse(r.value)
  } catch {
    return undefined
  }
  if (typeof o !== 'object' || o === null) return undefined
  const v = o as Record<string, unknown>
  if (typeof v['observer'] !== 'string' || typeof v['server'] !== 'string' || typeof v['at'] !== 'number') return undefined
  if (recordName(v['server'], v['observer']) !== r.name) return undefined
  return {
    observer: v['observer'],
    server: v['server'],
    ejected: v['ejected'] === true,
    checkDown: v['checkDown'] === true,
    event: typeof v['event'] === 'string' ? v['event'] : '',
    reason: typeof v['reason'] === 'string' ? v['reason'] : '',
    source: v['source'] === 'active' ? 'active' : 'passive',
    since: typeof v['since'] === 'number' ? v['since'] : v['at'],
    at: v['at'],
  }
}

/** This vigil's own word on one server: what it sees, and what of it the registry holds. */
interface Own {
  /** Its newest state, and (`at`) when it last said it. */
  state: Observation
  /** The state last written (or on its way); undefined while nothing was. `recorded !== state`: not written yet. */
  recorded: Observation | undefined
  /** A write of it waits in the writer (so a look again does not queue it twice). */
  queued: boolean
}

/** The observations of one group: this vigil's own, written through the writer, and every other vigil's, read. */
export class GroupObservations {
  /** Other observers' records: server -> observer -> observation. Rebuilt from every complete list. */
  others: ReadonlyMap<string, ReadonlyMap<string, Observation>> = new Map()
  /** This vigil's own word per server. */
  private readonly own = new Map<string, Own>()
  invalid = 0
  /** Called after every list that changed what others say. */
  onChange: () => void = () => undefined
  /** What this vigil's record of a server is worth to the fleet now (shared-health.ts). */
  need: (server: string, now: number) => Need = () => 'more'

  constructor(
    readonly upstream: string,
    readonly subscription: Subscription<RawRecord>,
    private readonly id: string,
    private readonly writer: RecordWriter,
    private readonly log: Logger,
    /** Write a server's first `up` too (shared checks: consumers that do not probe a default-down server wait for it). */
    private readonly publishUp: boolean,
  ) {
    subscription.listeners.add((records) => this.listed(records))
  }

  /** A health transition of this vigil for a server of the group. */
  transition(e: HealthEvent, now: number): void {
    if (SHARED_REASONS.has(e.reason)) return
    const before = this.own.get(e.server)?.state
    let ejected = before?.ejected ?? false
    let checkDown = before?.checkDown ?? false
    if (e.source === 'passive' && e.event === 'ejected') ejected = true
    else if (e.source === 'passive' && e.event === 'restored') ejected = false
    else if (e.source === 'active' && e.event === 'down') checkDown = true
    else if (e.source === 'active' && e.event === 'up') checkDown = false
    else return
    // A re-ejection is a new report (its time is fresh); anything else that changes nothing is not written.
    if (before !== undefined && before.ejected === ejected && before.checkDown === checkDown && e.event !== 'ejected') return
    if (before === undefined && !ejected && !checkDown && !(this.publishUp && e.event === 'up')) return
    const o: Observation = { observer: this.id, server: e.server, ejected, checkDown, event: e.event, reason: e.reason, source: e.source as 'active' | 'passive', since: now, at: now }
    this.say(o)
  }

  /**
   * Once a second: a failure this vigil still sees is said again before it ages out of others' `window` (the
   * same rule decides whether that is written); a state held back is written once it is worth writing (others
   * that reported the failure left, or this vigil became one of the server's checkers).
   */
  refresh(now: number, window: number): void {
    for (const own of this.own.values()) {
      if (isFailing(own.state) && now - own.state.at >= window / 2) this.say({ ...own.state, at: now })
      else this.reconsider(own, now)
    }
  }

  /** Servers that left the group: their records are deleted. */
  retain(servers: ReadonlySet<string>): void {
    for (const [server, own] of [...this.own]) {
      if (servers.has(server)) continue
      this.own.delete(server)
      if (own.recorded !== undefined) this.writer.put(this.subscription, recordName(server, this.id), undefined)
    }
  }

  private say(o: Observation): void {
    let own = this.own.get(o.server)
    if (own === undefined) this.own.set(o.server, (own = { state: o, recorded: undefined, queued: false }))
    own.state = o
    this.offer(own)
  }

  /** A state not written yet, and worth writing now: offered to the writer (no skip is counted for a look again). */
  private reconsider(own: Own, now: number): void {
    if (own.queued || own.recorded === own.state) return
    if (this.worth(own, own.state, now)) this.offer(own)
  }

  /** To the writer, which asks when its turn comes (after the jitter: others may have said it by then). */
  private offer(own: Own): void {
    const o = own.state
    own.queued = true
    this.writer.put(this.subscription, recordName(o.server, this.id), JSON.stringify(o), () => {
      own.queued = false
      if (!this.worth(own, o, Date.now())) return false
      own.recorded = o
      return true
    })
  }

  /** Whether the fleet still needs to hear `o` from this vigil, given what of its word the registry holds. */
  private worth(own: Own, o: Observation, now: number): boolean {
    return worthWriting(isFailing(o), own.recorded !== undefined && isFailing(own.recorded), this.need(o.server, now))
  }

  private listed(records: readonly RawRecord[]): void {
    const others = new Map<string, Map<string, Observation>>()
    let invalid = 0
    for (const r of records) {
      const o = parseObservation(r)
      if (o === undefined) {
        invalid++
        continue
      }
      if (o.observer === this.id) continue
      let byObserver = others.get(o.server)
      if (byObserver === undefined) others.set(o.server, (byObserver = new Map()))
      byObserver.set(o.observer, o)
    }
    if (invalid > this.invalid) this.log.warn({ upstream: this.upstream, source: this.subscription.source, invalid }, 'fleet records that are not observations are left out')
    this.invalid = invalid
    this.others = others
    // Others that reported a failure this vigil holds back may have left: it may be its turn to say it.
    const now = Date.now()
    for (const own of this.own.values()) this.reconsider(own, now)
    this.onChange()
  }
}
