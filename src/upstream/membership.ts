// Live membership: which peers each group has now. Every change (file reload, admin call, DNS answer) lands here
// as one synchronous swap, so a request sees the old set or the new one, never a mixture.
import { EventEmitter } from 'node:events'
import type { Config, GroupConfig, Server, Upstream as UpstreamConfig } from '../config/schema.js'
import { changedSettings, describeServerChange, diffServers, sameJson, serverSpec, type ServerSpec } from '../config/diff.js'
import type { Peer } from './peer.js'
import { connections, Upstream, type Connections } from './upstream.js'
import { Hosts } from './hosts.js'
import type { Consumer } from './subset.js'

/** One server found by discovery; SRV records may suggest a weight and mark lower-priority targets as backups. */
export interface Target {
  address: string
  weight?: number
  backup?: boolean
}

/** What one applied change did, for the reload log line and the status page. */
export interface MembershipChange {
  generation: number
  source: string
  /** "group/address" */
  added: string[]
  removed: string[]
  /** "group/address (weight 1->5)" */
  changed: string[]
  upstreams: { added: string[]; removed: string[]; changed: string[] }
}

/**
 * Listeners run synchronously inside the swap, before the new eligible snapshot is published: a health module
 * can set gates on added peers (e.g. checkUp = false until a first check passes) and check them at once.
 */
export interface MembershipEvents {
  'peers-added': [upstream: Upstream, peers: readonly Peer[]]
  /** Removed peers get no new requests; their in-flight requests finish, then their pools close. */
  'peers-removed': [upstream: Upstream, peers: readonly Peer[]]
  'upstream-added': [upstream: Upstream, config: UpstreamConfig]
  'upstream-removed': [upstream: Upstream]
  /** Settings other than servers changed (names like "balance", "passive", "active"). */
  'upstream-changed': [upstream: Upstream, config: UpstreamConfig, fields: readonly string[]]
  applied: [change: MembershipChange]
}

export interface MembershipOptions {
  /** How long a removed peer's in-flight requests may take before its pool is destroyed. */
  retireGrace: () => number
  /** This vigil's place in its fleet (fleet registration), for `subset` without `id` and `of`; a fleet of one until known. */
  consumer?: () => (Consumer & { index: number; count: number }) | undefined
  /**
   * A cluster worker: each group's servers as its primary's membership built them (src/workers/). The worker
   * serves them as they are, an empty list too, as the primary does: the file, discovery and admin changes are
   * the primary's, and the worker runs no source of its own.
   */
  built?: () => BuiltServers
}

/** Each group's live servers, by group name: what a cluster's primary hands its workers beside the config. */
export type BuiltServers = ReadonlyMap<string, readonly ServerSpec[]>

/** A group's `subset` takes its place from the fleet when neither `id` nor `of` is set by hand. */
const placedByFleet = (config: UpstreamConfig | undefined): boolean => config?.subset !== undefined && config.subset.id === undefined && config.subset.of === undefined

/**
 * The server lists discovery sources handed in, by `listKey(upstream, entry)`: each the complete list of one entry
 * (a DNS name today, a registry path next). Replaced as a whole, never edited: see src/update/queue.ts.
 */
export type ServerLists = ReadonlyMap<string, readonly Target[]>

export const listKey = (upstream: string, entry: string): string => `${upstream}\u0000${entry}`

/**
 * The entry a discovery source hands lists for: a `resolve: true` server's name, or a registry server's source
 * (kind and settings); undefined for a static address.
 */
export function entryOf(s: Server): string | undefined {
  if (s.zookeeper !== undefined) return `zookeeper ${JSON.stringify(s.zookeeper)}`
  if (s.etcd !== undefined) return `etcd ${JSON.stringify(s.etcd)}`
  return s.resolve === true ? s.address : undefined
}

/** A file's groups built but not yet live: new listeners can bind against `upstreams` before the swap. */
export interface PreparedConfig {
  upstreams: ReadonlyMap<string, Upstream>
  commit(source: string): MembershipChange
  discard(): void
}

/** A live group's next generation, built by a change and published by it. */
interface Step {
  previous: Upstream
  next: Upstream
  specs: ServerSpec[]
  /** Settings other than servers that changed (a file reload). */
  fields: readonly string[]
}

/** Sources whose every applied update is a generation, even an empty one (the operator asked for it). */
const FILE_SOURCES = new Set(['watch', 'signal', 'api', 'admin'])

export class RuntimeUpdateError extends Error {
  constructor(
    readonly status: 404 | 409,
    message: string,
  ) {
    super(message)
  }
}

export class Membership extends EventEmitter<MembershipEvents> {
  /** The live groups; replaced as a whole, so readers hold one consistent map. */
  upstreams: ReadonlyMap<string, Upstream>
  generation = 1
  private configs: Map<string, UpstreamConfig>
  /** Live server specs per group, in the order peers are listed. */
  private readonly specs = new Map<string, ServerSpec[]>()
  /** Admin changes on top of the file, per group: a spec to add or update, or null for removed. Cleared by a file reload. */
  private readonly overlays = new Map<string, Map<string, ServerSpec | null>>()
  /** Every server's state, by group and address: what outlives the generations (src/upstream/hosts.ts). */
  private readonly hosts = new Hosts(() => this.options.retireGrace())
  /** The lists applied so far: changed only by a commit. */
  private lists: ServerLists = new Map()

  constructor(
    config: Config['upstreams'],
    private readonly options: MembershipOptions,
  ) {
    super()
    this.configs = new Map(Object.entries(config))
    this.upstreams = new Map([...this.configs].map(([name, c]) => [name, this.build(name, c, this.lists)]))
  }

  /** Peers that were removed and are still finishing requests. */
  get retiringPools(): number {
    return this.hosts.retiringPools
  }

  /** Servers that left every generation and still have attempts in flight (src/upstream/hosts.ts). */
  departed(): IterableIterator<[upstream: string, peer: Peer]> {
    return this.hosts.departed()
  }

  /**
   * The groups of a file, built against the live ones: everything that can fail happens here (reading and parsing
   * TLS files, building new groups and their pools), and nothing live changes. It throws an error naming the
   * setting, after releasing what it built; commit() then only swaps and cannot throw.
   */
  prepare(config: Config['upstreams'], lists: ServerLists = this.lists): PreparedConfig {
    const fresh = new Map<string, Upstream>()
    const next = new Map<string, Upstream>()
    const settings = new Map<string, Connections>()
    const release = (): void => {
      for (const [name, u] of fresh) {
        this.specs.delete(name)
        u.slowStart.stop()
        u.passive.close()
        this.release(u, u.peers)
      }
    }
    try {
      for (const [name, c] of Object.entries(config)) {
        const live = this.upstreams.get(name)
        try {
          if (live !== undefined) {
            // A kept group's next generation (and any new pools) is built by the commit; until then the live
            // generation routes, and a failed prepare leaves nothing behind. Its TLS files are read here.
            next.set(name, live)
            settings.set(name, connections(c))
            continue
          }
          const u = this.build(name, c, lists)
          fresh.set(name, u)
          next.set(name, u)
        } catch (err) {
          throw new Error(`upstreams.${name}.${(err as Error).message}`)
        }
      }
    } catch (err) {
      release()
      throw err
    }
    let done = false
    return {
      upstreams: next,
      commit: (source) => {
        done = true
        return this.commit(config, lists, fresh, settings, source)
      },
      discard: () => {
        if (done) return
        done = true
        release()
      },
    }
  }

  /** Add a server to a group, or change its settings; it lasts until the next file reload. */
  putServer(upstream: string, spec: ServerSpec): MembershipChange {
    return this.overlay(upstream, (o) => o.set(spec.address, spec))
  }

  removeServer(upstream: string, address: string): MembershipChange {
    const specs = this.specs.get(upstream)
    if (specs !== undefined && !specs.some((s) => s.address === address)) throw new RuntimeUpdateError(404, `no server ${address} in upstream "${upstream}"`)
    if (specs?.length === 1) throw new RuntimeUpdateError(409, `${address} is the last server of upstream "${upstream}"; a group must keep at least one`)
    return this.overlay(upstream, (o) => o.set(address, null))
  }

  /**
   * A discovery source's complete list for one entry of one group (DNS answer, registry children); undefined when
   * the group or the entry is not live (any more), or when the list changed nothing live.
   */
  servers(source: string, upstream: string, entry: string, targets: readonly Target[]): MembershipChange | undefined {
    const config = this.configs.get(upstream)
    const live = this.upstreams.get(upstream)
    if (config === undefined || live === undefined || !config.servers.some((s) => entryOf(s) === entry)) return undefined
    const lists = new Map(this.lists)
    lists.set(listKey(upstream, entry), targets)
    this.lists = lists
    const before = this.generation
    const c = this.change(source, (c) => this.advanceServers([live], c))
    return this.generation === before ? undefined : c
  }

  /** Every group with these lists (the first answers at start). */
  discovered(source: string, lists: ServerLists): MembershipChange | undefined {
    this.lists = lists
    const before = this.generation
    const c = this.change(source, (c) => this.advanceServers([...this.upstreams.values()], c))
    return this.generation === before ? undefined : c
  }

  /** Destroy the pools of removed peers still finishing (at shutdown, after the grace period). */
  async close(): Promise<void> {
    await this.hosts.close()
  }

  private overlay(upstream: string, edit: (o: Map<string, ServerSpec | null>) => void): MembershipChange {
    const config = this.configs.get(upstream)
    const live = this.upstreams.get(upstream)
    if (config === undefined || live === undefined) throw new RuntimeUpdateError(404, `no upstream "${upstream}"`)
    let o = this.overlays.get(upstream)
    if (o === undefined) this.overlays.set(upstream, (o = new Map()))
    edit(o)
    return this.change('admin', (c) => this.advanceServers([live], c))
  }

  /** A group that is not live yet (a discarded prepare deletes its specs again). */
  private build(name: string, config: UpstreamConfig, lists: ServerLists): Upstream {
    const specs = this.effective(name, config, lists)
    this.specs.set(name, specs)
    return new Upstream(name, this.generationConfig(config, specs), this.hosts)
  }

  /** A group's config as one generation uses it: its servers, and with a fleet-placed `subset` this vigil's place. */
  private generationConfig(config: UpstreamConfig, servers: ServerSpec[]): GroupConfig {
    if (!placedByFleet(config)) return { ...config, servers }
    const { id, index, count, ids } = this.options.consumer?.() ?? { id: '0', index: 0, count: 1, ids: ['0'] }
    return { ...config, servers, subset: { ...(config.subset as NonNullable<UpstreamConfig['subset']>), id: index, of: count }, placement: { id, ids } }
  }

  /**
   * This vigil's place in the fleet changed (a consumer joined or left): every group whose subset the fleet places
   * gets its next generation, same servers, its subset recomputed. Undefined when that moved no subset.
   */
  consumersChanged(): MembershipChange | undefined {
    const before = this.generation
    const c = this.change('fleet', (c) => {
      const steps: Step[] = []
      for (const live of this.upstreams.values()) {
        const config = this.configs.get(live.name)
        if (!placedByFleet(config)) continue
        const { subset, placement } = this.generationConfig(config as UpstreamConfig, [])
        if (sameJson(placement, live.config.placement)) continue
        steps.push(this.step(live, config as UpstreamConfig, live.connections, []))
        c.upstreams.changed.push(`${live.name} (subset: consumer ${String(subset?.id)} of ${String(subset?.of)})`)
      }
      this.advance(steps, c)
    })
    return this.generation === before ? undefined : c
  }

  /**
   * The file's static servers, then each resolve or registry entry's last list, then the admin overlay; first
   * address wins. A cluster worker's are the ones its primary built.
   */
  private effective(name: string, config: UpstreamConfig, lists: ServerLists = this.lists): ServerSpec[] {
    const built = this.options.built?.().get(name)
    if (built !== undefined) return [...built]
    const out = new Map<string, ServerSpec>()
    for (const s of config.servers) {
      const entry = entryOf(s)
      if (entry === undefined) {
        if (s.address !== undefined && !out.has(s.address)) out.set(s.address, serverSpec({ ...s, address: s.address }))
        continue
      }
      for (const t of lists.get(listKey(name, entry)) ?? []) {
        if (!out.has(t.address)) out.set(t.address, { ...serverSpec({ ...s, address: t.address, weight: s.weight ?? t.weight }), backup: (s.backup ?? false) || (t.backup ?? false) })
      }
    }
    for (const [address, spec] of this.overlays.get(name) ?? []) {
      if (spec === null) out.delete(address)
      else out.set(address, spec)
    }
    return [...out.values()]
  }

  private change(source: string, apply: (c: MembershipChange) => void): MembershipChange {
    const c: MembershipChange = { generation: this.generation, source, added: [], removed: [], changed: [], upstreams: { added: [], removed: [], changed: [] } }
    apply(c)
    const empty = c.added.length + c.removed.length + c.changed.length + c.upstreams.added.length + c.upstreams.removed.length + c.upstreams.changed.length === 0
    // A discovery answer that changes nothing is not a new generation; a reload or an admin call always is.
    if (empty && !FILE_SOURCES.has(source)) return c
    c.generation = ++this.generation
    this.emit('applied', c)
    return c
  }

  private commit(config: Config['upstreams'], lists: ServerLists, fresh: ReadonlyMap<string, Upstream>, settings: ReadonlyMap<string, Connections>, source: string): MembershipChange {
    return this.change(source, (c) => {
      this.overlays.clear()
      this.lists = lists
      const before = this.configs
      const previous = this.upstreams
      this.configs = new Map(Object.entries(config))
      // Every kept group gets its next generation, with the connection settings prepare() read: a rotated CA file
      // under an unchanged config text is new connection settings, so new pools (src/upstream/hosts.ts).
      const steps: Step[] = []
      const next = new Map<string, Upstream>()
      for (const name of Object.keys(config)) {
        const u = fresh.get(name)
        if (u !== undefined) {
          next.set(name, u)
          continue
        }
        const live = previous.get(name) as Upstream
        const cfg = this.configs.get(name) as UpstreamConfig
        const step = this.step(live, cfg, settings.get(name) as Connections, changedSettings(before.get(name) as UpstreamConfig, cfg))
        steps.push(step)
        next.set(name, step.next)
      }
      // Swapped first, so event listeners below already see the new map.
      this.upstreams = next
      for (const [name, u] of previous) {
        if (next.has(name)) continue
        c.upstreams.removed.push(name)
        u.slowStart.stop()
        u.passive.close()
        // Requests waiting for room in a group that is gone have nowhere to go: answered now, not at their timeout.
        u.queue?.refuseAll('upstream_removed', `upstream "${name}" was removed by a reload`)
        this.retire(u, this.release(u, u.peers), c)
        this.specs.delete(name)
        this.emit('upstream-removed', u)
      }
      for (const [name, u] of fresh) {
        c.upstreams.added.push(name)
        for (const p of u.peers) c.added.push(`${name}/${p.address}`)
        this.emit('upstream-added', u, this.configs.get(name) as UpstreamConfig)
      }
      for (const step of steps) {
        const fields = step.fields
        if (fields.length > 0) c.upstreams.changed.push(`${step.next.name} (${fields.join(', ')})`)
        else if (step.next.connections.key !== step.previous.connections.key) c.upstreams.changed.push(`${step.next.name} (tls files)`)
        this.publish(step, c)
        if (fields.length > 0) this.emit('upstream-changed', step.next, this.configs.get(step.next.name) as UpstreamConfig, fields)
      }
    })
  }

  /** Admin and discovery changes: each group whose server list changed gets its next generation, same settings. */
  private advanceServers(groups: readonly Upstream[], c: MembershipChange): void {
    const steps: Step[] = []
    for (const live of groups) {
      const specs = this.effective(live.name, this.configs.get(live.name) as UpstreamConfig)
      if (sameJson(specs, this.specs.get(live.name))) continue
      steps.push(this.step(live, this.configs.get(live.name) as UpstreamConfig, live.connections, []))
    }
    this.advance(steps, c)
  }

  /** Swap in the next generations of these live groups and publish them. */
  private advance(steps: readonly Step[], c: MembershipChange): void {
    if (steps.length === 0) return
    const next = new Map(this.upstreams)
    for (const step of steps) next.set(step.next.name, step.next)
    this.upstreams = next
    for (const step of steps) this.publish(step, c)
  }

  /**
   * The next generation of a live group, built (its servers acquired: a kept one is the same state, with the new
   * settings and maybe a new pool) but not published.
   */
  private step(previous: Upstream, config: UpstreamConfig, connections: Connections, fields: readonly string[]): Step {
    const specs = this.effective(previous.name, config)
    const next = new Upstream(previous.name, this.generationConfig(config, specs), this.hosts, { previous, connections })
    return { previous, next, specs, fields }
  }

  /**
   * Make a built generation live: added servers are announced before the new snapshot is published (a health
   * module may set their gates), then the previous generation releases its servers; one no generation holds any
   * more retires (no new requests, its pool closes once its requests are done).
   */
  private publish({ previous, next, specs }: Step, c: MembershipChange): void {
    const name = next.name
    const d = diffServers(this.specs.get(name) ?? [], specs)
    this.specs.set(name, specs)
    for (const pair of d.changed) c.changed.push(`${name}/${describeServerChange(pair)}`)
    for (const s of d.added) c.added.push(`${name}/${s.address}`)
    const known = new Set(previous.peers)
    const added = next.peers.filter((p) => !known.has(p))
    if (added.length > 0) this.emit('peers-added', next, added)
    this.retire(next, this.release(previous, previous.peers), c)
    next.publish()
  }

  /** `peers` are no longer held by `u`'s previous generation; those no generation holds any more. */
  private release(u: Upstream, peers: readonly Peer[]): Peer[] {
    return peers.filter((p) => this.hosts.release(u.name, p))
  }

  /** Peers that left the registry: they get no new requests, and their pools are closing (src/upstream/hosts.ts). */
  private retire(u: Upstream, peers: readonly Peer[], c: MembershipChange): void {
    if (peers.length === 0) return
    for (const p of peers) c.removed.push(`${u.name}/${p.address}`)
    this.emit('peers-removed', u, peers)
  }
}
