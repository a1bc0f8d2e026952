// `npm run drill:registry` (also the tail of `npm run drill`): registry drills against real etcd and ZooKeeper
// servers, under steady load (16 closed-loop clients) through vigil: a rolling deploy through the registry
// (deregister first; and, for etcd, killed without deregistering, its lease left to run out), a registry restart
// during the deploy, a lost event caught by the resync, an empty push, a start from the cache file with the
// registry down. Reports client errors, requests that reached a removed address after its removal was applied,
// seconds from a registry change to its application (p50/p99), and the drift counter. A registry that is not
// installed is skipped with a note. Flags: --kinds etcd,zookeeper --rounds 3 (providers replaced per deploy).
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Etcd3 } from 'etcd3'
import pino from 'pino'
import { Agent, request } from 'undici'
import { Vigil, type Config, type MembershipChange } from '../src/index.js'
import { EtcdServer, missingEtcd, missingZooKeeper, ZooKeeperAdmin, ZooKeeperServer } from './lib/registries.js'
import { sleep } from './lib/procs.js'

const { values } = parseArgs({ options: { kinds: { type: 'string', default: 'etcd,zookeeper' }, rounds: { type: 'string', default: '3' } } })
const ROUNDS = Number(values.rounds)
const CLIENTS = 16

/** A provider that counts what it serves, and what it served after vigil applied its removal. */
class Provider {
  served = 0
  afterRemoval = 0
  removedAt: number | undefined
  private constructor(
    readonly server: Server,
    readonly address: string,
  ) {}

  static async start(): Promise<Provider> {
    let self: Provider | undefined
    const server = createServer((_req, res) => {
      if (self !== undefined) {
        self.served++
        if (self.removedAt !== undefined) self.afterRemoval++
      }
      res.end('ok')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    self = new Provider(server, `127.0.0.1:${(server.address() as AddressInfo).port}`)
    return self
  }

  /** Like a SIGKILL: connections are cut, nothing is answered any more. */
  kill(): void {
    this.server.closeAllConnections()
    this.server.close()
  }
}

/** The registry side of a drill: how a provider registers, deregisters, or dies without deregistering. */
interface Registry {
  kind: 'etcd' | 'zookeeper'
  entry(cacheFile: string): NonNullable<Config['upstreams'][string]['servers'][number]>
  register(p: Provider): Promise<void>
  deregister(p: Provider): Promise<void>
  /** Gone without deregistering (its lease or session left to run out); undefined where not drilled. */
  vanish: ((p: Provider) => Promise<void>) | undefined
  clear(): Promise<void>
  restart(): Promise<void>
  close(): Promise<void>
}

async function etcdRegistry(): Promise<Registry> {
  const server = await EtcdServer.create()
  const kv = new Etcd3({ hosts: server.endpoint })
  const prefix = '/drill/api/'
  const leases = new Map<string, { client: Etcd3; release: () => void }>()
  return {
    kind: 'etcd',
    entry: (cacheFile) => ({ etcd: { endpoints: [server.endpoint], prefix, resyncInterval: '2s', connectTimeout: '1s', cacheFile, confirmDelay: '1s' } }),
    async register(p) {
      // Each provider's key hangs on its own 2 s lease, kept alive by its own client (as a real provider would).
      const client = new Etcd3({ hosts: server.endpoint })
      const lease = client.lease(2, { autoKeepAlive: true })
      await lease.put(`${prefix}${p.address}`).value(p.address)
      leases.set(p.address, { client, release: () => lease.release() })
    },
    async deregister(p) {
      await kv.delete().key(`${prefix}${p.address}`)
      leases.get(p.address)?.client.close()
    },
    vanish: async (p) => {
      const l = leases.get(p.address)
      l?.release()
      l?.client.close()
    },
    clear: async () => void (await kv.delete().prefix(prefix)),
    restart: async () => {
      await server.kill()
      await sleep(1_000)
      await server.start()
    },
    close: async () => {
      for (const l of leases.values()) l.client.close()
      kv.close()
      await server.destroy()
    },
  }
}

async function zooKeeperRegistry(): Promise<Registry> {
  const server = await ZooKeeperServer.create()
  const admin = await ZooKeeperAdmin.connect(server.connect)
  const path = '/drill/api/providers'
  await admin.mkdirp(path)
  return {
    kind: 'zookeeper',
    entry: (cacheFile) => ({ zookeeper: { servers: server.connect, path, resyncInterval: '2s', connectTimeout: '1s', sessionTimeout: '4s', cacheFile, confirmDelay: '1s' } }),
    register: (p) => admin.create(`${path}/${p.address}`, '', true),
    deregister: (p) => admin.remove(`${path}/${p.address}`),
    vanish: undefined,
    clear: async () => {
      for (const c of await admin.children(path)) await admin.remove(`${path}/${c}`)
    },
    // Down for longer than the session timeout (4 s): the server restores its sessions at start, so the ones
    // that reconnect in time keep theirs; vigil re-lists either way.
    restart: async () => {
      await server.kill()
      await sleep(5_000)
      await server.start()
    },
    close: async () => {
      admin.close()
      await server.destroy()
    },
  }
}

interface Load {
  requests: number
  errors: number
  stop(): Promise<void>
}

function load(url: string): Load {
  const agent = new Agent({ keepAliveTimeout: 1_000 })
  const state = { requests: 0, errors: 0, running: true }
  const loops = Array.from({ length: CLIENTS }, async () => {
    while (state.running) {
      try {
        const res = await request(url, { dispatcher: agent })
        await res.body.dump()
        state.requests++
        if (res.statusCode !== 200) state.errors++
      } catch {
        state.errors++
      }
    }
  })
  return {
    get requests() {
      return state.requests
    },
    get errors() {
      return state.errors
    },
    async stop() {
      state.running = false
      await Promise.all(loops)
      await agent.close()
    },
  }
}

/** Seconds from a registry write to vigil applying it, per change. */
class Applied {
  readonly seconds: number[] = []
  constructor(private readonly vigil: Vigil) {}

  /** Run `write` and wait until a membership change matching `done` applied. */
  async after(write: () => Promise<void>, done: (c: MembershipChange) => boolean, limit = 30_000): Promise<number> {
    const start = performance.now()
    const applied = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('change not applied within the limit')), limit)
      const on = (c: MembershipChange): void => {
        if (!done(c)) return
        clearTimeout(timer)
        this.vigil.membership.off('applied', on)
        resolve((performance.now() - start) / 1000)
      }
      this.vigil.membership.on('applied', on)
    })
    await write()
    const s = await applied
    this.seconds.push(s)
    return s
  }
}

const quantile = (xs: readonly number[], q: number): number | undefined => {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]
}

async function drill(registry: Registry): Promise<Record<string, unknown>> {
  const cacheFile = join(mkdtempSync(join(tmpdir(), 'vigil-drill-')), 'api.json')
  const providers = await Promise.all([0, 1, 2].map(() => Provider.start()))
  for (const p of providers) await registry.register(p)
  const config: Config = {
    listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
    log: { level: 'silent' },
    upstreams: { api: { servers: [registry.entry(cacheFile)], retry: { tries: 3 }, active: { type: 'tcp', interval: '500ms', fall: 1, rise: 1 } } },
  }
  const vigil = await new Vigil(config, { logger: pino({ level: 'silent' }), admin: false }).start()
  const url = `http://127.0.0.1:${(vigil.listenerAddresses[0] as AddressInfo).port}/`
  const applied = new Applied(vigil)
  const removed = (p: Provider) => (c: MembershipChange) => c.removed.includes(`api/${p.address}`)
  const added = (p: Provider) => (c: MembershipChange) => c.added.includes(`api/${p.address}`)
  vigil.membership.on('applied', (c) => {
    for (const p of all) if (c.removed.includes(`api/${p.address}`)) p.removedAt ??= Date.now()
  })
  const all = [...providers]
  const traffic = load(url)
  const out: Record<string, unknown> = { kind: registry.kind }
  const phase = async (name: string, fn: () => Promise<void>): Promise<void> => {
    const before = { requests: traffic.requests, errors: traffic.errors }
    const t0 = performance.now()
    try {
      await fn()
      out[name] = { requests: traffic.requests - before.requests, clientErrors: traffic.errors - before.errors, seconds: Number(((performance.now() - t0) / 1000).toFixed(1)) }
    } catch (err) {
      out[name] = { failed: (err as Error).message }
    }
  }
  const deploy = async (retire: (p: Provider) => Promise<void>): Promise<void> => {
    for (let i = 0; i < ROUNDS; i++) {
      const old = providers.shift() as Provider
      const fresh = await Provider.start()
      all.push(fresh)
      await applied.after(() => registry.register(fresh), added(fresh))
      providers.push(fresh)
      await retire(old)
    }
  }
  try {
    await sleep(500)
    await phase('rollingDeregister', () =>
      deploy(async (old) => {
        // Deregistered, it still passes its checks: the removalGrace rule keeps it until it is stopped and a
        // check fails, so the timed change is the stop (deregister, then kill, as a graceful provider does).
        await registry.deregister(old)
        await sleep(300)
        await applied.after(async () => old.kill(), removed(old))
      }),
    )
    const vanish = registry.vanish
    if (vanish !== undefined) {
      await phase('rollingKilled', () =>
        deploy(async (old) => {
          // Killed first: health checks and retries cover the gap until the lease runs out.
          old.kill()
          await applied.after(() => vanish(old), removed(old))
        }),
      )
    }
    await phase('registryRestart', async () => {
      const fresh = await Provider.start()
      all.push(fresh)
      await registry.restart()
      await applied.after(() => registry.register(fresh), added(fresh), 60_000)
      providers.push(fresh)
    })
    await phase('lostEvent', async () => {
      const sub = vigil.registries.sources[0]
      sub?.loseEvents(1)
      const fresh = await Provider.start()
      all.push(fresh)
      const s = await applied.after(() => registry.register(fresh), added(fresh))
      providers.push(fresh)
      out['lostEventCaughtSeconds'] = Number(s.toFixed(2))
      applied.seconds.pop()
    })
    await phase('emptyPush', async () => {
      const before = vigil.upstreams.get('api')?.peers.length ?? 0
      await registry.clear()
      await sleep(3_000)
      out['emptyPushServersKept'] = `${vigil.upstreams.get('api')?.peers.length ?? 0} of ${before}`
      for (const p of providers) await registry.register(p)
      await sleep(1_000)
    })
    out['drifts'] = vigil.registries.sources.reduce((n, s) => n + s.drifts, 0)
  } finally {
    await traffic.stop()
    await vigil.stop(500)
  }
  out['clientErrors'] = traffic.errors
  out['requests'] = traffic.requests
  out['requestsToRemovedAddresses'] = all.reduce((n, p) => n + p.afterRemoval, 0)
  const p50 = quantile(applied.seconds, 0.5)
  const p99 = quantile(applied.seconds, 0.99)
  out['changeToApplySeconds'] = { n: applied.seconds.length, p50: p50 === undefined ? null : Number(p50.toFixed(3)), p99: p99 === undefined ? null : Number(p99.toFixed(3)) }

  // Start with the registry down: from the cache file vigil wrote, serving at once.
  await registry.close()
  const t0 = performance.now()
  const cold = await new Vigil(config, { logger: pino({ level: 'silent' }), admin: false }).start().catch((e: Error) => e)
  if (cold instanceof Error) out['startFromCache'] = { failed: cold.message }
  else {
    const res = await request(`http://127.0.0.1:${(cold.listenerAddresses[0] as AddressInfo).port}/`)
    await res.body.dump()
    out['startFromCache'] = { status: res.statusCode, secondsToFirstAnswer: Number(((performance.now() - t0) / 1000).toFixed(2)), servers: cold.upstreams.get('api')?.peers.length }
    await cold.stop(200)
  }
  for (const p of all) p.kill()
  return out
}

const results: Record<string, unknown>[] = []
for (const kind of values.kinds.split(',')) {
  const missing = kind === 'etcd' ? await missingEtcd() : await missingZooKeeper()
  if (missing !== undefined) {
    process.stderr.write(`registry drill ${kind}: skipped (${missing})\n`)
    results.push({ kind, skipped: missing })
    continue
  }
  process.stderr.write(`registry drill ${kind} ...\n`)
  const registry = kind === 'etcd' ? await etcdRegistry() : await zooKeeperRegistry()
  results.push(await drill(registry))
}
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`)
process.exit(0)
