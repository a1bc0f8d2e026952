// Consumer registration: each vigil of a fleet keeps one record under `<fleet.path>/consumers/<id>` (an etcd key
// bound to its lease, a ZooKeeper ephemeral node of its session), and watches the list. The sorted list of ids is
// what subsetting (keyed by the ids) and shared checks are computed from, and this vigil's place in it is its
// { index, count }. A vigil always counts itself, even while the registry has not listed it yet (or is away), so
// index and count are never undefined.
import { hostname } from 'node:os'
import type { Logger } from 'pino'
import type { RawRecord } from '../discovery/formats.js'
import type { Subscription } from '../discovery/subscription.js'
import type { UpdateQueue } from '../update/queue.js'

/** This vigil's place in the fleet, from the sorted list of registered consumers. */
export interface ConsumerView {
  /** This vigil's id. */
  id: string
  /** Its position in `ids` (0-based). */
  index: number
  count: number
  /** Every registered consumer id, sorted, this one included. */
  ids: readonly string[]
  /** The registry lists this vigil (false before its record is read back, and while the registry is away at start). */
  registered: boolean
}

export type ConsumerListener = (view: ConsumerView) => void

/** A consumer id by default: the host name and process id, which tell an operator where it runs. */
export function defaultConsumerId(): string {
  return `${hostname().replace(/[^A-Za-z0-9._-]/g, '_')}-${process.pid}`
}

export class Consumers {
  private current: ConsumerView
  private listeners: readonly ConsumerListener[] = []

  constructor(
    readonly id: string,
    private readonly subscription: Subscription<RawRecord>,
    private readonly updates: UpdateQueue,
    private readonly log: Logger,
  ) {
    this.current = { id, index: 0, count: 1, ids: [id], registered: false }
    subscription.listeners.add((records) => this.listed(records))
  }

  /** Register and start watching; resolves once the registry listed this vigil, or after its connect timeout. */
  async start(): Promise<boolean> {
    const record = JSON.stringify({ id: this.id, host: hostname(), pid: process.pid, since: new Date().toISOString() })
    this.subscription.start()
    // A registry away now gets the record when it answers (Subscription.publish keeps it).
    this.subscription.publish(this.id, record).catch((err: Error) => this.log.warn({ source: this.subscription.source, err: err.message }, 'fleet registration not written yet; it is written when the registry answers'))
    const listed = await this.subscription.ready()
    if (!listed) this.log.warn({ source: this.subscription.source, id: this.id }, 'fleet registry not answering: this vigil counts as a fleet of one until it does')
    return listed
  }

  get view(): ConsumerView {
    return this.current
  }

  /**
   * Hear of every change of index or count (or of the ids). Listeners run through the update queue, one change
   * at a time and in order with every other update, so a change that moves a subset is applied like any other.
   */
  subscribe(listener: ConsumerListener): () => void {
    this.listeners = [...this.listeners, listener]
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener)
    }
  }

  private listed(records: readonly RawRecord[]): void {
    const names = records.map((r) => r.name)
    const registered = names.includes(this.id)
    const ids = registered ? names : [...names, this.id].sort()
    const before = this.current
    const next: ConsumerView = { id: this.id, index: ids.indexOf(this.id), count: ids.length, ids, registered }
    if (before.registered === registered && before.ids.join('\n') === ids.join('\n')) return
    this.current = next
    this.log.info({ id: this.id, index: next.index, count: next.count, registered, joined: ids.filter((i) => !before.ids.includes(i)), left: before.ids.filter((i) => !ids.includes(i)) }, 'fleet consumers changed')
    for (const l of this.listeners) {
      void this.updates
        .run(() => l(next))
        .catch((err: unknown) => this.log.error({ err }, 'a fleet consumers listener failed'))
    }
  }

  status(): { id: string; index: number; count: number; registered: boolean; consumers: readonly string[] } {
    const v = this.current
    return { id: v.id, index: v.index, count: v.count, registered: v.registered, consumers: v.ids }
  }
}
