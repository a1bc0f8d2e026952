// Library API: start a proxy from a config object, stop it gracefully.
import type { Logger } from 'pino'
import type { AddressInfo } from 'node:net'
import type { Config } from './config/schema.js'
import { ms } from './config/duration.js'
import { Upstream } from './upstream/upstream.js'
import { ProxyListener } from './proxy/listener.js'
import { AdminServer, DEFAULT_ADMIN_ADDRESS } from './admin/admin.js'
import { createAccessLogger, createLogger } from './log.js'
import type { ForwardHooks } from './proxy/forward.js'
import { HealthEvents, logHealthEvents, type PassiveHealthLink } from './health/events.js'
import { ActiveChecker } from './health/active.js'
import { VigilMetrics } from './admin/metrics.js'
import { passiveLink, reportPassive, type HealthEvent as PassiveEvent } from './health/passive.js'

export type { Config } from './config/schema.js'
export { loadConfigFile, parseConfig } from './config/load.js'
export { ConfigError } from './config/errors.js'
export type { HealthEvent, PeerPassiveSnapshot } from './health/passive.js'

export const DEFAULT_SHUTDOWN_GRACE = 30_000

export interface StartOptions {
  /** Logger to use instead of one built from `config.log`. */
  logger?: Logger
  /** Access logger to use when `config.log.access` is true. */
  accessLogger?: Logger
  /** Start the admin listener (default true). */
  admin?: boolean
}

export class Vigil {
  readonly upstreams: ReadonlyMap<string, Upstream>
  readonly log: Logger
  /** Every health transition (active, passive, operator) is reported here. */
  readonly events = new HealthEvents()
  readonly checker: ActiveChecker
  readonly metrics: VigilMetrics
  private passive: PassiveHealthLink = passiveLink
  private readonly listeners: ProxyListener[]
  private readonly admin: AdminServer | undefined
  private inflight = 0
  private idle: (() => void) | undefined
  private stopping: Promise<void> | undefined
  /** Addresses actually bound, in config order (port 0 resolves here). */
  listenerAddresses: AddressInfo[] = []
  adminAddress: AddressInfo | undefined
  generation = 1

  constructor(
    readonly config: Config,
    options: StartOptions = {},
  ) {
    this.log = options.logger ?? createLogger(config.log?.level ?? 'info')
    const access = config.log?.access === true ? (options.accessLogger ?? createAccessLogger()) : undefined
    this.upstreams = new Map(Object.entries(config.upstreams).map(([name, u]) => [name, new Upstream(name, u)]))
    logHealthEvents(this.events, this.log)
    this.checker = new ActiveChecker(this.upstreams, { events: this.events, log: this.log })
    this.checker.linkPassive(this.passive)
    this.metrics = new VigilMetrics({ upstreams: () => this.upstreams, checker: this.checker, passive: () => this.passive })
    for (const u of this.upstreams.values()) this.joinHealth(u)
    this.events.on('health', (e) => {
      if (e.source === 'passive' && e.event === 'ejected') this.metrics.ejected(e.upstream, e.server, e.reason)
    })
    const hooks: ForwardHooks = {
      log: this.log,
      access,
      done: () => this.requestDone(),
      metrics: this.metrics,
    }
    this.listeners = config.listeners.map((l) => new ProxyListener(l, this.upstreams, hooks))
    for (const l of this.listeners) l.server.on('request', () => this.inflight++)
    this.admin =
      options.admin === false
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
          })
  }

  /** Replace the passive side the status page, metrics and the checker see (tests link a stand-in). */
  linkPassive(link: PassiveHealthLink): void {
    this.passive = link
    this.checker.linkPassive(link)
  }

  /** One group's passive transitions go to the health emitter; its failed requests ask its checks for a re-check. */
  private joinHealth(u: Upstream): void {
    u.on('health', (e: PassiveEvent) => reportPassive(this.events, e))
    if (u.active !== undefined) u.passive.checker = this.checker
  }

  private requestDone(): void {
    this.inflight--
    if (this.inflight === 0) this.idle?.()
  }

  async start(): Promise<this> {
    // Checks start first: servers are checked at once, before traffic arrives.
    this.checker.start()
    try {
      for (const l of this.listeners) this.listenerAddresses.push(await l.listen())
      if (this.admin !== undefined) this.adminAddress = await this.admin.listen()
    } catch (err) {
      await this.stop(0)
      throw err
    }
    this.log.info(
      {
        listeners: this.listenerAddresses.map((a) => `${a.address}:${a.port}`),
        admin: this.adminAddress === undefined ? undefined : `${this.adminAddress.address}:${this.adminAddress.port}`,
        upstreams: Object.fromEntries([...this.upstreams].map(([n, u]) => [n, u.peers.map((p) => p.address)])),
      },
      'vigil started',
    )
    return this
  }

  /** Stop accepting, let in-flight requests finish within `grace` ms, then close every connection and pool. */
  stop(grace = ms(this.config.shutdown?.grace ?? DEFAULT_SHUTDOWN_GRACE)): Promise<void> {
    this.stopping ??= this.shutdown(grace)
    return this.stopping
  }

  private async shutdown(grace: number): Promise<void> {
    this.log.info({ inflight: this.inflight, grace }, 'vigil stopping')
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
    await this.checker.stop()
    await Promise.all([...this.upstreams.values()].map((u) => u.close()))
    this.log.info('vigil stopped')
  }
}

export async function startVigil(config: Config, options?: StartOptions): Promise<Vigil> {
  return new Vigil(config, options).start()
}
