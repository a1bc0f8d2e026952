// What every registry subscription does, whatever the registry: deliver complete lists to its listeners, resync in
// full on an interval and count a difference as a drift (a lost event), and say when its list has gone stale.
// zookeeper.ts and etcd.ts only say how to read, watch and re-watch.
import type { Logger } from 'pino'
import { sameJson } from '../config/diff.js'
import type { Target } from '../upstream/membership.js'
import type { Records } from './formats.js'

export type Kind = 'zookeeper' | 'etcd'

/** Why a list was delivered: the first read, a watch event, a re-list after a reconnect, a resync, a confirming read. */
export type ReadCause = 'first' | 'watch' | 'relist' | 'resync' | 'confirm' | 'drift'

/** One read of the registry: `E` is a provider (Target) for discovery, a raw record for the fleet (src/fleet/). */
export interface Listing<E = Target> {
  targets: readonly E[]
  /** Records that did not parse: "name: why". */
  invalid: readonly string[]
  /** ZooKeeper: the parent's pzxid; etcd: the revision the list is at. */
  version: string
}

export interface SubscriptionSettings {
  resyncInterval: number
  staleAfter: number
  connectTimeout: number
}

export type ListListener<E = Target> = (targets: readonly E[], cause: ReadCause) => void

export interface Drift {
  at: string
  /** In the registry, never delivered. */
  missing: string[]
  /** Delivered, no longer in the registry. */
  unexpected: string[]
}

/** What the status page and metrics show about one subscription. */
export interface SubscriptionStatus {
  kind: Kind
  source: string
  path: string
  connected: boolean
  session: string | undefined
  version: string | undefined
  lastRead: string | undefined
  ageSeconds: number | undefined
  servers: number
  stale: boolean
  drifts: number
  lastDrift: Drift | undefined
  lastError: string | undefined
}

export abstract class Subscription<E = Target> {
  abstract readonly kind: Kind
  /** Every upstream entry that watches this source: each hears every list (a Set, never a shared array). */
  readonly listeners = new Set<ListListener<E>>()
  connected = false
  /** ZooKeeper session id; etcd member id. */
  session: string | undefined
  version: string | undefined
  /** The last list delivered; undefined until the first successful read. */
  targets: readonly E[] | undefined
  lastRead: number | undefined
  stale = false
  drifts = 0
  lastDrift: Drift | undefined
  lastError: string | undefined
  protected closed = false
  private resyncTimer: NodeJS.Timeout | undefined
  private staleTimer: NodeJS.Timeout | undefined
  private confirmTimer: NodeJS.Timeout | undefined
  private resyncing = false
  private invalid = ''
  private lose = 0
  /** Records this process keeps in the registry itself (the fleet's registration and observations): name -> data. */
  private readonly own = new Map<string, string>()
  private readonly firstList: Promise<void>
  private gotFirst: () => void = () => undefined

  constructor(
    /** "zookeeper 127.0.0.1:2181 /services/api" */
    readonly source: string,
    readonly path: string,
    readonly settings: SubscriptionSettings,
    /** How the records read are parsed into entries, and how an entry is named (drift logs). */
    protected readonly records: Records<E>,
    protected readonly log: Logger,
  ) {
    this.firstList = new Promise((resolve) => (this.gotFirst = resolve))
  }

  start(): void {
    this.open()
    this.resyncTimer = setInterval(() => void this.resync(), this.settings.resyncInterval)
    this.resyncTimer.unref()
    this.armStale()
  }

  /** True once a first list arrived, false if none did within the connect timeout. */
  async ready(): Promise<boolean> {
    if (this.targets !== undefined) return true
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.settings.connectTimeout)))
    const ok = await Promise.race([this.firstList.then(() => true), timeout])
    clearTimeout(timer)
    return ok
  }

  async stop(): Promise<void> {
    this.closed = true
    clearInterval(this.resyncTimer)
    clearTimeout(this.staleTimer)
    clearTimeout(this.confirmTimer)
    this.listeners.clear()
    await this.close()
  }

  /** Read again after `delay` (a mass removal waits for this second read before it applies). */
  confirm(delay: number): void {
    if (this.confirmTimer !== undefined || this.closed) return
    this.confirmTimer = setTimeout(() => {
      this.confirmTimer = undefined
      this.read().then(
        (l) => this.deliver(l, 'confirm'),
        (err: Error) => {
          this.failed(err)
          // No answer is no confirmation: ask again.
          this.confirm(delay)
        },
      )
    }, delay)
    this.confirmTimer.unref()
  }

  /**
   * A test build hook: the next `n` watch notifications are dropped, the way the incident's client lost one.
   * Only the resync can then notice; drills and tests use it to prove that it does.
   */
  loseEvents(n = 1): void {
    this.lose += n
  }

  status(now = Date.now()): SubscriptionStatus {
    return {
      kind: this.kind,
      source: this.source,
      path: this.path,
      connected: this.connected,
      session: this.session,
      version: this.version,
      lastRead: this.lastRead === undefined ? undefined : new Date(this.lastRead).toISOString(),
      ageSeconds: this.lastRead === undefined ? undefined : (now - this.lastRead) / 1000,
      servers: this.targets?.length ?? 0,
      stale: this.stale,
      drifts: this.drifts,
      lastDrift: this.lastDrift,
      lastError: this.lastError,
    }
  }

  /**
   * Keep `value` under `name` (beside the records read) for as long as this process lives: an etcd key bound to
   * the subscription's lease, a ZooKeeper ephemeral node of its session. A read that finds it missing or changed
   * (a new session, a lost lease, a registry restarted empty) writes it again, so a registry that comes back
   * gets it back. Rejects when the write fails now; the record is still kept and written on the next read.
   */
  publish(name: string, value: string): Promise<void> {
    this.own.set(name, value)
    return this.write(name, value)
  }

  /** Stop keeping `name`, and delete it from the registry. */
  withdraw(name: string): Promise<void> {
    this.own.delete(name)
    return this.erase(name)
  }

  /** Connect and start reading and watching; called once. */
  protected abstract open(): void
  protected abstract close(): Promise<void>
  /** One full read, without setting a watch (resyncs and confirmations). */
  protected abstract read(): Promise<Listing<E>>
  /** Forget the current watch and read+watch from scratch: after a drift the watch itself is suspect. */
  protected abstract rewatch(): void
  /** Write one owned record (create or replace), bound to this process's session or lease. */
  protected abstract write(name: string, value: string): Promise<void>
  protected abstract erase(name: string): Promise<void>

  /** The owned records the registry should hold again (all of them after a lost lease or session). */
  protected rewrite(only?: ReadonlySet<string>): void {
    for (const [name, value] of this.own) {
      if (only !== undefined && !only.has(name)) continue
      this.write(name, value).catch((err: Error) => this.failed(err))
    }
  }

  /** Names of the last list, for logs: what vigil keeps serving while the registry is away. */
  protected keeping(): string[] | undefined {
    return this.targets?.map(this.records.name)
  }

  /** A watch notification arrived; false when the test hook drops it. */
  protected notified(): boolean {
    if (this.lose === 0) return true
    this.lose--
    this.log.warn({ source: this.source }, 'test hook: a watch notification was dropped')
    return false
  }

  protected deliver(l: Listing<E>, cause: ReadCause): void {
    if (this.closed) return
    this.lastRead = Date.now()
    this.version = l.version
    this.lastError = undefined
    if (this.stale) this.log.info({ source: this.source }, 'registry source is fresh again')
    this.stale = false
    this.armStale()
    const invalid = l.invalid.join('\n')
    if (invalid !== this.invalid && l.invalid.length > 0) this.log.warn({ source: this.source, invalid: l.invalid }, 'registry records that do not parse are left out')
    this.invalid = invalid
    const first = this.targets === undefined
    const changed = first || !sameJson(this.targets, l.targets)
    this.targets = l.targets
    if (this.own.size > 0) this.heal(l.targets)
    if (first) this.gotFirst()
    if (!changed && cause !== 'confirm') return
    for (const listener of [...this.listeners]) listener(l.targets, first ? 'first' : cause)
  }

  protected failed(err: Error): void {
    const message = err.message
    if (message !== this.lastError) this.log.warn({ source: this.source, err: message, keeping: this.keeping() }, 'registry read failed; keeping the last good list')
    this.lastError = message
  }

  /** Anti-entropy: the registry's full list against what the subscription delivered; a difference is a lost event. */
  protected async resync(): Promise<void> {
    if (this.resyncing || this.closed) return
    this.resyncing = true
    try {
      const first = await this.read()
      if (this.targets === undefined || sameJson(first.targets, this.targets)) return this.deliver(first, 'resync')
      // A difference may be an event still on its way: look again a moment later before calling it a drift.
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000, this.settings.resyncInterval / 4)).unref())
      const second = await this.read()
      if (sameJson(second.targets, this.targets)) return this.deliver(second, 'resync')
      const had = new Set(this.targets.map(this.records.name))
      const has = new Set(second.targets.map(this.records.name))
      this.drifts++
      this.lastDrift = {
        at: new Date().toISOString(),
        missing: [...has].filter((a) => !had.has(a)),
        unexpected: [...had].filter((a) => !has.has(a)),
      }
      this.log.warn(
        { source: this.source, delivered: this.targets, registry: second.targets, ...this.lastDrift, drifts: this.drifts },
        'registry drift: the subscription missed a change; applying the full list and watching again',
      )
      this.deliver(second, 'drift')
      this.rewatch()
    } catch (err) {
      this.failed(err as Error)
    } finally {
      this.resyncing = false
    }
  }

  /** Owned records a read did not find as written: write them again. */
  private heal(read: readonly E[]): void {
    const found = new Map<string, string | undefined>()
    for (const e of read) found.set(this.records.name(e), this.records.value?.(e))
    const missing = new Set<string>()
    for (const [name, value] of this.own) if (!found.has(name) || (this.records.value !== undefined && found.get(name) !== value)) missing.add(name)
    if (missing.size > 0) this.rewrite(missing)
  }

  private armStale(): void {
    clearTimeout(this.staleTimer)
    if (this.closed) return
    this.staleTimer = setTimeout(() => {
      this.stale = true
      this.log.warn(
        { source: this.source, lastRead: this.lastRead === undefined ? undefined : new Date(this.lastRead).toISOString(), keeping: this.keeping() },
        'registry source is stale: no successful read within staleAfter; its servers keep serving on their health checks',
      )
    }, this.settings.staleAfter)
    this.staleTimer.unref()
  }
}
