// A fleet of vigils, through the registry it already runs (etcd or ZooKeeper, never a gossip layer of its own):
// consumer registration (consumers.ts) and, per group, shared observations (observations.ts). Every record lives
// under `fleet.path`, bound to this process's lease or session, so a vigil that dies takes its records with it.
import type { Logger } from 'pino'
import type { Fleet as FleetConfig } from '../config/schema.js'
import { rawRecords, type RawRecord } from '../discovery/formats.js'
import { subscription } from '../discovery/registries.js'
import type { Subscription, SubscriptionStatus } from '../discovery/subscription.js'
import { ms } from '../config/duration.js'
import type { UpdateQueue } from '../update/queue.js'
import { Consumers, defaultConsumerId } from './consumers.js'

export const FLEET_DEFAULTS = {
  ttl: 10_000,
} as const

export interface FleetOptions {
  log: Logger
  updates: UpdateQueue
}

/** Where one kind of record lives: a ZooKeeper parent node, or an etcd prefix (ending in "/"). */
export function recordPath(config: Pick<FleetConfig, 'registry' | 'path'>, ...parts: string[]): string {
  const path = [config.path, ...parts].join('/')
  return config.registry.etcd !== undefined ? `${path}/` : path
}

export class Fleet {
  readonly id: string
  readonly consumers: Consumers
  private readonly subscriptions: Subscription<RawRecord>[] = []

  constructor(
    readonly config: FleetConfig,
    private readonly options: FleetOptions,
  ) {
    this.id = config.id ?? defaultConsumerId()
    this.consumers = new Consumers(this.id, this.open(recordPath(config, 'consumers')), options.updates, options.log)
  }

  /** Register; resolves once the registry listed this vigil, or its connect timeout passed (vigil starts anyway). */
  async start(): Promise<void> {
    await this.consumers.start()
  }

  /** The subscriptions behind the fleet's records, for the status page and metrics. */
  sources(): SubscriptionStatus[] {
    return this.subscriptions.map((s) => s.status())
  }

  status(): { id: string; path: string; consumers: ReturnType<Consumers['status']>; sources: SubscriptionStatus[] } {
    return { id: this.id, path: this.config.path, consumers: this.consumers.status(), sources: this.sources() }
  }

  /** A clean stop deletes this vigil's records at once (the lease is revoked, the session closed). */
  async close(): Promise<void> {
    await Promise.all(this.subscriptions.map((s) => s.stop()))
  }

  private open(where: string): Subscription<RawRecord> {
    const s = subscription(this.config.registry, where, rawRecords, this.options.log, Math.max(1, Math.round(ms(this.config.ttl ?? FLEET_DEFAULTS.ttl) / 1000)))
    this.subscriptions.push(s)
    return s
  }
}
