// Real registry servers for tests and drills: Debian's ZooKeeper (a Java program) and etcd, each started by hand
// on free loopback ports with a temporary data directory, in its own process group, and restartable on the same
// port and data (a registry restart keeps its data; a session or lease outlives it only if it is renewed in time).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { get as httpGet } from 'node:http'
import { get as httpsGet } from 'node:https'
import { connect, createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import zookeeper, { type Client, type Exception } from 'node-zookeeper-client'
import { within } from '../../src/discovery/zookeeper.js'
import { discard, reopenWhenStuck } from '../../src/discovery/zookeeper-client.js'
import { firstJsonLine, freePort, Proc, root, sleep, which } from './procs.js'

export const ZOOKEEPER_JAR = '/usr/share/java/zookeeper.jar'
/** slf4j's no-op binding keeps ZooKeeper's log off the test output. */
const SLF4J_NOP = '/usr/share/java/slf4j-nop.jar'

/** Why a registry cannot run on this machine, or undefined when it can. */
export async function missingZooKeeper(): Promise<string | undefined> {
  if (!existsSync(ZOOKEEPER_JAR)) return `ZooKeeper is not installed (${ZOOKEEPER_JAR}; Debian package "zookeeper")`
  if ((await which('java')) === undefined) return 'java is not installed (needed by ZooKeeper)'
  return undefined
}

export async function missingEtcd(): Promise<string | undefined> {
  return (await which('etcd')) === undefined ? 'etcd is not installed (Debian package "etcd-server")' : undefined
}

export abstract class RegistryServer {
  protected proc: Proc | undefined
  readonly dir = mkdtempSync(join(tmpdir(), 'vigil-registry-'))

  constructor(readonly port: number) {}

  get running(): boolean {
    return this.proc?.running === true
  }

  get pid(): number {
    return this.proc?.pid ?? -1
  }

  /** Start (again, on the same port and data) and wait until it answers. */
  async start(timeout = 30_000): Promise<void> {
    const proc = this.spawn()
    this.proc = proc
    const deadline = Date.now() + timeout
    while (!(await this.answers())) {
      if (!proc.running) throw new Error(`${proc.name} exited before it answered on ${this.port}`)
      if (Date.now() > deadline) throw new Error(`${proc.name} did not answer on ${this.port} within ${timeout} ms`)
      await sleep(50)
    }
  }

  /** SIGKILL the whole process group (a crash); `start` brings it back. */
  async kill(): Promise<void> {
    const p = this.proc
    if (p === undefined || !p.running) return
    p.signal('SIGCONT')
    p.signal('SIGKILL')
    await p.exited
  }

  signal(sig: NodeJS.Signals): void {
    this.proc?.signal(sig)
  }

  /** Kill it and remove its data. */
  async destroy(): Promise<void> {
    await this.kill()
    rmSync(this.dir, { recursive: true, force: true })
  }

  protected abstract spawn(): Proc
  protected abstract answers(): Promise<boolean>
}

export class ZooKeeperServer extends RegistryServer {
  constructor(
    port: number,
    /** The address it listens on (the fleet drill's is a veth's, so a vigil in a namespace reaches it too). */
    readonly host = '127.0.0.1',
  ) {
    super(port)
  }

  /** "HOST:PORT", as a client's connect string. */
  get connect(): string {
    return `${this.host}:${this.port}`
  }

  static async create(host?: string): Promise<ZooKeeperServer> {
    const z = new ZooKeeperServer(await freePort(), host)
    // A short tick lets tests use short session timeouts (the minimum is 2 ticks).
    writeFileSync(
      join(z.dir, 'zoo.cfg'),
      [`tickTime=250`, `dataDir=${join(z.dir, 'data')}`, `clientPort=${z.port}`, `clientPortAddress=${z.host}`, 'admin.enableServer=false', '4lw.commands.whitelist=ruok,srvr', 'maxSessionTimeout=60000', ''].join('\n'),
    )
    await z.start()
    return z
  }

  protected spawn(): Proc {
    const args = ['-Xmx128m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Xshare:auto', '-cp', `${ZOOKEEPER_JAR}:${SLF4J_NOP}`, 'org.apache.zookeeper.server.ZooKeeperServerMain', join(this.dir, 'zoo.cfg')]
    return new Proc(`zookeeper:${this.port}`, 'java', args, { stderr: 'ignore' })
  }

  protected answers(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = connect(this.port, this.host)
      let reply = ''
      socket.setTimeout(1_000, () => socket.destroy())
      socket.once('connect', () => socket.end('ruok'))
      socket.on('data', (d: Buffer) => (reply += d.toString()))
      socket.once('close', () => resolve(reply === 'imok'))
      socket.once('error', () => resolve(false))
    })
  }
}

/** PEM files of an etcd that serves https only and asks every client for a certificate signed by `ca`. */
export interface EtcdTls {
  ca: string
  cert: string
  key: string
  /** The certificate and key `answers()` presents. */
  clientCert: string
  clientKey: string
}

export class EtcdServer extends RegistryServer {
  constructor(
    port: number,
    private readonly peerPort: number,
    readonly tls: EtcdTls | undefined,
  ) {
    super(port)
  }

  get endpoint(): string {
    return `${this.tls === undefined ? 'http' : 'https'}://127.0.0.1:${this.port}`
  }

  static async create(options: { tls?: EtcdTls } = {}): Promise<EtcdServer> {
    const e = new EtcdServer(await freePort(), await freePort(), options.tls)
    await e.start()
    return e
  }

  protected spawn(): Proc {
    const client = this.endpoint
    const peer = `http://127.0.0.1:${this.peerPort}`
    const args = [
      '--name', 'vigil-test',
      '--data-dir', join(this.dir, 'data'),
      '--listen-client-urls', client,
      '--advertise-client-urls', client,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `vigil-test=${peer}`,
      '--log-level', 'error',
      ...(this.tls === undefined ? [] : ['--cert-file', this.tls.cert, '--key-file', this.tls.key, '--trusted-ca-file', this.tls.ca, '--client-cert-auth']),
    ]
    return new Proc(`etcd:${this.port}`, 'etcd', args, { stderr: 'ignore' })
  }

  protected answers(): Promise<boolean> {
    const tls = this.tls
    const options = tls === undefined ? {} : { ca: readFileSync(tls.ca), cert: readFileSync(tls.clientCert), key: readFileSync(tls.clientKey) }
    return new Promise((resolve) => {
      const req = (tls === undefined ? httpGet : httpsGet)(`${this.endpoint}/health`, { ...options, timeout: 1_000 }, (res) => {
        let body = ''
        res.on('data', (d: Buffer) => (body += d.toString()))
        res.on('end', () => {
          try {
            resolve((JSON.parse(body) as { health?: string }).health === 'true')
          } catch {
            resolve(false)
          }
        })
      })
      req.on('timeout', () => req.destroy())
      req.on('error', () => resolve(false))
    })
  }
}

/**
 * A plain ZooKeeper client for tests and drills: providers register (ephemeral nodes) and deregister through it.
 * If its session expires (a registry restart took too long), or it stays disconnected for longer than its session
 * timeout (src/discovery/zookeeper-client.ts says why it can), it opens a new one, so it can go on being used;
 * a call that gets no answer fails after a while instead of waiting forever.
 */
export class ZooKeeperAdmin {
  private unwatch: () => void = () => undefined

  private constructor(
    public client: Client,
    private readonly open: () => Client,
    private readonly sessionTimeout: number,
  ) {
    this.renew(client)
  }

  /** Connect; `sessionId`/`sessionPassword` join an existing session (closing this client then ends it). */
  static async connect(connectString: string, options: { sessionTimeout?: number; sessionId?: Buffer; sessionPassword?: Buffer } = {}): Promise<ZooKeeperAdmin> {
    const settings = { sessionTimeout: 4_000, spinDelay: 200, ...options }
    const open = (): Client => {
      const c = zookeeper.createClient(connectString, settings as Parameters<typeof zookeeper.createClient>[1])
      c.connect()
      return c
    }
    const client = open()
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ZooKeeper session with ${connectString}`)), 15_000)
      client.once('connected', () => {
        clearTimeout(timer)
        resolve()
      })
    })
    return new ZooKeeperAdmin(client, open, settings.sessionTimeout)
  }

  private renew(client: Client): void {
    const replace = (): void => {
      this.unwatch()
      discard(client)
      this.client = this.open()
      this.renew(this.client)
    }
    this.unwatch = reopenWhenStuck(client, this.sessionTimeout, replace)
    client.once('expired', replace)
  }

  mkdirp(path: string): Promise<void> {
    return this.call((c, done) => c.mkdirp(path, (err) => done(err)))
  }

  /** Create a node; ephemeral ones vanish with this client's session. */
  create(path: string, data = '', ephemeral = false): Promise<void> {
    const mode = ephemeral ? zookeeper.CreateMode.EPHEMERAL : zookeeper.CreateMode.PERSISTENT
    return this.call(
      (c, done) => c.create(path, Buffer.from(data), mode, (err) => done(err)),
      (err) => (err as Exception).getCode?.() === zookeeper.Exception.NODE_EXISTS,
    )
  }

  remove(path: string): Promise<void> {
    return this.call((c, done) => c.remove(path, (err) => done(err)))
  }

  setData(path: string, data: string): Promise<void> {
    return this.call((c, done) => c.setData(path, Buffer.from(data), (err) => done(err)))
  }

  children(path: string): Promise<string[]> {
    return this.call<string[]>((c, done) => c.getChildren(path, (err, names) => done(err, names)))
  }

  close(): void {
    this.unwatch()
    this.client.removeAllListeners('expired')
    discard(this.client)
  }

  /**
   * One request on the current client (a request queued on a client that is replaced would never be answered),
   * tried again while the connection is lost: a test's request right after a registry restart, before the
   * client has reconnected, otherwise fails with CONNECTION_LOSS. `applied` says whether an error on a second
   * try means the first one was applied before its answer was lost (a create's NODE_EXISTS).
   */
  private call<T = void>(request: (c: Client, done: (err: Error | Exception | null, value?: T) => void) => void, applied: (err: unknown) => boolean = () => false): Promise<T> {
    const limit = 3 * this.sessionTimeout
    const end = Date.now() + limit
    const attempt = (again: boolean): Promise<T> =>
      new Promise<T>((resolve, reject) => request(this.client, (err, value) => (err && !(again && applied(err)) ? reject(err) : resolve(value as T)))).catch(async (err: unknown) => {
        if ((err as Exception).getCode?.() !== zookeeper.Exception.CONNECTION_LOSS || Date.now() + 200 > end) throw err
        await sleep(200)
        return attempt(true)
      })
    return within(attempt(false), limit)
  }
}

/**
 * A provider's registration held by a process of its own (bench/lib/zookeeper-member.ts, run from dist/): its
 * ephemeral node lives as long as that process's session. `kill()` is a crash: the session is not closed, so
 * the node goes only when the server expires the session.
 */
export class ZooKeeperMember {
  private constructor(private readonly proc: Proc) {}

  /** Start the process and resolve once its session is open; `register()` then creates `node`. */
  static async start(connectString: string, node: string, sessionMs = 4_000): Promise<ZooKeeperMember> {
    const proc = new Proc(`zookeeper-member:${node}`, process.execPath, [`${root}dist/bench/lib/zookeeper-member.js`, connectString, node, String(sessionMs)])
    try {
      await firstJsonLine(proc, 15_000)
    } catch (err) {
      proc.signal('SIGKILL')
      throw err
    }
    return new ZooKeeperMember(proc)
  }

  /** Create the ephemeral node (its parent must exist); resolves once it is created. */
  async register(): Promise<void> {
    const registered = firstJsonLine(this.proc, 15_000)
    this.proc.signal('SIGUSR2')
    await registered
  }

  /** SIGKILL, as a crash: nothing is deregistered. */
  async kill(): Promise<void> {
    this.proc.signal('SIGKILL')
    await this.proc.exited
  }
}

/**
 * A TCP relay in front of a registry: `partition()` cuts every connection and then accepts new ones without
 * forwarding a byte (packets lost, as on a broken network), `heal()` forwards again. A client cut off for longer
 * than its session timeout finds its ZooKeeper session expired when it gets through.
 */
export class Relay {
  private readonly sockets = new Set<Socket>()
  private cut = false

  private constructor(
    private readonly server: NetServer,
    readonly port: number,
  ) {}

  /** Bytes the relay's clients sent towards the target. */
  forwarded = 0

  /** A relay to `target`, on `port` (0: any free one). */
  static async create(target: number, port = 0): Promise<Relay> {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    const relay = new Relay(server, (server.address() as AddressInfo).port)
    server.on('connection', (socket) => relay.accept(socket, target))
    return relay
  }

  get address(): string {
    return `127.0.0.1:${this.port}`
  }

  partition(): void {
    this.cut = true
    for (const s of this.sockets) s.destroy()
  }

  /**
   * Forward again. Connections accepted while cut off carried nothing: by default they are dropped so their
   * clients dial again; with `keepStalled` they stay open and silent, like a handshake a server never answers.
   */
  heal({ keepStalled = false } = {}): void {
    this.cut = false
    if (!keepStalled) for (const s of this.sockets) s.destroy()
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private accept(socket: Socket, target: number): void {
    this.sockets.add(socket)
    socket.once('close', () => this.sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    if (this.cut) return
    const upstream = connect(target, '127.0.0.1')
    this.sockets.add(upstream)
    upstream.once('close', () => {
      this.sockets.delete(upstream)
      socket.destroy()
    })
    socket.once('close', () => upstream.destroy())
    upstream.on('error', () => upstream.destroy())
    socket.on('data', (d: Buffer) => (this.forwarded += d.length))
    socket.pipe(upstream)
    upstream.pipe(socket)
  }
}
