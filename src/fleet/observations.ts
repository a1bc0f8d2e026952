// Shared observations of one fleet: each vigil writes its own health transitions for the servers of its groups
// (ejected by passive health, down by an active check, and their ends) as one record per server under
// `<fleet.path>/observations/<group>/<server>@<id>`, and reads every other vigil's. Only this vigil's own
// evidence is written: a transition it took on the fleet's word is not echoed back (see SHARED_REASONS).
import type { Logger } from 'pino'
import type { RawRecord } from '../discovery/formats.js'
import type { Subscription } from '../discovery/subscription.js'
import type { HealthEvent } from '../health/events.js'
import type { RecordWriter } from './writer.js'

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

/** The observations of one group: this vigil's own, written through the writer, and every other vigil's, read. */
export class GroupObservations {
  /** Other observers' records: server -> observer -> observation. Rebuilt from every complete list. */
  others: ReadonlyMap<string, ReadonlyMap<string, Observation>> = new Map()
  /** This vigil's own state per server, as last written (or waiting to be). */
  readonly own = new Map<string, Observation>()
  invalid = 0
  /** Called after every list that changed what others say. */
  onChange: () => void = () => undefined

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
    const before = this.own.get(e.server)
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
    this.write(o)
  }

  /** A failure this vigil still sees is said again before it ages out of others' `window`. */
  refresh(now: number, window: number): void {
    for (const o of this.own.values()) if (isFailing(o) && now - o.at >= window / 2) this.write({ ...o, at: now })
  }

  /** Servers that left the group: their records are deleted. */
  retain(servers: ReadonlySet<string>): void {
    for (const server of [...this.own.keys()]) {
      if (servers.has(server)) continue
      this.own.delete(server)
      this.writer.put(this.subscription, recordName(server, this.id), undefined)
    }
  }

  private write(o: Observation): void {
    this.own.set(o.server, o)
    this.writer.put(this.subscription, recordName(o.server, this.id), JSON.stringify(o))
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
    this.onChange()
  }
}
