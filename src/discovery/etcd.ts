// etcd source: each key under `prefix` is a provider. A range read gives the list and its revision; the watch
// starts at that revision + 1, so no revision is skipped. A lost connection means a full read (retried every
// second) and a new watch; so does a watch cancelled because its revision was compacted. Records the process
// keeps itself (publish) are keys bound to one lease, kept alive by the client; a lost lease gets a new one.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, type IBackoff } from 'cockatiel'
import type { Etcd3, IOptions, Lease, Watcher } from 'etcd3'
import type { IRangeResponse, IWatchResponse } from 'etcd3/lib/rpc.js'
import type { Logger } from 'pino'
import type { Records } from './formats.js'
import type { Target } from '../upstream/membership.js'
import { Subscription, type Listing, type ReadCause, type SubscriptionSettings } from './subscription.js'
import { within } from './zookeeper.js'

export interface EtcdSettings extends SubscriptionSettings {
  endpoints: string[]
  prefix: string
  username: string | undefined
  password: string | undefined
  tls: { ca?: string | undefined; cert?: string | undefined; key?: string | undefined } | undefined
  /** TTL of the lease that owned records are bound to, seconds (they vanish this long after the process dies). */
  leaseTtl?: number | undefined
}

const DEFAULT_LEASE_TTL = 10

/**
 * etcd3, and the gRPC stack under it, is loaded by the first etcd source (about 27 MB and 0.1 s): a vigil without
 * one, and every cluster worker (the primary owns the sources), never loads it. A CommonJS package, so synchronously.
 */
const etcd3 = (): typeof import('etcd3') => createRequire(import.meta.url)('etcd3') as typeof import('etcd3')

/** How long a failed read waits before the next attempt. */
const RETRY = 1_000

export class EtcdSubscription<E = Target> extends Subscription<E> {
  readonly kind = 'etcd'
  private readonly client: Etcd3
  private watcher: Watcher | undefined
  /** True once the watch of the current read is set up. */
  watching = false
  /** key -> value as of `revision`: the range read, then every watch event applied in order. */
  private readonly values = new Map<string, string>()
  private revision = 0n
  /** Bumped by every restart: an older restart that finishes late changes nothing. */
  private epoch = 0
  private retry: NodeJS.Timeout | undefined
  /** The lease owned records are bound to; granted on the first write, replaced when lost. */
  private lease: Lease | undefined

  constructor(
    private readonly etcd: EtcdSettings,
    records: Records<E>,
    log: Logger,
  ) {
    super(`etcd ${etcd.endpoints.join(',')} ${etcd.prefix}`, etcd.prefix, etcd, records, log)
    this.client = new (etcd3().Etcd3)(clientOptions(etcd))
  }

  protected open(): void {
    void this.restart('first')
  }

  protected async close(): Promise<void> {
    this.epoch++
    clearTimeout(this.retry)
    const w = this.watcher
    this.watcher = undefined
    // A watch that is reconnecting may never answer its cancel: do not let shutdown wait on it.
    if (w !== undefined) await within(w.cancel(), 1_000).catch(() => undefined)
    abandonWatches(this.client)
    // A clean stop takes the owned records with it at once, not a lease TTL later.
    const lease = this.lease
    this.lease = undefined
    if (lease !== undefined) await within(lease.revoke(), 1_000).catch(() => undefined)
    this.client.close()
  }

  protected async read(): Promise<Listing<E>> {
    const res = await this.range()
    return this.listingOf(res.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]), BigInt(res.header.revision))
  }

  protected rewatch(): void {
    void this.restart('drift')
  }

  protected async write(name: string, value: string): Promise<void> {
    await within(this.ownLease().put(this.etcd.prefix + name).value(value).exec(), this.settings.connectTimeout)
  }

  protected async erase(name: string): Promise<void> {
    await within(this.client.delete().key(this.etcd.prefix + name).exec(), this.settings.connectTimeout)
  }

  private ownLease(): Lease {
    if (this.lease !== undefined) return this.lease
    const lease = this.client.lease(this.etcd.leaseTtl ?? DEFAULT_LEASE_TTL)
    this.lease = lease
    lease.on('lost', (err) => {
      if (this.lease !== lease || this.closed) return
      this.lease = undefined
      this.log.warn({ source: this.source, err: err.message }, 'etcd lease lost (expired or never granted); writing the records again under a new lease')
      // Not at once: an etcd that is away would be asked for a new lease in a tight loop.
      setTimeout(() => this.rewrite(), RETRY).unref()
    })
    return lease
  }

  private range(): Promise<IRangeResponse> {
    return within(this.client.getAll().prefix(this.etcd.prefix).exec(), this.settings.connectTimeout)
  }

  /** Read in full, deliver, then watch from the read's revision + 1; on any failure, try again shortly. */
  private async restart(cause: ReadCause): Promise<void> {
    const epoch = ++this.epoch
    clearTimeout(this.retry)
    const old = this.watcher
    this.watcher = undefined
    this.watching = false
    void old?.cancel().catch(() => undefined)
    try {
      const res = await this.range()
      if (epoch !== this.epoch) return
      this.values.clear()
      for (const kv of res.kvs) this.values.set(kv.key.toString(), kv.value.toString())
      this.revision = BigInt(res.header.revision)
      this.connected = true
      this.session = res.header.member_id
      this.deliver(this.listingOf(this.values, this.revision), cause)
      // watcher() rather than create(): a watch that never connects must still be held, so it can be cancelled
      // (an abandoned one stays in the client and keeps reconnecting, even after close).
      const w = this.client.watch().prefix(this.etcd.prefix).startRevision(String(this.revision + 1n)).watcher()
      this.watcher = w
      await within(
        new Promise<void>((resolve, reject) => {
          w.once('connected', () => resolve())
          w.once('error', reject)
        }),
        this.settings.connectTimeout,
      )
      if (epoch !== this.epoch) return
      this.watching = true
      this.log.debug({ source: this.source, revision: String(this.revision) }, 'watching etcd from the revision read')
      w.on('data', (r) => this.events(epoch, r))
      w.on('disconnected', () => {
        if (epoch !== this.epoch) return
        this.connected = false
        this.log.warn({ source: this.source, revision: String(this.revision), keeping: this.keeping() }, 'disconnected from etcd; keeping the last good list, reading again in full until it answers')
        // Not the client's own resume: its backoff grows to tens of seconds (and keeps a closed client alive).
        // Changes may have happened meanwhile anyway: a full read, then a new watch from there.
        void this.restart('relist')
      })
      w.on('error', (err) => {
        if (epoch !== this.epoch) return
        this.log.warn({ source: this.source, err: err.message, revision: String(this.revision) }, 'etcd watch ended (compacted or cancelled); reading again in full and watching from there')
        void this.restart('relist')
      })
    } catch (err) {
      if (epoch !== this.epoch) return
      void this.watcher?.cancel().catch(() => undefined)
      this.watcher = undefined
      this.connected = false
      this.failed(err as Error)
      this.retry = setTimeout(() => void this.restart(cause === 'first' ? 'first' : 'relist'), RETRY)
      this.retry.unref()
    }
  }

  /** One watch response: its events applied in order, then one list (a transaction is one change). */
  private events(epoch: number, r: IWatchResponse): void {
    if (epoch !== this.epoch || r.events.length === 0) return
    if (!this.notified()) return
    for (const e of r.events) {
      const key = e.kv.key.toString()
      if (e.type === 'Delete') this.values.delete(key)
      else this.values.set(key, e.kv.value.toString())
    }
    this.revision = BigInt(r.header.revision)
    this.deliver(this.listingOf(this.values, this.revision), 'watch')
  }

  private listingOf(values: Iterable<[string, string]>, revision: bigint): Listing<E> {
    const n = this.etcd.prefix.length
    const { targets, invalid } = this.records.parse([...values].map(([k, v]) => [k.slice(n), v]))
    return { targets, invalid, version: String(revision) }
  }
}

/** The part of etcd3 1.1.2's watch manager (not in its typed API) that a forced shutdown needs. */
interface WatchManagerInternals {
  watchers: unknown[]
  expectedClosers: Set<unknown>
  stream?: { cancel(): void }
}

/**
 * Drop every watch of `client` that is still there after its cancel had its chance: one whose cancel or create
 * etcd never answered (a hung server) stays in etcd3's manager with its stream open, and one that was connecting
 * is re-established on every stream error, even after close(); either keeps the process alive for good. Every
 * watch of this client is this source's, so all of them go; cancelling the stream ends its socket's last call.
 */
function abandonWatches(client: Etcd3): void {
  const manager = (client as unknown as { watchManager?: WatchManagerInternals }).watchManager
  if (manager === undefined) return
  manager.watchers = []
  manager.expectedClosers.clear()
  manager.stream?.cancel()
}

function clientOptions(etcd: EtcdSettings): IOptions {
  const timeout = etcd.connectTimeout
  const options: IOptions = {
    hosts: etcd.endpoints,
    dialTimeout: timeout,
    // Unary calls get a deadline; the watch stream must not.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeout }),
    // A restarted etcd should be read again within about a second: gRPC's reconnect backoff (up to 2 minutes by
    // default) and the client's per-host circuit breaker (5 s open) are both capped at RETRY.
    grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': RETRY },
    // The watch stream's own reconnect backoff too (30 s by default): a stopped source's last retry must not
    // keep the process waiting that long.
    faultHandling: {
      host: () => circuitBreaker(handleWhen(etcd3().isRecoverableError), { halfOpenAfter: RETRY, breaker: new ConsecutiveBreaker(3) }),
      // etcd3's type says a backoff; what it calls (and its own default) is a factory of them.
      watchBackoff: new ExponentialBackoff({ initialDelay: 200, maxDelay: RETRY }) as unknown as IBackoff<unknown>,
    },
  }
  if (etcd.username !== undefined) options.auth = { username: etcd.username, password: etcd.password ?? '' }
  const tls = etcd.tls
  if (tls !== undefined && (tls.ca !== undefined || tls.cert !== undefined)) {
    options.credentials = {
      // Without a ca, the system's roots (etcd3's type wants a Buffer; grpc-js takes null for its defaults).
      rootCertificate: (tls.ca === undefined ? null : readFileSync(tls.ca)) as Buffer,
      privateKey: tls.key === undefined ? undefined : readFileSync(tls.key),
      certChain: tls.cert === undefined ? undefined : readFileSync(tls.cert),
    }
  }
  return options
}
