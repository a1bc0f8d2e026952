// The one serialized queue every change goes through, the record of every generation it applied, and the
// subscribers that hear of each one.
//
// How a source hands its state to the queue (file watch, SIGHUP, POST /reload, admin PUT/DELETE, DNS, ZooKeeper
// and etcd): a source never edits live objects and never shares a mutable array with another
// source. It owns one slice of the desired state and hands the queue that slice complete, every time:
//   - the file sources hand a whole validated Config (src/update/reloader.ts: reload());
//   - a discovery source hands the complete server list of one entry of one group: `servers(source, upstream,
//     entry, targets)` (DNS: an entry is a `resolve: true` name; a registry source (src/discovery/): its path or prefix). A list that
//     loses servers is a list, not a delta: the queue applies "these and only these".
//   - the admin source hands its complete overlay of one group (src/upstream/membership.ts keeps it).
// The queue runs one update at a time, in the order handed in; each applied update gets the next generation, its
// source and its time (GenerationRecord), and every subscriber hears of it, in order, before the next one runs.
// A source learns its state was applied from the promise it gets back, only after the commit; a failure leaves
// the live state as it was, and the source hands its state again on its next trigger.
import type { Logger } from 'pino'
import type { MembershipChange } from '../upstream/membership.js'

/** Where a change came from: shown in logs, `GET /reload`, the status page. Registries add their own names. */
export type ChangeSource = 'watch' | 'signal' | 'admin' | 'api' | 'dns' | (string & {})

export interface GenerationRecord {
  generation: number
  source: ChangeSource
  /** ISO time of the commit. */
  at: string
  change: MembershipChange
}

/**
 * Hears of every applied generation, in order, synchronously right after the swap (so it runs before any request
 * sees the next generation). The checker, metrics and logs subscribe here. A subscriber that throws is logged and
 * kept; it never stops the others, nor the swap.
 */
export interface UpdateSubscriber {
  applied(record: GenerationRecord): void
}

/** Generations kept for late subscribers (`subscribe(s, since)`) and for tests. */
export const KEPT_RECORDS = 256

export class UpdateQueue {
  private tail: Promise<unknown> = Promise.resolve()
  private readonly kept: GenerationRecord[] = []
  /** Replaced, never mutated, when subscribers come and go: a delivery in progress keeps the list it started with. */
  private subscribers: readonly UpdateSubscriber[] = []

  constructor(private readonly log: Logger) {}

  /** Runs `fn` after every update queued before it, and before every update queued after it. */
  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.tail.then(fn)
    this.tail = run.catch(() => undefined)
    return run
  }

  /** Every update queued so far has run. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined)
  }

  /**
   * Called by the commit (Membership 'applied'), inside the swap: record the generation and tell every subscriber.
   * Never throws.
   */
  committed(change: MembershipChange): void {
    const record: GenerationRecord = { generation: change.generation, source: change.source, at: new Date().toISOString(), change }
    this.kept.push(record)
    if (this.kept.length > KEPT_RECORDS) this.kept.shift()
    for (const s of this.subscribers) this.deliver(s, record)
  }

  /**
   * Hear of every generation after `since` (default: from now on). Records still kept after `since` are delivered
   * at once, in order, so a subscriber that joins late, or re-subscribes, misses none. Returns the unsubscribe.
   */
  subscribe(subscriber: UpdateSubscriber, since?: number): () => void {
    if (since !== undefined) for (const r of this.kept) if (r.generation > since) this.deliver(subscriber, r)
    this.subscribers = [...this.subscribers, subscriber]
    return () => {
      this.subscribers = this.subscribers.filter((s) => s !== subscriber)
    }
  }

  /** The last generations applied, oldest first (at most KEPT_RECORDS). */
  get records(): readonly GenerationRecord[] {
    return this.kept
  }

  private deliver(s: UpdateSubscriber, r: GenerationRecord): void {
    try {
      s.applied(r)
    } catch (err) {
      this.log.error({ err, generation: r.generation }, 'an update subscriber failed; the update stays applied')
    }
  }
}
