// What a group keeps across its generations. Each generation is a new, immutable Upstream (src/upstream/upstream.ts);
// the state of its servers outlives it in the hosts registry (hosts.ts), and the state of the group itself outlives
// it here: who listens to its events, the monitor the data path reports to, the requests waiting in its queue, and
// which generation is live. A route, a request that retries, a health gate that opens: each asks for the live
// generation through this, so nothing is sent through a server list a swap has replaced.
import { EventEmitter } from 'node:events'
import type { GroupConfig } from '../config/schema.js'
import { ms } from '../config/duration.js'
import { Monitor } from '../health/monitor.js'
import { DEFAULT_QUEUE_TIMEOUT, WaitQueue } from './wait-queue.js'
import type { Upstream } from './upstream.js'

export class GroupState extends EventEmitter {
  /** The generation requests are routed to; set when a generation is published (Upstream.publish). */
  live!: Upstream
  /** Where the data path reports every attempt; its subscribers (metrics) stay across generations. */
  readonly monitor: Monitor = new Monitor(this)
  /** Requests waiting for room under maxConns; undefined when the group has no `queue` (a restart-only setting). */
  readonly queue: WaitQueue | undefined
  /** The group had no eligible server at the last snapshot: said once, not at every generation. */
  noneEligible = false

  constructor(
    readonly name: string,
    config: GroupConfig,
  ) {
    super()
    this.queue = config.queue === undefined ? undefined : new WaitQueue(config.queue.size, ms(config.queue.timeout ?? DEFAULT_QUEUE_TIMEOUT))
  }
}
