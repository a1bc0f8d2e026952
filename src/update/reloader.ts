// The update path's sources as a running vigil has them: the file (watch, SIGHUP, POST /reload), admin server
// changes and DNS answers, each handed to the one queue (./queue.ts) and applied as prepare, then commit: prepare
// does everything that can fail (read and validate the file, TLS files, DNS for new entries, new groups and pools,
// new listeners bound) and changes nothing; commit is the swap (Membership.commit, listeners rerouted), which
// cannot throw. A failed prepare releases what it built.
import type { AddressInfo } from 'node:net'
import type { SecureContextOptions } from 'node:tls'
import type { Logger } from 'pino'
import type { Config, Listener } from '../config/schema.js'
import { parseConfig, readConfigText } from '../config/load.js'
import { ConfigError, type ConfigIssue } from '../config/errors.js'
import { diffListeners, listenerKeys, sameJson } from '../config/diff.js'
import { ms } from '../config/duration.js'
import { ConfigWatcher } from '../config/watch.js'
import type { ServerSpec } from '../config/diff.js'
import type { Membership, MembershipChange, PreparedConfig, ServerLists, Target } from '../upstream/membership.js'
import { UpdateQueue, type ChangeSource } from './queue.js'
import type { Upstream } from '../upstream/upstream.js'
import type { ProxyListener } from '../proxy/listener.js'
import { readCertificate } from '../proxy/certificate.js'

export const DEFAULT_DEBOUNCE = 200

export type { ChangeSource } from './queue.js'

export interface LastReload {
  ok: boolean
  source: ChangeSource
  /** ISO time the reload finished. */
  at: string
  /** The generation live after it (unchanged when it failed). */
  generation: number
  error?: string
  issues?: readonly ConfigIssue[]
}

/** What the status page and metrics show about reloads. */
export interface ReloadStatus {
  generation: number
  reloads: number
  failures: number
  last: LastReload | undefined
}

export type ReloadResult = LastReload & { change?: MembershipChange }

/**
 * A discovery source as the update path runs it (DNS: src/upstream/discovery.ts; the registries:
 * src/discovery/registries.ts): the first list of every new entry before a swap, the lists of a file's entries,
 * and the entries a swap dropped let go.
 */
export interface ServerSource {
  prime(upstreams: Config['upstreams']): Promise<void>
  lists(upstreams: Config['upstreams']): ServerLists
  retain(upstreams: Config['upstreams']): void
  close(): void | Promise<void>
}

/** The parts of a running Vigil that a reload replaces; index.ts provides them. */
export interface ReloadTarget {
  readonly log: Logger
  readonly membership: Membership
  /** None in a cluster worker: its primary runs them and hands it the servers they found (src/workers/). */
  readonly sources: readonly ServerSource[]
  config(): Config
  listeners(): readonly ProxyListener[]
  /** A listener for `config`, routing over `upstreams`, not yet bound. */
  createListener(config: Listener, upstreams: ReadonlyMap<string, Upstream>): ProxyListener
  /** Open a new listener's socket (a cluster's primary opens none: its workers do). */
  bind(listener: ProxyListener): Promise<AddressInfo>
  /** Make `config` and `listeners` current (synchronously, inside the swap). */
  swap(config: Config, listeners: ProxyListener[]): void
  /** How long removed listeners and peers may finish their requests. */
  grace(): number
  /**
   * False in a cluster worker: its primary says a generation the worker could not apply, once per generation and
   * worker, while it sends it again every few seconds; the worker's own line for each try is a debug line.
   */
  readonly saysRejections: boolean
}

export class Reloader {
  private watcher: ConfigWatcher | undefined
  /** Text the watch saw rejected by validation (not re-reported), and the last config applied from the file. */
  private rejectedText: string | undefined
  private fileConfig: Config
  private reloads = 0
  private failures = 0
  private last: LastReload | undefined
  /** Removed listeners still finishing their requests. */
  private readonly closing = new Set<ProxyListener>()
  /** Set once the listeners are open; from then on a change of `reload` settings re-creates the watch. */
  private watching = false

  constructor(
    private readonly target: ReloadTarget,
    /** The config file, when there is one; without it only admin server changes and DNS apply. */
    readonly file: string | undefined,
    readonly queue: UpdateQueue = new UpdateQueue(target.log),
  ) {
    this.fileConfig = target.config()
    target.membership.on('applied', (change) => queue.committed(change))
  }

  get status(): ReloadStatus {
    return { generation: this.target.membership.generation, reloads: this.reloads, failures: this.failures, last: this.last }
  }

  /**
   * First DNS answers and registry lists, before the listeners open, so no group starts empty; a registry that is
   * unreachable and has no cache file fails the start (RegistryStartError names it).
   */
  async discover(): Promise<void> {
    const upstreams = this.target.config().upstreams
    await this.prime(upstreams)
    await this.enqueue(() => this.logged(this.target.membership.discovered('discovery', this.lists(upstreams))))
  }

  /** What every discovery source (DNS, registries) gives the entries of `upstreams` now. */
  private lists(upstreams: Config['upstreams']): ServerLists {
    return new Map(this.target.sources.flatMap((s) => [...s.lists(upstreams)]))
  }

  private async prime(upstreams: Config['upstreams']): Promise<void> {
    await Promise.all(this.target.sources.map((s) => s.prime(upstreams)))
  }

  /** Every source lets go of the entries `upstreams` does not list. */
  private retain(upstreams: Config['upstreams']): void {
    for (const s of this.target.sources) s.retain(upstreams)
  }

  /** Watch the file when the config asks for it (the default); call once the listeners are open. */
  watch(): void {
    this.watching = true
    this.watcher?.close()
    this.watcher = undefined
    const reload = this.target.config().reload
    if (this.file === undefined || reload?.watch === false) return
    this.watcher = new ConfigWatcher(this.file, () => void this.reload('watch'), {
      debounce: ms(reload?.debounce ?? DEFAULT_DEBOUNCE),
      onError: (err) => this.target.log.warn({ err: err.message, file: this.file }, 'cannot watch the config file directory; retrying'),
    })
    this.watcher.start()
  }

  /**
   * Read, validate and apply the file. A watch-triggered reload applies only when the file's content differs from
   * the config running from the file (so admin changes survive a touch), and then only after an apply succeeded:
   * a reload that failed while applying (a port still in use) is retried on the next trigger, with the same text.
   * When the last reload failed and the file is back to the running config, that counts as a good reload (nothing
   * changes, no new generation), so "last reload failed" never outlives its cause. SIGHUP and POST /reload always
   * apply the file. Never rejects: every failure is logged and reported in `status`.
   */
  reload(source: ChangeSource): Promise<ReloadResult | undefined> {
    return this.enqueue(async () => {
      const file = this.file
      if (file === undefined) return this.fail(source, new Error('vigil was started without a config file; nothing to reload'))
      let config: Config
      let text: string | undefined
      try {
        text = readConfigText(file)
        if (source === 'watch' && text === this.rejectedText) return undefined
        config = parseConfig(text, file)
      } catch (err) {
        // A file that stays bad (or unreadable: its directory is gone) is reported once, not on every watch event.
        if (source === 'watch' && this.last?.ok === false && this.last.error === (err as Error).message) return undefined
        this.rejectedText = text
        return this.fail(source, err as Error)
      }
      this.rejectedText = undefined
      if (source === 'watch' && sameJson(config, this.fileConfig)) return this.last?.ok === false ? this.unchanged(source) : undefined
      const result = await this.applyOrFail(config, source)
      if (result.ok) this.fileConfig = config
      return result
    })
  }

  /** A cluster worker takes the config its primary applied (src/workers/worker.ts): the same prepare and commit, no file. */
  replace(config: Config, source: ChangeSource): Promise<ReloadResult> {
    return this.enqueue(() => this.applyOrFail(config, source))
  }

  private async applyOrFail(config: Config, source: ChangeSource): Promise<ReloadResult> {
    try {
      return await this.apply(config, source)
    } catch (err) {
      // prepare() throws with the setting named; nothing was swapped.
      return this.fail(source, err as Error)
    }
  }

  putServer(upstream: string, spec: ServerSpec): Promise<MembershipChange> {
    return this.enqueue(() => this.logged(this.target.membership.putServer(upstream, spec)))
  }

  removeServer(upstream: string, address: string): Promise<MembershipChange> {
    return this.enqueue(() => this.logged(this.target.membership.removeServer(upstream, address)))
  }

  /** A discovery source's complete list for one entry of a group (see ./queue.ts). */
  servers(source: ChangeSource, upstream: string, entry: string, targets: readonly Target[], detail?: Record<string, unknown>): Promise<MembershipChange | undefined> {
    return this.enqueue(() => this.logged(this.target.membership.servers(source, upstream, entry, targets), detail))
  }

  /** Runs `fn` after every change queued before it, and before every change queued after it. */
  enqueue<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.queue.run(fn)
  }

  async close(): Promise<void> {
    this.watching = false
    this.watcher?.close()
    await Promise.all(this.target.sources.map((s) => s.close()))
    await this.queue.idle()
    for (const l of this.closing) l.closeAll()
  }

  private async apply(config: Config, source: ChangeSource): Promise<ReloadResult> {
    const { log, membership } = this.target
    const before = this.target.config()
    const listenerDiff = diffListeners(before.listeners, config.listeners)
    const live = this.target.listeners()
    const kept = new Map(listenerKeys(before.listeners).map(({ key }, i) => [key, live[i] as ProxyListener]))
    // Kept TLS listeners re-read their certificate on every reload, as nginx does: replace the files, then reload.
    const renewals: [ProxyListener, SecureContextOptions][] = []
    for (const [i, { key, listener: l }] of listenerKeys(config.listeners).entries()) {
      const listener = kept.get(key)
      if (l.tls === undefined || listener?.config.tls === undefined) continue
      try {
        renewals.push([listener, readCertificate(l.tls)])
      } catch (err) {
        // Validation read the same files a moment ago: only a file replaced since then gets here.
        return this.fail(source, new Error(`listeners[${i}].tls: ${(err as Error).message}`))
      }
    }
    // New resolve and registry entries get their first list before the swap, so a group never goes live empty; a
    // prepare that fails drops them again.
    let prepared: PreparedConfig
    try {
      await this.prime(config.upstreams)
      prepared = membership.prepare(config.upstreams, this.lists(config.upstreams))
    } catch (err) {
      this.retain(this.target.config().upstreams)
      return this.fail(source, err as Error)
    }
    // New listeners bind before the swap: if one cannot, the reload fails as a whole and nothing changes.
    const opened = new Map<string, ProxyListener>()
    for (const { key, listener: l } of listenerDiff.added) {
      const listener = this.target.createListener(l, prepared.upstreams)
      try {
        await this.target.bind(listener)
        opened.set(key, listener)
      } catch (err) {
        prepared.discard()
        this.retain(this.target.config().upstreams)
        await Promise.all([...opened.values()].map((o) => o.stopAccepting()))
        const index = config.listeners.indexOf(l)
        const e = err as NodeJS.ErrnoException
        return this.fail(source, new ConfigError('listeners', [{ path: `listeners[${index}].address`, found: `${JSON.stringify(l.address)} (${e.code ?? e.message})`, expected: 'an address vigil can listen on' }]))
      }
    }
    const later = restartOnly(before, config)
    if (later.length > 0) log.warn({ settings: later }, 'these settings change at the next restart')
    // The swap: synchronous from here to the log line, so no request runs in between.
    const change = prepared.commit(source)
    const byKey = new Map([...kept, ...opened])
    const listeners = listenerKeys(config.listeners).map(({ key, listener: l }) => {
      const pl = byKey.get(key) as ProxyListener
      pl.reroute(l, membership.upstreams)
      return pl
    })
    for (const [l, certificate] of renewals) l.renewCertificate(certificate)
    this.target.swap(config, listeners)
    this.retain(config.upstreams)
    if (this.watching && !sameJson(before.reload, config.reload)) this.watch()
    for (const { key } of listenerDiff.removed) this.retireListener(byKey.get(key) as ProxyListener)
    log.info(
      {
        ...summary(change),
        listeners: {
          added: [...opened.values()].map((l) => `${l.config.address} -> ${address(l)}`),
          removed: listenerDiff.removed.map((l) => l.listener.address),
          changed: listenerDiff.changed.map(([, l]) => l.listener.address),
        },
      },
      'config reloaded',
    )
    this.reloads++
    this.last = { ok: true, source, at: new Date().toISOString(), generation: change.generation }
    return { ...this.last, change }
  }

  /** The file is back to the config running from it, after a failed reload: a good reload that changes nothing. */
  private unchanged(source: ChangeSource): ReloadResult {
    this.reloads++
    const generation = this.target.membership.generation
    this.last = { ok: true, source, at: new Date().toISOString(), generation }
    this.target.log.info({ source, generation }, 'config file matches the running config again')
    return this.last
  }

  private logged<T extends MembershipChange | undefined>(change: T, detail?: Record<string, unknown>): T {
    if (change !== undefined) this.target.log.info({ ...summary(change), ...detail }, 'membership changed')
    return change
  }

  private fail(source: ChangeSource, err: Error): ReloadResult {
    this.failures++
    this.reloads++
    const issues = err instanceof ConfigError ? err.issues : undefined
    this.last = { ok: false, source, at: new Date().toISOString(), generation: this.target.membership.generation, error: err.message, issues }
    const line = { source, file: this.file, issues, err: issues === undefined ? err.message : undefined }
    if (this.target.saysRejections) this.target.log.error(line, 'config reload rejected; the running config stays')
    else this.target.log.debug(line, 'config reload rejected; the running config stays')
    return this.last
  }

  /** Stop accepting at once; connections finish their requests within the grace period, then close. */
  private retireListener(l: ProxyListener): void {
    this.closing.add(l)
    const timer = setTimeout(() => l.closeAll(), this.target.grace())
    timer.unref()
    void l.stopAccepting().then(() => {
      clearTimeout(timer)
      this.closing.delete(l)
    })
  }
}

/**
 * Settings a running vigil keeps until it restarts: the admin listener, `fleet`, `workers`, the DNS resolver's servers and
 * timeout, the wait queue of a kept group, and the limits, trusted proxies, HTTP/2 and TLS on/off of a kept
 * listener
 * address (its routes and its certificate files do change).
 */
export function restartOnly(before: Config, after: Config): string[] {
  const keys: [string, unknown, unknown][] = [
    ['admin', before.admin, after.admin],
    // The processes are forked at start (src/workers/).
    ['workers', before.workers, after.workers],
    // The fleet's registration and observations hold a registry session for the life of the process.
    ['fleet', before.fleet, after.fleet],
    ['resolver.servers', before.resolver?.servers, after.resolver?.servers],
    ['resolver.timeout', before.resolver?.timeout, after.resolver?.timeout],
  ]
  for (const [name, u] of Object.entries(after.upstreams)) {
    const b = before.upstreams[name]
    // A kept group's TLS and ewmaDecay do apply (new pools, retuned estimates); only its wait queue is the group's for good.
    if (b !== undefined) keys.push([`upstreams.${name}.queue`, b.queue, u.queue])
  }
  const old = new Map(listenerKeys(before.listeners).map((k) => [k.key, k.listener]))
  listenerKeys(after.listeners).forEach(({ key, listener }, i) => {
    const b = old.get(key)
    if (b === undefined) return
    for (const k of ['limits', 'trustedProxies', 'forwardedHeaders', 'http2'] as const) keys.push([`listeners[${i}].${k}`, b[k], listener[k]])
    // The certificate itself is re-read on every reload; only turning TLS on or off needs a new server.
    keys.push([`listeners[${i}].tls`, b.tls === undefined, listener.tls === undefined])
  })
  return keys.filter(([, b, a]) => !sameJson(b, a)).map(([k]) => k)
}

function summary(c: MembershipChange): Record<string, unknown> {
  return { generation: c.generation, source: c.source, added: c.added, removed: c.removed, changed: c.changed, upstreams: c.upstreams }
}

function address(l: ProxyListener): string {
  const a = l.server.address() as AddressInfo | null
  return a === null ? l.config.address : `${a.address}:${a.port}`
}
