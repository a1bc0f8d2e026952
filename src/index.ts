// Library API: start a proxy from a config object, stop it gracefully.
import type { Logger } from 'pino'
import type { AddressInfo } from 'node:net'
import type { Config, Listener } from './config/schema.js'
import { ms } from './config/duration.js'
import type { Upstream } from './upstream/upstream.js'
import { Membership, type BuiltServers } from './upstream/membership.js'
import { createResolver, Discovery, type DnsResolver } from './upstream/discovery.js'
import { Registries } from './discovery/registries.js'
import { registerDiscoveryMetrics } from './discovery/metrics.js'
import { Reloader, type ChangeSource, type ReloadResult, type ReloadStatus } from './update/reloader.js'
import { UpdateQueue } from './update/queue.js'
import { registerReloadMetrics } from './admin/membership.js'
import { ProxyListener } from './proxy/listener.js'
import { AdminServer, DEFAULT_ADMIN_ADDRESS } from './admin/admin.js'
import { createLogger } from './log.js'
import { AccessLog } from './proxy/access-log.js'
import { StartError } from './start-error.js'
import { listenTarget } from './net.js'
import type { WorkersStatus } from './workers/primary.js'
import type { ForwardHooks } from './proxy/forward.js'
import { HealthEvents, logHealthEvents, type PassiveHealthLink } from './health/events.js'
import { ActiveChecker } from './health/active.js'
import { VigilMetrics } from './admin/metrics.js'
import { Watchdog } from './proxy/watchdog.js'
import { StatusHistory } from './admin/history.js'
import { passiveLink } from './health/passive.js'
import { leaveStallJudgementToWorkers } from './health/stall.js'
import { Fleet } from './fleet/fleet.js'
import type { ConsumerView } from './fleet/consumers.js'
import { registerFleetMetrics } from './fleet/metrics.js'
import { reportPassive, type HealthEvent as PassiveEvent } from './health/passive-events.js'

export type { Config } from './config/schema.js'
import { validateConfig } from './config/load.js'
export { loadConfigFile, parseConfig, validateConfig } from './config/load.js'
export { ConfigError, type ConfigIssue } from './config/errors.js'
export { StartError } from './start-error.js'
export type { HealthEvent } from './health/passive-events.js'
export type { PeerPassiveSnapshot } from './health/ejection.js'
export type { MembershipChange, MembershipEvents } from './upstream/membership.js'
export type { ReloadResult, ReloadStatus } from './update/reloader.js'
export type { ChangeSource, GenerationRecord, UpdateSubscriber } from './update/queue.js'
export type { DnsResolver } from './upstream/discovery.js'
export { RegistryStartError, type SourceStatus } from './discovery/registries.js'

export const DEFAULT_SHUTDOWN_GRACE = 30_000

export interface StartOptions {
  /** Logger to use instead of one built from `config.log`. */
  logger?: Logger
  /** Start the admin listener (default true). */
  admin?: boolean
  /** The file `config` was read from: enables reloads (watch, SIGHUP via the CLI, POST /reload). */
  configFile?: string
  /** DNS resolver for `resolve: true` servers, instead of one built from `config.resolver`. */
  resolver?: DnsResolver
  /**
   * This process's part in a cluster (`workers`, src/workers/): the primary serves no traffic (its workers bind the
   * listeners), checks, and decides health from its workers' reports; a worker forwards, reports its outcomes and
   * takes its health state from the primary (no admin listener, no checks). Unset: one process does everything.
   */
  cluster?: 'primary' | 'worker'
  /** A cluster worker: its primary's place in the fleet (the worker starts no fleet of its own; src/workers/worker.ts). */
  consumer?: () => ConsumerView | undefined
  /** A cluster worker: each group's servers as its primary built them (the worker runs no discovery of its own). */
  servers?: () => BuiltServers
  /**
   * A cluster worker: rejects, as a failed listen() would, when its primary found a fixed listener port held by
   * another process (src/workers/ports.ts); the worker then does not try it.
   */
  portFree?: (address: string) => Promise<void>
}

export class Vigil {
  readonly log: Logger
  /** True when vigil built `log` from `config.log` (then reloads set its level). */
  private readonly ownLogger: boolean
  /** The live peers of every group; emits 'peers-added', 'peers-removed', ... on every change (see MembershipEvents). */
  readonly membership: Membership
  /** The one update path for file reloads, admin server changes and DNS answers. */
  readonly reloader: Reloader
  /** The queue every change goes through: its generation records, and subscribe() to hear of every generation. */
  readonly updates: UpdateQueue
  /** Every health transition (active, passive, operator) is reported here. */
  readonly events = new HealthEvents()
  readonly checker: ActiveChecker
  readonly metrics: VigilMetrics
  /** ZooKeeper and etcd sources of the groups' servers. */
  readonly registries: Registries
  /** With `fleet`: this vigil's registration and the observations it shares with the others (src/fleet/). */
  readonly fleet: Fleet | undefined
  /** Ends requests waiting too long for a pooled connection, and reports attempts that outlived their timeouts. */
  readonly watchdog: Watchdog
  /** One line per client request when `log.access` is on; `reopen()` after log rotation (the CLI's SIGUSR1). */
  readonly access: AccessLog
  private passive: PassiveHealthLink = passiveLink
  /** See StartOptions.cluster. */
  readonly cluster: 'primary' | 'worker' | undefined
  private readonly portFree: StartOptions['portFree']
  /** A cluster's primary: its workers (generation, state version), for the status page (src/workers/primary.ts). */
  workers: (() => WorkersStatus) | undefined = undefined
  private current: Config
  private listeners: ProxyListener[]
  private readonly hooks: ForwardHooks
  private readonly admin: AdminServer | undefined
  private inflight = 0
  private idle: (() => void) | undefined
  private stopping: Promise<void> | undefined
  /** Set once start() succeeded: a start that failed stops without saying "stopping" (its error says it all). */
  private started = false
  /** Every listener bound: start() got that far (for GET /ready). */
  private listening = false
  /** Transitions and per-server traffic samples (one per 10 s) for the html status page. */
  readonly history: StatusHistory
  /** Addresses actually bound, in config order (port 0 resolves here). */
  listenerAddresses: AddressInfo[] = []
  adminAddress: AddressInfo | undefined

  /** Throws a ConfigError listing every issue (JSON path, found, expected) when `config` is not a valid config. */
  constructor(config: Config, options: StartOptions = {}) {
    // An object is checked exactly as a file is: a typo is an error, not a silently ignored key.
    this.current = config = validateConfig(config)
    this.cluster = options.cluster
    this.portFree = options.portFree
    const worker = options.cluster === 'worker'
    // The workers hold the requests: they judge stalls, the primary decides on what they report.
    if (options.cluster === 'primary') leaveStallJudgementToWorkers()
    this.ownLogger = options.logger === undefined
    this.log = options.logger ?? createLogger(config.log?.level ?? 'info')
    this.access = new AccessLog(this.log)
    const discovery = new Discovery({
      resolver: options.resolver ?? createResolver(config.resolver),
      log: this.log,
      config: () => this.current.resolver,
      changed: (upstream, name, targets) => {
        this.reloader.servers('dns', upstream, name, targets).catch((err: unknown) => this.log.error({ err, upstream, name }, 'DNS update failed'))
      },
    })
    this.membership = new Membership(config.upstreams, { retireGrace: () => this.grace(), consumer: () => this.fleet?.consumers.view ?? options.consumer?.(), built: options.servers })
    this.registries = new Registries({
      log: this.log,
      health: (name) => ({
        healthy: () => this.upstreams.get(name)?.peers.some((p) => p.eligible) === true,
        passing: (address) => {
          const u = this.upstreams.get(name)
          return u?.active !== undefined && u.peers.some((p) => p.address === address && p.checkUp)
        },
      }),
      changed: (kind, upstream, entry, targets, detail) => void this.reloader.servers(kind, upstream, entry, targets, detail),
    })
    // A worker's decisions are its primary's, logged there.
    if (!worker) logHealthEvents(this.events, this.log)
    this.checker = new ActiveChecker(this.upstreams, { events: this.events, log: this.log })
    this.checker.linkPassive(this.passive)
    // Inside every swap: kept servers keep their check state, added ones are checked at once, removed ones stop.
    this.membership.on('upstream-added', (u) => this.joinHealth(u))
    this.updates = new UpdateQueue(this.log)
    this.fleet =
      config.fleet === undefined || worker
        ? undefined
        : new Fleet(config.fleet, { log: this.log, updates: this.updates, events: this.events, checker: this.checker, upstreams: () => this.upstreams })
    // A consumer joining or leaving moves the fleet-placed subsets (run by the update queue, in order with the rest).
    this.fleet?.consumers.subscribe(() => this.membership.consumersChanged())
    this.updates.subscribe({
      applied: () => {
        if (worker) return
        for (const u of this.upstreams.values()) u.passive.checker = u.active === undefined ? undefined : this.checker
        this.checker.update(this.upstreams)
      },
    })
    this.watchdog = new Watchdog(() => this.upstreams, () => this.membership.departed(), this.log, () => this.inflight > 0)
    this.history = new StatusHistory(this.events, () => this.upstreams)
    // In a cluster, the workers' registries count traffic and the primary's health (one /metrics, admin/metrics.ts).
    this.metrics = new VigilMetrics({ upstreams: () => this.upstreams, checker: this.checker, passive: () => this.passive }, options.cluster === undefined ? 'all' : worker ? 'traffic' : 'health')
    for (const u of this.upstreams.values()) this.joinHealth(u)
    this.events.on('health', (e) => {
      if (e.source === 'passive' && e.event === 'ejected') this.metrics.ejected(e.upstream, e.server, e.reason)
      // A server held after it left its registry keeps traffic only while it passes its checks.
      if (e.source === 'active' && e.event === 'down') this.registries.checkFailed(e.upstream)
    })
    this.hooks = {
      log: this.log,
      access: this.access,
      // Counted as it arrives, before the listener may answer it at once (404, 400) and call done(): counting after
      // that would let shutdown see 0 and cut the requests still in flight.
      arrived: () => {
        if (this.inflight++ === 0) this.watchdog.wake()
      },
      done: () => this.requestDone(),
    }
    this.listeners = config.listeners.map((l) => this.createListener(l, this.upstreams))
    this.reloader = new Reloader(
      {
        log: this.log,
        membership: this.membership,
        // The primary owns the sources: a worker serves the servers they found there.
        sources: worker ? [] : [discovery, this.registries],
        config: () => this.current,
        listeners: () => this.listeners,
        createListener: (l, upstreams) => this.createListener(l, upstreams),
        bind: (l) => this.bind(l),
        swap: (next, listeners) => {
          this.current = next
          this.listeners = listeners
          if (options.cluster !== 'primary') this.listenerAddresses = listeners.map((l) => l.server.address() as AddressInfo)
          // A logger passed in by the caller is the caller's: its level is not the file's to set.
          if (this.ownLogger && this.log.level !== (next.log?.level ?? 'info')) this.log.level = next.log?.level ?? 'info'
          this.access.configure(next.log?.access).catch((err: Error) => this.log.error({ err: err.message }, 'access log not changed: cannot open the new file'))
        },
        grace: () => this.grace(),
        saysRejections: !worker,
      },
      options.configFile,
      this.updates,
    )
    if (!worker) {
      registerReloadMetrics(this.metrics.registry, () => this.reloader.status)
      registerDiscoveryMetrics(this.metrics.registry, () => this.registries.status())
    }
    if (this.fleet !== undefined) registerFleetMetrics(this.metrics.registry, this.fleet)
    this.admin =
      options.admin === false || worker
        ? undefined
        : new AdminServer({
            address: config.admin?.address ?? DEFAULT_ADMIN_ADDRESS,
            token: config.admin?.token,
            upstreams: () => this.upstreams,
            generation: () => this.generation,
            checker: this.checker,
            passive: () => this.passive,
            events: this.events,
            metrics: this.metrics,
            membership: this.reloader,
            discovery: () => this.registries.status(),
            fleet: this.fleet === undefined ? undefined : () => (this.fleet as Fleet).status(),
            config: () => this.current,
            log: this.log,
            history: this.history,
            lifecycle: () => ({ listening: this.listening, draining: this.stopping !== undefined }),
            workers: () => this.workers?.(),
          })
  }

  /** The running config: the last one applied. */
  get config(): Config {
    return this.current
  }

  get upstreams(): ReadonlyMap<string, Upstream> {
    return this.membership.upstreams
  }

  /** Bumped by every applied change: file reload, admin server change, DNS answer that changed the set. */
  get generation(): number {
    return this.membership.generation
  }

  /** Last reload (ok or failed, when, which generation) and counts, for the status page and metrics. */
  get reloadStatus(): ReloadStatus {
    return this.reloader.status
  }

  /** Re-read the config file and apply it if valid; a bad file is reported and the running config stays. */
  async reload(source: ChangeSource = 'api'): Promise<ReloadResult> {
    return (await this.reloader.reload(source)) as ReloadResult
  }

  private createListener(config: Listener, upstreams: ReadonlyMap<string, Upstream>): ProxyListener {
    return new ProxyListener(config, upstreams, this.hooks)
  }

  /** A cluster's primary binds nothing (the cluster module binds for its workers): the address is the configured one. */
  private async bind(l: ProxyListener): Promise<AddressInfo> {
    const { host, port } = listenTarget(l.config.address)
    if (this.cluster === 'primary') return { address: host ?? '::', port, family: host?.includes(':') === false ? 'IPv4' : 'IPv6' }
    if (port !== 0) await this.portFree?.(l.config.address)
    return l.listen()
  }

  private grace(): number {
    return ms(this.current.shutdown?.grace ?? DEFAULT_SHUTDOWN_GRACE)
  }

  /** `shutdown.grace` of the running config, ms. */
  get shutdownGrace(): number {
    return this.grace()
  }

  /** Replace the passive side the status page, metrics and the checker see (tests link a stand-in). */
  linkPassive(link: PassiveHealthLink): void {
    this.passive = link
    this.checker.linkPassive(link)
  }

  /**
   * One group's passive transitions go to the health emitter; its attempts feed the metrics (through its
   * monitor); its failed requests ask its checks for a re-check.
   */
  private joinHealth(u: Upstream): void {
    u.on('health', (e: PassiveEvent) => reportPassive(this.events, e))
    u.monitor.subscribe(this.metrics)
    // The fleet weighs shared evidence against this vigil's own traffic to each server.
    if (this.fleet !== undefined) u.monitor.subscribe(this.fleet.health)
    if (u.active !== undefined) u.passive.checker = this.checker
  }

  private requestDone(): void {
    this.inflight--
    if (this.inflight === 0) this.idle?.()
  }

  async start(): Promise<this> {
    try {
      // DNS answers first, then checks: servers are checked at once, before traffic arrives.
      await this.reloader.discover()
      // Registered before checks and traffic start: the fleet's index and count are known (or known missing).
      await this.fleet?.start()
      const access = this.current.log?.access
      await this.access.configure(access).catch(failedAt('log.access.path', typeof access === 'object' ? (access.path ?? '') : ''))
      if (this.cluster !== 'worker') this.checker.start()
      this.watchdog.start()
      for (const [i, l] of this.listeners.entries()) this.listenerAddresses.push(await this.bind(l).catch(failedAt(`listeners[${i}].address`, l.config.address)))
      this.listening = true
      this.history.start()
      if (this.admin !== undefined) this.adminAddress = await this.admin.listen().catch(failedAt('admin.address', this.current.admin?.address ?? DEFAULT_ADMIN_ADDRESS))
      this.reloader.watch()
      this.started = true
    } catch (err) {
      await this.stop(0)
      throw err
    }
    // A cluster says it started once its workers serve (src/workers/primary.ts).
    if (this.cluster === 'primary') return this
    this.log.info(
      {
        listeners: this.listenerAddresses.map((a) => `${a.address}:${a.port}`),
        admin: this.adminAddress === undefined ? undefined : `${this.adminAddress.address}:${this.adminAddress.port}`,
        upstreams: Object.fromEntries([...this.upstreams].map(([n, u]) => [n, u.peers.map((p) => p.address)])),
      },
      this.cluster === 'worker' ? 'worker serving' : 'vigil started',
    )
    return this
  }

  /** Stop accepting, let in-flight requests finish within `grace` ms, then close every connection and pool. */
  stop(grace = this.grace()): Promise<void> {
    this.stopping ??= this.shutdown(grace)
    return this.stopping
  }

  private async shutdown(grace: number): Promise<void> {
    if (this.started) this.log.info({ inflight: this.inflight, grace }, 'vigil stopping')
    await this.reloader.close()
    const closed = Promise.all(this.listeners.map((l) => l.stopAccepting()))
    if (this.inflight > 0) {
      let timer: NodeJS.Timeout | undefined
      const drained = await Promise.race([
        new Promise<boolean>((resolve) => (this.idle = () => resolve(true))),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), grace))),
      ])
      clearTimeout(timer)
      if (!drained) this.log.warn({ inflight: this.inflight }, 'grace period over, closing remaining connections')
    }
    for (const l of this.listeners) l.closeAll()
    await closed
    await this.admin?.close()
    this.history.stop()
    await this.checker.stop()
    await this.fleet?.close()
    this.watchdog.stop()
    await Promise.all([...this.upstreams.values()].map((u) => u.close()))
    await this.membership.close()
    await this.access.close()
    if (this.started) this.log.info('vigil stopped')
  }
}

/** A rejection handler that names the setting a start step failed on. */
function failedAt(path: string, value: string): (err: unknown) => never {
  return (err) => {
    throw new StartError(path, value, err)
  }
}

export async function startVigil(config: Config, options?: StartOptions): Promise<Vigil> {
  return new Vigil(config, options).start()
}
