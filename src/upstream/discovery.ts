// Discovery from DNS: servers with `resolve: true` are names resolved (A/AAAA, or SRV for "_service._proto.name")
// and re-resolved on their TTL within [minTtl, maxTtl]. A failed or empty answer keeps the last good one.
import { promises as dns, type RecordWithTtl, type SrvRecord } from 'node:dns'
import { isIP } from 'node:net'
import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import { ms } from '../config/duration.js'
import { sameJson } from '../config/diff.js'
import { splitAddress } from '../net.js'
import { listKey, type ServerLists, type Target } from './membership.js'

/** The edge of the module: node's dns.promises.Resolver, or a stand-in in unit tests. */
export interface DnsResolver {
  resolve4(hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>
  resolve6(hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>
  resolveSrv(hostname: string): Promise<SrvRecord[]>
}

export const DEFAULT_MIN_TTL = 1_000
export const DEFAULT_MAX_TTL = 300_000
const DEFAULT_TIMEOUT = 2_000

export function createResolver(config: Config['resolver']): DnsResolver {
  const resolver = new dns.Resolver({ timeout: ms(config?.timeout ?? DEFAULT_TIMEOUT), tries: 2 })
  if (config?.servers !== undefined) resolver.setServers(config.servers)
  return resolver
}

export interface DiscoveryOptions {
  resolver: DnsResolver
  log: Logger
  config: () => Config['resolver']
  /** An entry's answer changed: hand the complete new list to the update queue (src/update/queue.ts). */
  changed: (upstream: string, name: string, targets: readonly Target[]) => void
}

interface Answer {
  targets: Target[]
  /** Seconds, as DNS gives it. */
  ttl: number
}

class Entry {
  answer: readonly Target[] = []
  failures = 0
  timer: NodeJS.Timeout | undefined
  constructor(
    readonly upstream: string,
    readonly name: string,
  ) {}
}

const SRV = /^_[^.]+\._(tcp|udp)\./

export class Discovery {
  private readonly entries = new Map<string, Entry>()
  private closed = false

  constructor(private readonly options: DiscoveryOptions) {}

  /** The last good answers of the entries `upstreams` lists, as the lists a prepare hands to the membership. */
  lists(upstreams: Config['upstreams']): ServerLists {
    const out = new Map<string, readonly Target[]>()
    for (const [upstream, u] of Object.entries(upstreams)) {
      for (const s of u.servers) if (s.resolve === true && s.address !== undefined) out.set(listKey(upstream, s.address), this.entries.get(key(upstream, s.address))?.answer ?? [])
    }
    return out
  }

  /** Start resolving the entries of `upstreams` not known yet; resolves when each has its first answer or failure. */
  async prime(upstreams: Config['upstreams']): Promise<void> {
    const fresh: Entry[] = []
    for (const [upstream, u] of Object.entries(upstreams)) {
      for (const s of u.servers) {
        if (s.resolve !== true || s.address === undefined || this.entries.has(key(upstream, s.address))) continue
        const e = new Entry(upstream, s.address)
        this.entries.set(key(upstream, s.address), e)
        fresh.push(e)
      }
    }
    await Promise.all(fresh.map((e) => this.resolve(e, false)))
  }

  /** Stop resolving entries that `upstreams` no longer lists. */
  retain(upstreams: Config['upstreams']): void {
    for (const [k, e] of this.entries) {
      if (upstreams[e.upstream]?.servers.some((s) => s.resolve === true && s.address === e.name) === true) continue
      clearTimeout(e.timer)
      this.entries.delete(k)
    }
  }

  close(): void {
    this.closed = true
    for (const e of this.entries.values()) clearTimeout(e.timer)
    this.entries.clear()
  }

  private async resolve(e: Entry, notify: boolean): Promise<void> {
    const { minTtl, maxTtl } = this.bounds()
    let next: number
    try {
      const answer = await this.lookup(e.name)
      if (answer.targets.length === 0) throw Object.assign(new Error('no records'), { code: 'ENODATA' })
      e.failures = 0
      next = Math.min(maxTtl, Math.max(minTtl, answer.ttl * 1000))
      if (!sameJson(answer.targets, e.answer)) {
        e.answer = answer.targets
        if (notify) this.options.changed(e.upstream, e.name, e.answer)
      }
    } catch (err) {
      // An empty answer counts as a failure too: a group emptied by a DNS hiccup serves nothing, while stale
      // addresses are what health checks are for.
      e.failures++
      next = Math.min(maxTtl, minTtl * 2 ** Math.min(e.failures - 1, 16))
      const error = err as NodeJS.ErrnoException
      this.options.log.warn({ upstream: e.upstream, name: e.name, err: error.code ?? error.message, keeping: e.answer.map((t) => t.address), retryMs: next }, 'DNS resolution failed; keeping the last good answer')
    }
    if (this.closed || this.entries.get(key(e.upstream, e.name)) !== e) return
    e.timer = setTimeout(() => void this.resolve(e, true), next)
    e.timer.unref()
  }

  private bounds(): { minTtl: number; maxTtl: number } {
    const c = this.options.config()
    const minTtl = ms(c?.minTtl ?? DEFAULT_MIN_TTL)
    return { minTtl, maxTtl: Math.max(minTtl, ms(c?.maxTtl ?? DEFAULT_MAX_TTL)) }
  }

  private async lookup(name: string): Promise<Answer> {
    if (!SRV.test(name)) {
      const { host, port } = splitAddress(name)
      return this.addresses(host, port, {})
    }
    const records = await this.options.resolver.resolveSrv(name)
    // Lowest priority value first (RFC 2782); the others stand by as backups.
    const top = Math.min(...records.map((r) => r.priority))
    const answers = await Promise.all(records.map((r) => this.addresses(r.name, r.port, { weight: Math.min(1000, Math.max(1, r.weight)), backup: r.priority !== top })))
    return { targets: sorted(answers.flatMap((a) => a.targets)), ttl: Math.min(...answers.map((a) => a.ttl)) }
  }

  /** A and AAAA together; one family failing is fine as long as the other answers. */
  private async addresses(host: string, port: number, extra: Omit<Target, 'address'>): Promise<Answer> {
    if (isIP(host) !== 0) return { targets: [{ address: join(host, port), ...extra }], ttl: Infinity }
    const [v4, v6] = await Promise.allSettled([this.options.resolver.resolve4(host, { ttl: true }), this.options.resolver.resolve6(host, { ttl: true })])
    if (v4.status === 'rejected' && v6.status === 'rejected') throw v4.reason
    const records = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])]
    return { targets: sorted(records.map((r) => ({ address: join(r.address, port), ...extra }))), ttl: Math.min(...records.map((r) => r.ttl)) }
  }
}

const key = listKey
const join = (host: string, port: number): string => (isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`)
const sorted = (targets: Target[]): Target[] => targets.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0))
