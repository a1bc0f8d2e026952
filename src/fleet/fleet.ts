// A fleet of vigils, through the registry it already runs (etcd or ZooKeeper, never a gossip layer of its own):
// consumer registration (consumers.ts), per group the shared observations (observations.ts) written without a
// storm (writer.ts), and what this vigil does with them (shared-health.ts). Every record lives under
// `fleet.path`, bound to this process's lease or session, so a vigil that dies takes its records with it.
import type { Logger } from 'pino'
import type { Fleet as FleetConfig } from '../config/schema.js'
import { rawRecords, type RawRecord } from '../discovery/formats.js'
import { subscription } from '../discovery/registries.js'
import type { Subscription, SubscriptionStatus } from '../discovery/subscription.js'
import { ms } from '../config/duration.js'
import type { UpdateQueue } from '../update/queue.js'
import type { ActiveChecker } from '../health/active.js'
import type { HealthEvents } from '../health/events.js'
import type { Upstream } from '../upstream/upstream.js'
import { Consumers, defaultConsumerId } from './consumers.js'
import { GroupObservations } from './observations.js'
import { RecordWriter, type WriterStatus } from './writer.js'
import { SharedHealth, type Outcome, type ServerFleetStatus } from './shared-health.js'

export const FLEET_DEFAULTS = {
  ttl: 10_000,
  window: 30_000,
  localWindow: 10_000,
  writeRate: 5,
  writeJitter: 1_000,
  suspectWeight: 10,
} as const

/** How often the shared evidence is weighed again (reports age, traffic goes quiet), besides after every list. */
const EVALUATE_EVERY = 1_000

export interface FleetOptions {
  log: Logger
  updates: UpdateQueue
  events: HealthEvents
  checker: ActiveChecker
  upstreams: () => ReadonlyMap<string, Upstream>
}

export interface FleetStatus {
  id: string
  path: string
  index: number
  count: number
  registered: boolean
  consumers: readonly string[]
  quorum: number
  writes: WriterStatus
  checks: { probed: number; shared: number }
  sources: SubscriptionStatus[]
  upstreams: Record<string, ServerFleetStatus[]>
}

/** Where one kind of record lives: a ZooKeeper parent node, or an etcd prefix (ending in "/"). */
export function recordPath(config: Pick<FleetConfig, 'registry' | 'path'>, ...parts: string[]): string {
  const path = [config.path, ...parts].join('/')
  return config.registry.etcd !== undefined ? `${path}/` : path
}

export class Fleet {
  readonly id: string
  readonly consumers: Consumers
  readonly health: SharedHealth
  readonly writer: RecordWriter
  private readonly groups = new Map<string, GroupObservations>()
  private readonly subscriptions = new Set<Subscription<RawRecord>>()
  private timer: NodeJS.Timeout | undefined
  private readonly window: number
  private started = false
  /** An outcome taken on shared evidence changed (metrics count them). */
  decided: (upstream: string, outcome: Outcome) => void = () => undefined

  constructor(
    readonly config: FleetConfig,
    private readonly options: FleetOptions,
  ) {
    this.id = config.id ?? defaultConsumerId()
    this.window = ms(config.window ?? FLEET_DEFAULTS.window)
    this.writer = new RecordWriter({ rate: config.writeRate ?? FLEET_DEFAULTS.writeRate, jitter: ms(config.writeJitter ?? FLEET_DEFAULTS.writeJitter) }, options.log)
    this.consumers = new Consumers(this.id, this.open(recordPath(config, 'consumers')), options.updates, options.log)
    this.health = new SharedHealth(
      {
        quorum: config.quorum,
        window: this.window,
        localWindow: ms(config.localWindow ?? FLEET_DEFAULTS.localWindow),
        suspectShare: (config.suspectWeight ?? FLEET_DEFAULTS.suspectWeight) / 100,
        shareChecks: config.shareChecks?.k,
      },
      {
        id: this.id,
        consumers: this.consumers,
        groups: this.groups,
        upstreams: options.upstreams,
        checker: options.checker,
        events: options.events,
        decided: (u, o) => this.decided(u, o),
      },
    )
    if (config.shareChecks !== undefined) options.checker.delegate = this.health
    options.events.on('health', (e) => {
      if (e.source === 'active' || e.source === 'passive') this.groups.get(e.upstream)?.transition(e, Date.now())
    })
    // Groups come and go with reloads: each has its observations path; servers that left lose their records.
    options.updates.subscribe({ applied: () => this.sync() })
  }

  /** Register and watch; resolves once the registry listed this vigil, or its connect timeout passed (vigil starts anyway). */
  async start(): Promise<void> {
    this.started = true
    this.sync()
    await this.consumers.start()
    this.timer = setInterval(() => this.tick(), EVALUATE_EVERY)
    this.timer.unref()
  }

  status(): FleetStatus {
    const v = this.consumers.view
    const upstreams: Record<string, ServerFleetStatus[]> = {}
    for (const u of this.options.upstreams().values()) if (this.groups.has(u.name)) upstreams[u.name] = this.health.status(u)
    return {
      id: this.id,
      path: this.config.path,
      index: v.index,
      count: v.count,
      registered: v.registered,
      consumers: v.ids,
      quorum: this.health.quorum,
      writes: this.writer.status(),
      checks: this.health.checkShare(),
      sources: [...this.subscriptions].map((s) => s.status()),
      upstreams,
    }
  }

  /** A clean stop deletes this vigil's records at once (the lease is revoked, the session closed). */
  async close(): Promise<void> {
    this.started = false
    clearInterval(this.timer)
    this.writer.close()
    const subs = [...this.subscriptions]
    this.subscriptions.clear()
    this.groups.clear()
    await Promise.all(subs.map((s) => s.stop()))
  }

  private tick(): void {
    const now = Date.now()
    for (const g of this.groups.values()) g.refresh(now, this.window)
    this.health.evaluate(now)
  }

  private sync(): void {
    if (!this.started) return
    const upstreams = this.options.upstreams()
    for (const [name, g] of this.groups) {
      if (upstreams.has(name)) continue
      this.groups.delete(name)
      this.subscriptions.delete(g.subscription)
      void g.subscription.stop()
    }
    for (const u of upstreams.values()) {
      let g = this.groups.get(u.name)
      if (g === undefined) {
        const sub = this.open(recordPath(this.config, 'observations', u.name))
        g = new GroupObservations(u.name, sub, this.id, this.writer, this.options.log, this.config.shareChecks !== undefined)
        g.onChange = () => this.health.evaluate()
        const name = u.name
        g.need = (server, now) => this.health.need(name, server, now)
        this.groups.set(u.name, g)
        sub.start()
      }
      g.retain(new Set(u.peers.map((p) => p.address)))
    }
  }

  private open(where: string): Subscription<RawRecord> {
    const s = subscription(this.config.registry, where, rawRecords, this.options.log, Math.max(1, Math.round(ms(this.config.ttl ?? FLEET_DEFAULTS.ttl) / 1000)))
    this.subscriptions.add(s)
    return s
  }
}
