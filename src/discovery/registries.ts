// Registry sources of every group: server entries with a `zookeeper` or `etcd` source. Entries that watch the same
// path or prefix with the same connection settings share one subscription; each entry is a Binding that hears
// every list and applies the protection rules for its own group.
import type { Logger } from 'pino'
import type { Config, EtcdSource, Server, ZooKeeperSource } from '../config/schema.js'
import { ms } from '../config/duration.js'
import { entryOf, listKey, type ServerLists, type Target } from '../upstream/membership.js'
import { DEFAULTS } from './defaults.js'
import { EtcdSubscription } from './etcd.js'
import { providerRecords, type Records } from './formats.js'
import { Binding, type BindingStatus, type GroupHealth } from './protection.js'
import type { Kind, Subscription, SubscriptionStatus } from './subscription.js'
import { ZooKeeperSubscription } from './zookeeper.js'


/** Settings of the entry, not of the subscription: entries that differ only in these share one. */
const PER_ENTRY = ['cacheFile', 'removalGrace', 'maxRemovalPercent', 'confirmDelay', 'allowEmpty'] as const

export interface RegistriesOptions {
  log: Logger
  health(upstream: string): GroupHealth
  /** The complete list of one registry entry of a group changed: hand it to the update queue. */
  changed(kind: Kind, upstream: string, entry: string, targets: readonly Target[], detail: { source: string; cause: string }): void
}

export class RegistryStartError extends Error {
  readonly code = 'VIGIL_REGISTRY_UNREACHABLE'
}

export interface SourceStatus extends SubscriptionStatus {
  upstreams: BindingStatus[]
}

type RegistryServer = Server & ({ zookeeper: ZooKeeperSource } | { etcd: EtcdSource })

export const isRegistryServer = (s: Server): s is RegistryServer => s.zookeeper !== undefined || s.etcd !== undefined

export class Registries {
  private readonly subscriptions = new Map<string, Subscription>()
  private readonly bindings = new Map<string, Binding>()

  constructor(private readonly options: RegistriesOptions) {}

  /** The lists the registry entries of `upstreams` give their groups now, as a prepare hands them to the membership. */
  lists(upstreams: Config['upstreams']): ServerLists {
    const out = new Map<string, readonly Target[]>()
    for (const [name, u] of Object.entries(upstreams)) {
      for (const s of u.servers) if (isRegistryServer(s)) out.set(bindingKey(name, s), this.bindings.get(bindingKey(name, s))?.applied ?? [])
    }
    return out
  }

  /**
   * Subscribe the entries of `upstreams` not known yet; resolves once each has a first list (from the registry,
   * or else from its cache file). Throws a RegistryStartError naming every source that has neither.
   */
  async prime(upstreams: Config['upstreams']): Promise<void> {
    const fresh: string[] = []
    for (const [name, u] of Object.entries(upstreams)) {
      u.servers.forEach((s, i) => {
        const key = bindingKey(name, s)
        if (!isRegistryServer(s) || this.bindings.has(key)) return
        this.bind(key, name, `upstreams.${name}.servers[${i}].${s.zookeeper !== undefined ? 'zookeeper' : 'etcd'}`, s)
        fresh.push(key)
      })
    }
    const failures = (await Promise.all(fresh.map((k) => this.first(this.bindings.get(k) as Binding)))).filter((e): e is string => e !== undefined)
    if (failures.length === 0) return
    for (const k of fresh) this.unbind(k)
    throw new RegistryStartError(failures.join('; '))
  }

  /** Drop the entries `upstreams` no longer lists, and subscriptions nobody watches any more. */
  retain(upstreams: Config['upstreams']): void {
    const keep = new Set<string>()
    for (const [name, u] of Object.entries(upstreams)) for (const s of u.servers) if (isRegistryServer(s)) keep.add(bindingKey(name, s))
    for (const k of [...this.bindings.keys()]) if (!keep.has(k)) this.unbind(k)
  }

  /** An active check of `upstream` failed: a server held after leaving the registry may have to go. */
  checkFailed(upstream: string): void {
    for (const b of this.bindings.values()) if (b.upstream === upstream) b.recheck()
  }

  status(): SourceStatus[] {
    const now = Date.now()
    return [...this.subscriptions.values()].map((s) => ({
      ...s.status(now),
      upstreams: [...this.bindings.values()].filter((b) => b.subscription === s).map((b) => b.status()),
    }))
  }

  /** The live subscriptions (tests and drills reach the lost-event hook through them). */
  get sources(): readonly Subscription[] {
    return [...this.subscriptions.values()]
  }

  async close(): Promise<void> {
    for (const b of this.bindings.values()) b.close()
    this.bindings.clear()
    const subs = [...this.subscriptions.values()]
    this.subscriptions.clear()
    await Promise.all(subs.map((s) => s.stop()))
  }

  private bind(key: string, upstream: string, at: string, s: RegistryServer): Binding {
    const source = (s.zookeeper ?? s.etcd) as ZooKeeperSource | EtcdSource
    const shared = subscriptionKey(s)
    let sub = this.subscriptions.get(shared)
    if (sub === undefined) {
      sub = this.subscribe(s)
      this.subscriptions.set(shared, sub)
      sub.start()
    }
    const b = new Binding(
      upstream,
      at,
      sub,
      {
        cacheFile: source.cacheFile,
        removalGrace: ms(source.removalGrace ?? DEFAULTS.removalGrace),
        maxRemovalPercent: source.maxRemovalPercent ?? DEFAULTS.maxRemovalPercent,
        confirmDelay: ms(source.confirmDelay ?? DEFAULTS.confirmDelay),
        allowEmpty: source.allowEmpty ?? false,
      },
      this.options.health(upstream),
      (binding, cause) => this.options.changed(sub.kind, upstream, entryOf(s) as string, binding.applied, { source: sub.source, cause }),
      this.options.log,
    )
    this.bindings.set(key, b)
    sub.listeners.add(b.listener)
    return b
  }

  /** Undefined when the entry has a first list; else why start cannot go on. */
  private async first(b: Binding): Promise<string | undefined> {
    const sub = b.subscription
    if (await sub.ready()) {
      // The subscription may have delivered before this entry joined it.
      if (sub.targets !== undefined && b.applied.length === 0) b.offer(sub.targets, 'first')
      return undefined
    }
    const cached = b.startFromCache()
    if (cached === true) return undefined
    const why = sub.lastError === undefined ? `no answer within ${sub.settings.connectTimeout} ms` : sub.lastError
    return `${b.at}: ${sub.source} is unreachable (${why}) and there is no cache to start from (${cached.message})`
  }

  private unbind(key: string): void {
    const b = this.bindings.get(key)
    if (b === undefined) return
    b.close()
    this.bindings.delete(key)
    const sub = b.subscription
    sub.listeners.delete(b.listener)
    if (sub.listeners.size > 0) return
    for (const [k, s] of this.subscriptions) if (s === sub) this.subscriptions.delete(k)
    void sub.stop()
  }

  private subscribe(s: RegistryServer): Subscription {
    const source = (s.zookeeper ?? s.etcd) as ZooKeeperSource | EtcdSource
    const where = s.zookeeper !== undefined ? s.zookeeper.path : (s.etcd as EtcdSource).prefix
    return subscription(s, where, providerRecords(source.format ?? 'hostport', source.fields), this.options.log)
  }
}

/** How to reach a registry: a server entry's source, or `fleet.registry`. */
export interface RegistryConnection {
  zookeeper?: ZooKeeperConnection | undefined
  etcd?: EtcdConnection | undefined
}
type ZooKeeperConnection = Pick<ZooKeeperSource, 'servers' | 'sessionTimeout' | 'auth' | 'connectTimeout' | 'resyncInterval' | 'staleAfter'>
type EtcdConnection = Pick<EtcdSource, 'endpoints' | 'username' | 'password' | 'tls' | 'connectTimeout' | 'resyncInterval' | 'staleAfter'>

/**
 * A subscription to `where` (a ZooKeeper path, an etcd prefix) of the registry `r` connects to, reading `records`:
 * discovery's providers, or the fleet's own records (src/fleet/), with the same client, session and resync handling.
 */
export function subscription<E>(r: RegistryConnection, where: string, records: Records<E>, log: Logger, leaseTtl?: number): Subscription<E> {
  if (r.zookeeper !== undefined) {
    const z = r.zookeeper
    return new ZooKeeperSubscription(
      { ...common(z), servers: z.servers, path: where, sessionTimeout: ms(z.sessionTimeout ?? DEFAULTS.sessionTimeout), auth: z.auth },
      records,
      log,
    )
  }
  const e = r.etcd as EtcdConnection
  return new EtcdSubscription({ ...common(e), endpoints: e.endpoints, prefix: where, username: e.username, password: e.password, tls: e.tls, leaseTtl }, records, log)
}

function common(s: Pick<ZooKeeperSource | EtcdSource, 'connectTimeout' | 'resyncInterval' | 'staleAfter'>): { connectTimeout: number; resyncInterval: number; staleAfter: number } {
  const resyncInterval = ms(s.resyncInterval ?? DEFAULTS.resyncInterval)
  return {
    connectTimeout: ms(s.connectTimeout ?? DEFAULTS.connectTimeout),
    resyncInterval,
    staleAfter: s.staleAfter === undefined ? resyncInterval * DEFAULTS.staleResyncs : ms(s.staleAfter),
  }
}

/** The connection settings of an entry, without its per-entry settings: equal keys share one subscription. */
function subscriptionKey(s: RegistryServer): string {
  const kind = s.zookeeper !== undefined ? 'zookeeper' : 'etcd'
  const source: Record<string, unknown> = { ...((s.zookeeper ?? s.etcd) as object) }
  for (const k of PER_ENTRY) delete source[k]
  return `${kind}\u0000${JSON.stringify(source, Object.keys(source).sort())}`
}

/** The membership's key for an entry's list, which is also the entry's binding here. */
const bindingKey = (upstream: string, server: Server): string => listKey(upstream, entryOf(server) as string)
