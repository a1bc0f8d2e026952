// ZooKeeper source: each child of `path` is a provider. Every list is a getChildren that sets its watch in the
// same call, and every watch event leads to such a list (never list first and watch later). A reconnect re-lists
// in full; an expired session gets a new client, since an expired handle never recovers, and so does a client that
// stays disconnected for longer than the session timeout (zookeeper-client.ts says why it can). Records the
// process keeps itself (publish) are ephemeral nodes of its session: they go with the session, and come back with
// the list that a new session reads (see Subscription.publish).
import zookeeper, { type Client, type Exception, type Stat } from 'node-zookeeper-client'
import type { Logger } from 'pino'
import type { Records } from './formats.js'
import type { Target } from '../upstream/membership.js'
import { Subscription, type Listing, type ReadCause, type SubscriptionSettings } from './subscription.js'
import { discard, reopenWhenStuck } from './zookeeper-client.js'

export interface ZooKeeperSettings extends SubscriptionSettings {
  servers: string
  path: string
  sessionTimeout: number
  auth: { user: string; password: string } | undefined
}

type Watcher = (event: unknown) => void

export class ZooKeeperSubscription<E = Target> extends Subscription<E> {
  readonly kind = 'zookeeper'
  private client: Client | undefined
  private unwatch: () => void = () => undefined
  /** Set when a stuck client was replaced; the next one that connects says so (one line per episode). */
  private reopened = false
  /** Lists run concurrently (a watch fires while one is in flight); only the newest one delivers. */
  private seq = 0
  /** One watcher function: the client keeps a watcher once per path and function, so re-lists never pile up. */
  private readonly watcher: Watcher = () => {
    if (this.notified()) this.list('watch')
  }

  constructor(
    private readonly zk: ZooKeeperSettings,
    records: Records<E>,
    log: Logger,
  ) {
    super(`zookeeper ${zk.servers} ${zk.path}`, zk.path, zk, records, log)
  }

  /** The session's id and password (tests expire the session by connecting a second client with them). */
  sessionCredentials(): { sessionId: Buffer; sessionPassword: Buffer } | undefined {
    return this.client === undefined ? undefined : { sessionId: this.client.getSessionId(), sessionPassword: this.client.getSessionPassword() }
  }

  protected open(): void {
    this.connect()
  }

  protected async close(): Promise<void> {
    this.unwatch()
    if (this.client !== undefined) discard(this.client)
    this.client = undefined
  }

  protected read(): Promise<Listing<E>> {
    const client = this.client
    if (client === undefined || !this.connected) return Promise.reject(new Error('not connected to ZooKeeper'))
    return within(this.listing(client, undefined), this.settings.connectTimeout)
  }

  protected rewatch(): void {
    this.list('drift')
  }

  protected async write(name: string, value: string): Promise<void> {
    const client = this.connectedClient()
    const node = this.child(name)
    const data = Buffer.from(value)
    await within(mkdirp(client, this.zk.path), this.settings.connectTimeout)
    try {
      await within(call<string>((cb) => client.create(node, data, zookeeper.CreateMode.EPHEMERAL, cb)), this.settings.connectTimeout)
    } catch (err) {
      if (code(err) !== NODE_EXISTS) throw err
      // Ours (this session's), or left by a session that has not expired yet: replaced, and written again by
      // the next list if that session takes it away when it expires.
      await within(call<Stat>((cb) => client.setData(node, data, -1, cb)), this.settings.connectTimeout)
    }
  }

  protected async erase(name: string): Promise<void> {
    const client = this.connectedClient()
    try {
      await within(call<void>((cb) => client.remove(this.child(name), -1, cb)), this.settings.connectTimeout)
    } catch (err) {
      if (code(err) !== NO_NODE) throw err
    }
  }

  private connectedClient(): Client {
    if (this.client === undefined || !this.connected) throw new Error('not connected to ZooKeeper')
    return this.client
  }

  private child(name: string): string {
    return `${this.zk.path === '/' ? '' : this.zk.path}/${name}`
  }

  private connect(): void {
    const client = zookeeper.createClient(this.zk.servers, { sessionTimeout: this.zk.sessionTimeout, spinDelay: 500, retries: 0 })
    this.client = client
    if (this.zk.auth !== undefined) client.addAuthInfo('digest', Buffer.from(`${this.zk.auth.user}:${this.zk.auth.password}`))
    const mine = (): boolean => this.client === client && !this.closed
    this.unwatch = reopenWhenStuck(client, this.zk.sessionTimeout, () => {
      if (!mine()) return
      if (!this.reopened) {
        this.log.warn(
          { source: this.source, session: this.session, after: this.zk.sessionTimeout, keeping: this.keeping() },
          'not connected to ZooKeeper for longer than the session timeout; opening a new client (keeping the last good list)',
        )
      }
      this.reopened = true
      discard(client)
      this.connect()
    })
    client.on('connected', () => {
      if (!mine()) return
      const reconnect = this.targets !== undefined
      this.connected = true
      this.session = client.getSessionId().toString('hex')
      if (this.reopened) this.log.info({ source: this.source, session: this.session }, 'connected to ZooKeeper with a new client; listing again in full')
      else if (reconnect) this.log.info({ source: this.source, session: this.session }, 'reconnected to ZooKeeper; listing again in full')
      this.reopened = false
      // Changes may have happened while disconnected: a reconnect always re-lists (and re-arms the watch).
      this.list(reconnect ? 'relist' : 'first')
    })
    client.on('disconnected', () => {
      if (!mine()) return
      this.connected = false
      this.log.warn({ source: this.source, session: this.session, keeping: this.keeping() }, 'disconnected from ZooKeeper; keeping the last good list')
    })
    client.on('expired', () => {
      if (!mine()) return
      this.connected = false
      this.log.warn({ source: this.source, session: this.session }, 'ZooKeeper session expired; connecting with a new client')
      this.unwatch()
      discard(client)
      this.connect()
    })
    client.on('authenticationFailed', () => {
      if (mine()) this.failed(new Error('ZooKeeper authentication failed'))
    })
    client.connect()
  }

  private list(cause: ReadCause): void {
    const client = this.client
    if (client === undefined) return
    const seq = ++this.seq
    this.listing(client, this.watcher).then(
      (l) => {
        if (seq === this.seq && client === this.client) this.deliver(l, cause)
      },
      (err: Error) => {
        // A lost connection re-lists on 'connected'; anything else waits for the next watch or resync.
        if (client === this.client) this.failed(err)
      },
    )
  }

  /** Children (and their data for the json format), with `watcher` set by the very calls that read them. */
  private async listing(client: Client, watcher: Watcher | undefined): Promise<Listing<E>> {
    const path = this.zk.path
    const found = await children(client, path, watcher)
    if (found === undefined) {
      // No such node yet: watch for its creation in the same call that finds it missing.
      const stat = await exists(client, path, watcher)
      if (stat !== undefined) return this.listing(client, watcher)
      return { targets: [], invalid: [], version: 'none' }
    }
    const [names, stat] = found
    const records: [string, string | undefined][] = this.records.withData
      ? (await Promise.all(names.map(async (n) => [n, await data(client, this.child(n), watcher)] as const))).filter((r): r is [string, string] => r[1] !== undefined)
      : names.map((n) => [n, undefined])
    const { targets, invalid } = this.records.parse(records)
    return { targets, invalid, version: `0x${stat.pzxid.toString('hex')}` }
  }
}

const NO_NODE = -101
const NODE_EXISTS = -110

const code = (err: unknown): number | undefined =>
  typeof err === 'object' && err !== null && 'getCode' in err && typeof err.getCode === 'function' ? (err.getCode() as number) : undefined

function isNoNode(err: Error | Exception | null): boolean {
  return code(err) === NO_NODE
}

/** A client call with a node-style callback, as a promise. */
function call<T>(fn: (cb: (err: Error | Exception | null, result: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, result) => (err !== null ? reject(err) : resolve(result))))
}

function mkdirp(client: Client, path: string): Promise<string> {
  return call<string>((cb) => client.mkdirp(path, cb))
}

function children(client: Client, path: string, watcher: Watcher | undefined): Promise<[string[], Stat] | undefined> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | Exception | null, names: string[], stat: Stat): void => {
      if (isNoNode(err)) resolve(undefined)
      else if (err !== null) reject(err)
      else resolve([names, stat])
    }
    if (watcher === undefined) client.getChildren(path, done)
    else client.getChildren(path, watcher, done)
  })
}

function data(client: Client, path: string, watcher: Watcher | undefined): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | Exception | null, bytes: Buffer | undefined): void => {
      // A child deleted between the list and this read: the parent's watch brings the next list.
      if (isNoNode(err)) resolve(undefined)
      else if (err !== null) reject(err)
      else resolve(bytes?.toString('utf8') ?? '')
    }
    if (watcher === undefined) client.getData(path, done)
    else client.getData(path, watcher, done)
  })
}

function exists(client: Client, path: string, watcher: Watcher | undefined): Promise<Stat | undefined> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | Exception | null, stat: Stat | null): void => (err !== null ? reject(err) : resolve(stat ?? undefined))
    if (watcher === undefined) client.exists(path, done)
    else client.exists(path, watcher, done)
  })
}

/** A request the client queues while disconnected would wait forever: bound it. */
export function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
    timer.unref()
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}
