// Live membership: which peers each group has now. Every change (file reload, admin call, DNS answer) lands here
// as one synchronous swap, so a request sees the old set or the new one, never a mixture.
import { EventEmitter } from 'node:events'
import type { Pool } from 'undici'
import type { Config, Server, Upstream as UpstreamConfig } from '../config/schema.js'
import { changedSettings, describeServerChange, diffServers, serverSpec, type ServerSpec } from '../config/diff.js'
import { createBalancer } from '../balance/index.js'
import { SlowStart } from '../balance/slow-start.js'
import { ms } from '../config/duration.js'
import { sameJson } from '../config/diff.js'
import { maxConns, type Peer } from './peer.js'
import { activeCheck, connections, Upstream } from './upstream.js'
import { PassiveHealth } from '../health/passive.js'
import { RetryPolicy } from '../proxy/retry.js'

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
  /** The last good answer for a `resolve: true` entry (src/upstream/discovery.ts). */
  discovered: (upstream: string, name: string) => readonly Target[]
  /** The servers a `zookeeper` or `etcd` entry gives its group now (src/discovery/registries.ts). */
  registered: (upstream: string, server: Server) => readonly Target[]
}

/** Sources whose answer may change nothing: such an answer is not a new generation. */
const DISCOVERY = new Set(['dns', 'zookeeper', 'etcd'])

/** A file's groups built but not yet live: new listeners can bind against `upstreams` before the swap. */
export interface PreparedConfig {
  upstreams: ReadonlyMap<string, Upstream>
  commit(source: string): MembershipChange
  discard(): void
}

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
  private readonly retiring = new Set<Pool>()

  constructor(
    config: Config['upstreams'],
    private readonly options: MembershipOptions,
  ) {
    super()
    this.configs = new Map(Object.entries(config))
    this.upstreams = new Map([...this.configs].map(([name, c]) => [name, this.build(name, c)]))
  }

  /** Peers that were removed and are still finishing requests. */
  get retiringPools(): number {
    return this.retiring.size
  }

  /** The groups of a file, built against the live ones; nothing changes until commit. */
  prepare(config: Config['upstreams']): PreparedConfig {
    const fresh = new Map<string, Upstream>()
    const next = new Map<string, Upstream>()
    for (const [name, c] of Object.entries(config)) {
      const live = this.upstreams.get(name)
      if (live !== undefined) next.set(name, live)
      else {
        const u = this.build(name, c)
        fresh.set(name, u)
        next.set(name, u)
      }
    }
    let done = false
    return {
      upstreams: next,
      commit: (source) => {
        done = true
        return this.commit(config, next, fresh, source)
      },
      discard: () => {
        if (done) return
        done = true
        for (const [name, u] of fresh) {
          this.specs.delete(name)
          void u.close()
        }
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

  /** Re-apply a group after one of its DNS answers or registry lists changed; undefined when that changed nothing live. */
  rediscover(upstream: string, source: 'dns' | 'zookeeper' | 'etcd' = 'dns'): MembershipChange | undefined {
    const config = this.configs.get(upstream)
    const live = this.upstreams.get(upstream)
    if (config === undefined || live === undefined) return undefined
    const before = this.generation
    const c = this.change(source, (c) => this.applyServers(live, this.effective(upstream, config), c))
    return this.generation === before ? undefined : c
  }

  /** Destroy the pools of removed peers still finishing (at shutdown, after the grace period). */
  async close(): Promise<void> {
    await Promise.all([...this.retiring].map((p) => p.destroy()))
    this.retiring.clear()
  }

  private overlay(upstream: string, edit: (o: Map<string, ServerSpec | null>) => void): MembershipChange {
    const config = this.configs.get(upstream)
    const live = this.upstreams.get(upstream)
    if (config === undefined || live === undefined) throw new RuntimeUpdateError(404, `no upstream "${upstream}"`)
    let o = this.overlays.get(upstream)
    if (o === undefined) this.overlays.set(upstream, (o = new Map()))
    edit(o)
    return this.change('admin', (c) => this.applyServers(live, this.effective(upstream, config), c))
  }

  /** A group that is not live yet (a discarded prepare deletes its specs again). */
  private build(name: string, config: UpstreamConfig): Upstream {
    const specs = this.effective(name, config)
    this.specs.set(name, specs)
    return new Upstream(name, { ...config, servers: specs })
  }

  /** The file's static servers, then each resolve or registry entry's last list, then the admin overlay; first address wins. */
  private effective(name: string, config: UpstreamConfig): ServerSpec[] {
    const out = new Map<string, ServerSpec>()
    for (const s of config.servers) {
      if (s.address !== undefined && s.resolve !== true) {
        if (!out.has(s.address)) out.set(s.address, serverSpec({ ...s, address: s.address }))
        continue
      }
      const found = s.address === undefined ? this.options.registered(name, s) : this.options.discovered(name, s.address)
      for (const t of found) {
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
    // A DNS answer or registry list that changes nothing is not a new generation; a reload or an admin call always is.
    if (empty && DISCOVERY.has(source)) return c
    c.generation = ++this.generation
    this.emit('applied', c)
    return c
  }

  private commit(config: Config['upstreams'], next: Map<string, Upstream>, fresh: ReadonlyMap<string, Upstream>, source: string): MembershipChange {
    return this.change(source, (c) => {
      this.overlays.clear()
      const before = this.configs
      const previous = this.upstreams
      // Swapped first, so event listeners below already see the new map.
      this.configs = new Map(Object.entries(config))
      this.upstreams = next
      for (const [name, u] of previous) {
        if (next.has(name)) continue
        c.upstreams.removed.push(name)
        u.slowStart.stop()
        u.passive.close()
        this.retire(u, u.peers, c)
        this.specs.delete(name)
        this.emit('upstream-removed', u)
      }
      for (const [name, u] of next) {
        const cfg = this.configs.get(name) as UpstreamConfig
        if (fresh.has(name)) {
          c.upstreams.added.push(name)
          for (const p of u.peers) c.added.push(`${name}/${p.address}`)
          this.emit('upstream-added', u, cfg)
          continue
        }
        const fields = changedSettings(before.get(name) as UpstreamConfig, cfg)
        const specs = this.effective(name, cfg)
        if (fields.length > 0) {
          this.reconfigure(u, cfg, fields, specs)
          c.upstreams.changed.push(`${name} (${fields.join(', ')})`)
        }
        this.applyServers(u, specs, c)
        if (fields.length > 0) this.emit('upstream-changed', u, cfg, fields)
      }
    })
  }

  /**
   * Settings of a kept group. Connections survive unless timeouts or maxResponseSize changed (an undici pool's
   * options are fixed); tls, queue and ewmaDecay of kept servers wait for a restart (src/reload.ts warns).
   */
  private reconfigure(u: Upstream, config: UpstreamConfig, fields: readonly string[], specs: ServerSpec[]): void {
    u.balancer = createBalancer({ ...config, servers: specs })
    u.hostHeader = config.host
    // The active checker picks the new check up in the same swap ('applied' -> ActiveChecker.update).
    u.active = activeCheck(config)
    if (fields.includes('retry')) u.retry = new RetryPolicy(config.retry)
    // New passive settings start passive accounting afresh (ejections end); unchanged ones keep every peer's state.
    if (fields.includes('passive')) {
      u.passive.close()
      u.passive = new PassiveHealth(u, config.passive)
    }
    if (fields.includes('slowStart')) {
      u.slowStart.stop()
      u.slowStart = new SlowStart(ms(config.slowStart ?? 0))
    }
    const next = connections(config)
    const before = u.connections
    u.connections = next
    if (!sameJson(next.timeouts, before.timeouts) || next.pool.maxResponseSize !== before.pool.maxResponseSize) {
      for (const p of u.peers) this.retirePool(p.replacePool(next.pool))
    }
  }

  /** Make `u` serve exactly `specs`: kept peers stay (state, counters, pool), new ones are built, gone ones retire. */
  private applyServers(u: Upstream, specs: ServerSpec[], c: MembershipChange): void {
    const d = diffServers(this.specs.get(u.name) ?? [], specs)
    this.specs.set(u.name, specs)
    if (d.added.length + d.removed.length + d.changed.length === 0) return
    const byAddress = new Map(u.peers.map((p) => [p.address, p]))
    for (const [before, after] of d.changed) {
      const p = byAddress.get(after.address) as Peer
      // A peer still ramping up in slow start gets the new weight when its ramp ends.
      if (p.effectiveWeight === p.weight) p.effectiveWeight = after.weight
      p.weight = after.weight
      p.backup = after.backup
      p.configDown = after.down
      p.maxConns = maxConns(after)
      c.changed.push(`${u.name}/${describeServerChange([before, after])}`)
    }
    const added: Peer[] = []
    for (const s of d.added) {
      const p = u.createPeer(s)
      byAddress.set(s.address, p)
      added.push(p)
      c.added.push(`${u.name}/${s.address}`)
    }
    const removed = d.removed.map((s) => byAddress.get(s.address) as Peer)
    u.peers = specs.map((s) => byAddress.get(s.address) as Peer)
    u.passive.sync()
    // Policies that size themselves from the set (the hash ring's total weight) are rebuilt with it.
    u.balancer = createBalancer({ ...(this.configs.get(u.name) as UpstreamConfig), servers: specs })
    if (added.length > 0) this.emit('peers-added', u, added)
    this.retire(u, removed, c)
    u.refresh()
  }

  private retire(u: Upstream, peers: readonly Peer[], c: MembershipChange): void {
    if (peers.length === 0) return
    for (const p of peers) {
      c.removed.push(`${u.name}/${p.address}`)
      this.retirePool(p.pool)
    }
    this.emit('peers-removed', u, peers)
  }

  /** Close once in-flight requests are done, but never wait longer than the grace period. */
  private retirePool(pool: Pool): void {
    this.retiring.add(pool)
    const timer = setTimeout(() => void pool.destroy(), this.options.retireGrace())
    timer.unref()
    pool.close().then(
      () => {
        clearTimeout(timer)
        this.retiring.delete(pool)
      },
      () => this.retiring.delete(pool),
    )
  }
}
