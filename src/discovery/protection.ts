// One group's view of a registry source, with the rules that protect it from a registry that lies: a list that
// drops most of the group waits for a second read; an empty list never empties a group that still has healthy
// servers (unless allowed); a server that left the registry but still passes its active checks keeps its traffic
// until it fails one or removalGrace passes (Envoy's rule). Health evidence outranks the registry either way.
import type { Logger } from 'pino'
import { sameJson } from '../config/diff.js'
import type { Target } from '../upstream/membership.js'
import { readCache, writeCache } from './cache.js'
import type { ReadCause, Subscription } from './subscription.js'

export interface ProtectionSettings {
  removalGrace: number
  maxRemovalPercent: number
  confirmDelay: number
  allowEmpty: boolean
  cacheFile: string | undefined
}

export type HoldReason = 'passing checks' | 'empty list' | 'awaiting confirmation'

export interface HeldServer {
  address: string
  reason: HoldReason
  since: string
}

/** What the protection rules need to know about the group's health. */
export interface GroupHealth {
  /** Some server of the group may receive traffic now. */
  healthy(): boolean
  /** The group has active checks and this server passes them. */
  passing(address: string): boolean
}

export interface BindingStatus {
  upstream: string
  servers: number
  cacheFile: string | undefined
  /** The list came from the cache file and no read has replaced it yet. */
  fromCache: boolean
  held: HeldServer[]
}

interface Hold {
  target: Target
  reason: HoldReason
  since: number
}

export class Binding {
  /** The registry's list as accepted (confirmed when it had to be). */
  private desired: readonly Target[] = []
  /** The last list the registry offered, accepted or not. */
  private offered: readonly Target[] = []
  /** What the group serves: `desired` plus servers held by the rules. */
  applied: readonly Target[] = []
  private held = new Map<string, Hold>()
  /** Why the offered list is not accepted yet, since when. */
  private blocked: { reason: 'empty list' | 'awaiting confirmation'; since: number } | undefined
  private started = false
  private fromCache = false
  private timer: NodeJS.Timeout | undefined
  readonly listener = (targets: readonly Target[], cause: ReadCause): void => this.offer(targets, cause)

  constructor(
    readonly upstream: string,
    /** "upstreams.api.servers[0].zookeeper", for errors. */
    readonly at: string,
    readonly subscription: Subscription,
    private readonly settings: ProtectionSettings,
    private readonly health: GroupHealth,
    private readonly changed: (binding: Binding, cause: string) => void,
    private readonly log: Logger,
  ) {}

  /** Start from the cache file; false (and the reason) when there is none to use. */
  startFromCache(): Error | true {
    if (this.settings.cacheFile === undefined) return new Error('no cacheFile is set')
    const c = readCache(this.settings.cacheFile)
    if (c instanceof Error) return c
    this.started = true
    this.fromCache = true
    this.desired = this.offered = c.targets
    this.evaluate()
    this.log.warn(
      { upstream: this.upstream, source: this.subscription.source, cacheFile: this.settings.cacheFile, cachedAt: c.at, servers: c.targets.map((t) => t.address) },
      'registry unreachable at start; serving the list from the cache file until the first successful read',
    )
    return true
  }

  /** A complete list from the subscription. */
  offer(targets: readonly Target[], cause: ReadCause): void {
    this.offered = targets
    if (!this.started) return this.accept(targets, cause)
    const listed = new Set(targets.map((t) => t.address))
    const removed = this.desired.filter((t) => !listed.has(t.address))
    if (targets.length === 0 && this.desired.length > 0 && !this.settings.allowEmpty && this.health.healthy()) {
      if (this.blocked?.reason !== 'empty list') {
        this.blocked = { reason: 'empty list', since: Date.now() }
        this.log.warn({ upstream: this.upstream, source: this.subscription.source, keeping: this.desired.map((t) => t.address) }, 'registry lists no servers; the group keeps its healthy servers (allowEmpty is false)')
      }
      return this.evaluate()
    }
    const share = this.desired.length === 0 ? 0 : (removed.length * 100) / this.desired.length
    if (share > this.settings.maxRemovalPercent) {
      const waited = this.blocked?.reason === 'awaiting confirmation' && Date.now() - this.blocked.since >= this.settings.confirmDelay
      if (!(cause === 'confirm' && waited)) {
        if (this.blocked?.reason !== 'awaiting confirmation') {
          this.blocked = { reason: 'awaiting confirmation', since: Date.now() }
          this.log.warn(
            { upstream: this.upstream, source: this.subscription.source, removing: removed.map((t) => t.address), of: this.desired.length, confirmDelay: this.settings.confirmDelay },
            `registry list drops ${removed.length} of ${this.desired.length} servers (over maxRemovalPercent ${this.settings.maxRemovalPercent}); waiting for a second read`,
          )
        }
        this.subscription.confirm(this.settings.confirmDelay)
        return this.evaluate()
      }
      this.log.info({ upstream: this.upstream, source: this.subscription.source, removing: removed.map((t) => t.address) }, 'a second read confirms the removal; applying it')
    }
    this.accept(targets, cause)
  }

  /** An active check failed (or the grace timer fired): a held server may have to go now. */
  recheck(): void {
    if (this.held.size > 0) this.evaluate()
  }

  status(): BindingStatus {
    return {
      upstream: this.upstream,
      servers: this.applied.length,
      cacheFile: this.settings.cacheFile,
      fromCache: this.fromCache,
      held: [...this.held.values()].map((h) => ({ address: h.target.address, reason: h.reason, since: new Date(h.since).toISOString() })),
    }
  }

  close(): void {
    clearTimeout(this.timer)
  }

  private accept(targets: readonly Target[], cause: ReadCause | 'cache'): void {
    const first = !this.started
    this.started = true
    this.blocked = undefined
    const wasCache = this.fromCache
    this.fromCache = false
    const same = sameJson(this.desired, targets)
    this.desired = targets
    if (wasCache) this.log.info({ upstream: this.upstream, source: this.subscription.source }, 'first successful registry read replaces the cached list')
    const file = this.settings.cacheFile
    if (file !== undefined && (!same || first || wasCache)) {
      writeCache(file, { source: this.subscription.source, at: new Date().toISOString(), targets: [...targets] }).catch((err: Error) =>
        this.log.warn({ upstream: this.upstream, cacheFile: file, err: err.message }, 'cannot write the registry cache file'),
      )
    }
    this.evaluate(cause)
  }

  /** `applied` from `desired` and the holds; tells the update path when it changed. */
  private evaluate(cause: string = 'protection'): void {
    const now = Date.now()
    const listed = new Set(this.offered.map((t) => t.address))
    const desired = new Set(this.desired.map((t) => t.address))
    const held = new Map<string, Hold>()
    if (this.blocked !== undefined) {
      for (const t of this.desired) if (!listed.has(t.address)) held.set(t.address, { target: t, reason: this.blocked.reason, since: this.blocked.since })
    }
    for (const t of this.applied) {
      if (desired.has(t.address)) continue
      const before = this.held.get(t.address)
      const since = before?.reason === 'passing checks' ? before.since : now
      if (this.health.passing(t.address) && now - since < this.settings.removalGrace) held.set(t.address, { target: t, reason: 'passing checks', since })
    }
    for (const [address, h] of held) {
      if (h.reason === 'passing checks' && !this.held.has(address)) {
        this.log.info({ upstream: this.upstream, server: address, source: this.subscription.source, removalGrace: this.settings.removalGrace }, 'server left the registry but passes its checks; it keeps traffic until a check fails or removalGrace passes')
      }
    }
    this.held = held
    const applied = [...this.desired, ...[...held.values()].filter((h) => h.reason === 'passing checks').map((h) => h.target)]
    this.armGrace(now)
    if (sameJson(applied, this.applied)) return
    this.applied = applied
    this.changed(this, cause)
  }

  private armGrace(now: number): void {
    clearTimeout(this.timer)
    const ends = [...this.held.values()].filter((h) => h.reason === 'passing checks').map((h) => h.since + this.settings.removalGrace)
    if (ends.length === 0) return
    this.timer = setTimeout(() => this.evaluate('removalGrace'), Math.max(0, Math.min(...ends) - now) + 1)
    this.timer.unref()
  }
}
