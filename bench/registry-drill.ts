// `npm run drill:registry` (also the tail of `npm run drill`): registry drills against real etcd and ZooKeeper
// servers, under steady load (16 closed-loop clients) through vigil: a rolling deploy through the registry
// (deregister, then kill; and killed without deregistering, its etcd lease or its ZooKeeper session left to run
// out), a registry restart during the deploy, a lost event caught by the resync, an empty push, a start from the
// cache file with the registry down. Per phase: client errors, requests that reached a removed address after its
// removal was applied (counted by the providers), seconds from a registry change to its application (p50/p99),
// and the drift counter. Rows go to bench/out/registry.json and the drill report (report.html, SUMMARY.md),
// labelled with the run and its scale (rounds / 3). A registry that is not installed is skipped with a note.
// Flags: --kinds etcd,zookeeper --rounds 3 (providers replaced per deploy), --limit 900 (seconds: the watchdog that
// ends a drill that hangs, with exit code 1; a single phase is given up after PHASE_LIMIT_MS and marked failed).
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Etcd3 } from 'etcd3'
import pino from 'pino'
import { Agent, request } from 'undici'
import { Vigil, type Config, type MembershipChange } from '../src/index.js'
import { EtcdServer, missingEtcd, missingZooKeeper, ZooKeeperAdmin, ZooKeeperMember, ZooKeeperServer } from './lib/registries.js'
import { sleep } from './lib/procs.js'
import { registryRow, writeReport, type RegistryDoc, type RegistryPhase, type RegistryRow } from './lib/report.js'
import { resultsDir, writeJson, type RunLabel } from './lib/results.js'

const DEFAULT_ROUNDS = 3
const { values } = parseArgs({
  options: { kinds: { type: 'string', default: 'etcd,zookeeper' }, rounds: { type: 'string', default: String(DEFAULT_ROUNDS) }, limit: { type: 'string', default: '900' } },
})
const ROUNDS = Number(values.rounds)
/** A phase that has not ended by then is recorded as failed and the drill goes on (its own waits are shorter). */
const PHASE_LIMIT_MS = 120_000
/** What runs now, for the watchdog's last word. */
let running = 'start'
// The drill must never hang: past --limit it says what was running and exits 1 (procs.ts kills the children).
const watchdog = setTimeout(() => {
  process.stderr.write(`registry drill: watchdog: still running "${running}" after ${values.limit} s; giving up\n`)
  process.exit(1)
}, Number(values.limit) * 1000)
const CLIENTS = 16
/**
 * The sources' resyncInterval (2 s): a lost event is caught by the next resync, which looks again
 * resyncInterval / 4 later (src/discovery/subscription.ts) before it calls a difference a drift.
 */
const LOST_EVENT_BOUND_S = 2 * 1.25
/** The providers' own ZooKeeper sessions (the etcd leases are 2 s). */
const MEMBER_SESSION_MS = 4_000

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
  /** What a provider sets up before it registers (not part of a timed change). */
  prepare(p: Provider): Promise<void>
  /** The registry change itself: the clock of a timed change starts here. */
  register(p: Provider): Promise<void>
  deregister(p: Provider): Promise<void>
  /** Gone without deregistering: its lease or session is left to run out. */
  vanish(p: Provider): Promise<void>
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
    prepare: async () => undefined,
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
  // Each provider's ephemeral node hangs on a session of its own process (bench/lib/zookeeper-member.ts), so a
  // SIGKILL leaves the node to expire with the session, as a crashed provider does.
  const members = new Map<string, ZooKeeperMember>()
  const end = async (p: Provider): Promise<void> => {
    await members.get(p.address)?.kill()
    members.delete(p.address)
  }
  const prepare = async (p: Provider): Promise<void> => {
    await end(p)
    members.set(p.address, await ZooKeeperMember.start(server.connect, `${path}/${p.address}`, MEMBER_SESSION_MS))
  }
  return {
    kind: 'zookeeper',
    entry: (cacheFile) => ({ zookeeper: { servers: server.connect, path, resyncInterval: '2s', connectTimeout: '1s', sessionTimeout: '4s', cacheFile, confirmDelay: '1s' } }),
    prepare,
    async register(p) {
      if (!members.has(p.address)) await prepare(p)
      await members.get(p.address)?.register()
    },
    async deregister(p) {
      await admin.remove(`${path}/${p.address}`)
      await end(p)
    },
    async vanish(p) {
      await end(p)
      // The drill is about the node outliving its provider: if the kill had closed the session, say so.
      if (!(await admin.children(path)).includes(p.address)) throw new Error(`${p.address}'s node went with the kill: its session was closed, not left to expire`)
    },
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
      for (const m of members.values()) await m.kill()
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
    // Together, so a failed write also settles the wait (no rejection left unhandled when its timer fires).
    const [s] = await Promise.all([applied, write()])
    this.seconds.push(s)
    return s
  }
}

async function drill(registry: Registry, label: RunLabel): Promise<RegistryRow[]> {
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
  const all = [...providers]
  vigil.membership.on('applied', (c) => {
    for (const p of all) if (c.removed.includes(`api/${p.address}`)) p.removedAt ??= Date.now()
  })
  const sentToRemoved = () => all.reduce((n, p) => n + p.afterRemoval, 0)
  const servers = () => vigil.upstreams.get('api')?.peers.map((p) => p.address) ?? []
  const traffic = load(url)
  const rows: RegistryRow[] = []
  const base = { ...label, kind: registry.kind, rounds: ROUNDS }
  /** One row per phase: its traffic, its change→apply times, and what `fn` says it showed. */
  const phase = async (name: RegistryPhase, fn: () => Promise<Pick<RegistryRow, 'result' | 'missed'>>, underLoad = true): Promise<void> => {
    const before = { requests: traffic.requests, errors: traffic.errors, sent: sentToRemoved(), applied: applied.seconds.length }
    const t0 = performance.now()
    running = `${registry.kind}: ${name}`
    let timer: NodeJS.Timeout | undefined
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`watchdog: the phase did not end within ${PHASE_LIMIT_MS / 1000} s`)), PHASE_LIMIT_MS)
    })
    try {
      const shown = await Promise.race([fn(), limit])
      const counts = { requests: traffic.requests - before.requests, clientErrors: traffic.errors - before.errors, sentToRemoved: sentToRemoved() - before.sent }
      rows.push({
        ...base,
        phase: name,
        status: 'ok',
        ...(underLoad ? counts : {}),
        changeToApply: applied.seconds.slice(before.applied),
        seconds: (performance.now() - t0) / 1000,
        ...shown,
      })
    } catch (err) {
      rows.push({ ...base, phase: name, status: 'failed', note: (err as Error).message })
    } finally {
      clearTimeout(timer)
    }
  }
  /** A provider started and ready to register, so a timed change is the registration alone. */
  const newProvider = async (): Promise<Provider> => {
    const p = await Provider.start()
    all.push(p)
    await registry.prepare(p)
    return p
  }
  /** Replace ROUNDS providers one by one; `retire` times the old one's removal. Says how long removals took. */
  const deploy = async (retire: (p: Provider) => Promise<number>, after: string): Promise<Pick<RegistryRow, 'result'>> => {
    const removals: string[] = []
    for (let i = 0; i < ROUNDS; i++) {
      const old = providers.shift() as Provider
      const fresh = await newProvider()
      await applied.after(() => registry.register(fresh), added(fresh))
      providers.push(fresh)
      removals.push((await retire(old)).toFixed(2))
    }
    return { result: `each new provider added, then the old one removed ${removals.join(', ')} s after ${after}` }
  }
  try {
    await sleep(500)
    await phase('deregister, then kill', () =>
      deploy(async (old) => {
        // Deregistered, it still passes its checks: the removalGrace rule keeps it until it is stopped and a
        // check fails, so the timed change is the stop (deregister, then kill, as a graceful provider does).
        await registry.deregister(old)
        await sleep(300)
        return applied.after(async () => old.kill(), removed(old))
      }, 'its kill'),
    )
    await phase('killed, not deregistered', () =>
      // Killed first (HTTP server and, for ZooKeeper, the process holding its session): health checks and
      // retries cover the gap until the lease or session runs out; timed from the kill.
      deploy(
        (old) =>
          applied.after(async () => {
            old.kill()
            await registry.vanish(old)
          }, removed(old)),
        `its kill (${registry.kind === 'etcd' ? 'lease 2 s' : `session ${MEMBER_SESSION_MS / 1000} s`})`,
      ),
    )
    await phase('registry restart', async () => {
      const fresh = await newProvider()
      await registry.restart()
      await applied.after(() => registry.register(fresh), added(fresh), 60_000)
      providers.push(fresh)
      const want = providers.map((p) => p.address).sort()
      const got = servers().sort()
      const right = JSON.stringify(want) === JSON.stringify(got)
      return { result: right ? `re-listed: the ${got.length} live providers` : `ends with ${got.join(' ')}`, missed: right ? [] : [`wrong set: ${got.length} servers, ${want.length} providers`] }
    })
    await phase('lost event', async () => {
      const drifts = () => vigil.registries.sources.reduce((n, s) => n + s.drifts, 0)
      const d0 = drifts()
      const fresh = await newProvider()
      vigil.registries.sources[0]?.loseEvents(1)
      const s = await applied.after(() => registry.register(fresh), added(fresh))
      providers.push(fresh)
      const counted = drifts() - d0
      const missed = [...(s > LOST_EVENT_BOUND_S ? [`caught after ${s.toFixed(2)} s > ${LOST_EVENT_BOUND_S} s (resyncInterval and the second look)`] : []), ...(counted < 1 ? ['drift not counted'] : [])]
      return { result: `caught by the resync after ${s.toFixed(2)} s; drift counter +${counted}`, missed }
    })
    await phase('empty push', async () => {
      const before = servers().length
      await registry.clear()
      await sleep(3_000)
      const kept = servers().length
      for (const p of providers) await registry.register(p)
      await sleep(1_000)
      return { result: `${kept} of ${before} servers kept`, missed: kept < before ? [`${before - kept} servers dropped`] : [] }
    })
  } finally {
    running = `${registry.kind}: stopping the load and vigil`
    await traffic.stop()
    await vigil.stop(500)
  }

  // Start with the registry down: from the cache file vigil wrote, serving at once.
  running = `${registry.kind}: stopping the registry`
  await registry.close()
  await phase('start from cache', async () => {
    const t0 = performance.now()
    const cold = await new Vigil(config, { logger: pino({ level: 'silent' }), admin: false }).start()
    try {
      const res = await request(`http://127.0.0.1:${(cold.listenerAddresses[0] as AddressInfo).port}/`)
      await res.body.dump()
      const s = (performance.now() - t0) / 1000
      return { result: `${res.statusCode} after ${s.toFixed(2)} s from ${cold.upstreams.get('api')?.peers.length ?? 0} cached servers (registry down)`, missed: res.statusCode === 200 ? [] : [`answered ${res.statusCode}`] }
    } finally {
      await cold.stop(200)
    }
  }, false)
  for (const p of all) p.kill()
  return rows
}

const label: RunLabel = { run: new Date().toISOString(), scale: Number((ROUNDS / DEFAULT_ROUNDS).toFixed(2)) }
const kinds = values.kinds.split(',')
const file = `${resultsDir}registry.json`
// Rows of registries not drilled this time are kept, as `npm run drill` keeps other proxies' rows.
const previous = await readFile(file, 'utf8').then((t) => (JSON.parse(t) as RegistryDoc).runs, () => [] as RegistryRow[])
const rows = previous.filter((r) => !kinds.includes(r.kind))
const load1 = loadavg()[0] as number
for (const kind of kinds) {
  const missing = kind === 'etcd' ? await missingEtcd() : await missingZooKeeper()
  if (missing !== undefined) {
    process.stderr.write(`registry drill ${kind}: skipped (${missing})\n`)
    rows.push({ ...label, kind, rounds: ROUNDS, phase: 'all', status: 'skipped', note: missing })
    continue
  }
  process.stderr.write(`registry drill ${kind} ...\n`)
  const registry = kind === 'etcd' ? await etcdRegistry() : await zooKeeperRegistry()
  const drilled = await drill(registry, label)
  for (const r of drilled) process.stderr.write(`  ${registryRow(r).slice(2).join(' | ')}\n`)
  rows.push(...drilled)
}
rows.sort((a, b) => a.kind.localeCompare(b.kind)) // stable: each registry's phases stay in order
const machine = { cpus: cpus().length, node: process.version, loadavg: [load1, loadavg()[0] as number] }
await writeJson(file, { kind: 'registry', date: new Date().toISOString(), machine, clients: CLIENTS, runs: rows } satisfies RegistryDoc)
process.stdout.write(`report: ${await writeReport()}\n`)
clearTimeout(watchdog)
process.exit(0)
