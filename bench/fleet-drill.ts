// The real-fleet drill (not in the suite): N vigil processes (default 10), a real etcd, 5 providers, steady load
// through every vigil (two busy vigils, the others light), in phases:
//   kill         a provider is SIGKILLed: per-vigil detection time (kill -> the vigil's first `ejected` or
//                `down` for it) and failed requests fleet-wide, with shared observations off and on;
//   partition    (shared observations on) one vigil runs in a network namespace, joined by a veth pair, and an
//                nft rule inside that namespace drops its packets to one provider: that provider must stay in
//                every other vigil's rotation;
//   registry     (shared observations on) the registry is stopped for --outage seconds under load: nothing
//                healthy may change (no ejection, no check down, no failed request).
// The kill phase with sharing and the registry phase run once per registry of --registries (etcd, ZooKeeper);
// the partition phase runs over the first. Rows go to bench/out/fleet.json and the drill report.
// Root is needed for the partition phase (ip netns, nft); without it that phase is skipped with a note. Every
// namespace, veth and process it makes is removed at the end, also on failure.
//   npm run build && node dist/bench/fleet-drill.js [--vigils 10] [--outage 30] [--phases kill,partition,registry]
//     [--busy 40] [--light 0.5] (requests per second through each of the two busy vigils / each light one)
//     [--interval 10s] (the active check interval) [--registries etcd,zookeeper]
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import { EtcdServer, ZooKeeperServer, missingZooKeeper, type RegistryServer } from './lib/registries.js'
import { Proc, cliScript, freePort, providerScript, sleep } from './lib/procs.js'
import { resultsDir, writeJson } from './lib/results.js'
import { writeReport } from './lib/report.js'
import type { FleetDrillDoc, FleetDrillRow, FleetRegistry } from './lib/fleet-report.js'

const { values: args } = parseArgs({
  options: {
    vigils: { type: 'string', default: '10' },
    outage: { type: 'string', default: '30' },
    phases: { type: 'string', default: 'kill,partition,registry' },
    busy: { type: 'string', default: '40' },
    light: { type: 'string', default: '0.5' },
    interval: { type: 'string', default: '10s' },
    registries: { type: 'string', default: 'etcd,zookeeper' },
  },
})
const VIGILS = Number(args.vigils)
const OUTAGE = Number(args.outage) * 1000
const PHASES = new Set(args.phases.split(','))
/** Requests per second through each of the two busy vigils, and through each light one. */
const BUSY = Number(args.busy)
const LIGHT = Number(args.light)

// The host side of the veth pair is where providers and etcd listen, so that every vigil, in the namespace or
// not, uses the same provider addresses (shared observations are keyed by address).
const NS = 'vigil-fleet-drill'
const HOST_IP = '10.231.0.1'
const NS_IP = '10.231.0.2'
const root = process.getuid?.() === 0
const dir = mkdtempSync(join(tmpdir(), 'vigil-fleet-drill-'))
const procs = new Set<Proc>()
const registries = new Set<RegistryServer>()

function sh(cmd: string, ...a: string[]): void {
  execFileSync(cmd, a, { stdio: ['ignore', 'ignore', 'pipe'] })
}

function netnsUp(): boolean {
  if (!root) return false
  try {
    netnsDown()
    sh('ip', 'netns', 'add', NS)
    sh('ip', 'link', 'add', 'vfd0', 'type', 'veth', 'peer', 'name', 'vfd1')
    sh('ip', 'link', 'set', 'vfd1', 'netns', NS)
    sh('ip', 'addr', 'add', `${HOST_IP}/24`, 'dev', 'vfd0')
    sh('ip', 'link', 'set', 'vfd0', 'up')
    sh('ip', 'netns', 'exec', NS, 'ip', 'addr', 'add', `${NS_IP}/24`, 'dev', 'vfd1')
    sh('ip', 'netns', 'exec', NS, 'ip', 'link', 'set', 'vfd1', 'up')
    sh('ip', 'netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up')
    return true
  } catch (err) {
    console.error(`network namespaces unavailable (${(err as Error).message.split('\n')[0]}): the partition phase is skipped`)
    netnsDown()
    return false
  }
}

function netnsDown(): void {
  for (const c of [['ip', 'link', 'del', 'vfd0'], ['ip', 'netns', 'del', NS]]) {
    try {
      sh(c[0] as string, ...c.slice(1))
    } catch {
      // not there
    }
  }
}

/** etcd listening on the veth's host address (and loopback), so a vigil in the namespace reaches it. */
class FleetEtcd extends EtcdServer {
  override get endpoint(): string {
    return `http://${HOST_IP}:${this.port}`
  }
}

interface Provider {
  name: string
  port: number
  address: string
  proc: Proc
}

async function startProvider(name: string, port: number, host: string): Promise<Provider> {
  const proc = new Proc(name, process.execPath, [providerScript, '--name', name, '--port', String(port), '--host', host], { stderr: 'ignore' })
  procs.add(proc)
  const address = `${host}:${port}`
  await until(async () => (await get(`http://${address}/healthz`)) === 200, `${name} up`)
  return { name, port, address, proc }
}

interface Member {
  id: string
  url: string
  admin: string
  proc: Proc
  /** Every health transition it logged: time (ms), server, source, event, reason. */
  events: { time: number; server: string; source: string; event: string; reason: string }[]
  ok: number
  failed: number
  inNamespace: boolean
}

const agent = new Agent({ keepAliveTimeout: 10_000, connections: 64 })

async function get(url: string): Promise<number> {
  try {
    const res = await request(url, { dispatcher: agent, headersTimeout: 5_000, bodyTimeout: 5_000 })
    await res.body.dump()
    return res.statusCode
  } catch {
    return 0
  }
}

async function until(cond: () => Promise<boolean> | boolean, what: string, timeout = 60_000): Promise<void> {
  const end = Date.now() + timeout
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`not reached within ${timeout} ms: ${what}`)
    await sleep(100)
  }
}

function groupConfig(providers: readonly Provider[]): object {
  return {
    servers: providers.map((p) => ({ address: p.address })),
    // Nginx-like passive health, a check every --interval (a fleet probes slowly); no retries, so a request sent to a dead provider is a failed request.
    passive: { maxFails: 2, failTimeout: '10s', failOn: ['error', 'timeout', 'http_502', 'http_503'] },
    active: { type: 'http', interval: args.interval, fastInterval: '250ms', timeout: '1s', rise: 2, fall: 2, http: { path: '/healthz' } },
    retry: { tries: 1 },
    timeouts: { connect: '1s', response: '5s' },
  }
}

async function startMember(i: number, providers: readonly Provider[], fleet: object | undefined, inNamespace: boolean): Promise<Member> {
  const ip = inNamespace ? NS_IP : '127.0.0.1'
  const [port, adminPort] = [await freePort(), await freePort()]
  const id = `vigil-${String(i).padStart(2, '0')}`
  const file = join(dir, `${id}-${port}.json`)
  const config = {
    listeners: [{ address: `${ip}:${port}`, upstream: 'api' }],
    admin: { address: `${ip}:${adminPort}` },
    log: { level: 'info' },
    reload: { watch: false },
    upstreams: { api: groupConfig(providers) },
    ...(fleet === undefined ? {} : { fleet: { ...fleet, id } }),
  }
  writeFileSync(file, JSON.stringify(config))
  const argv = [cliScript, 'start', '--config', file]
  const m: Member = { id, url: `http://${ip}:${port}/`, admin: `http://${ip}:${adminPort}`, proc: undefined as unknown as Proc, events: [], ok: 0, failed: 0, inNamespace }
  m.proc = new Proc(id, inNamespace ? 'ip' : process.execPath, inNamespace ? ['netns', 'exec', NS, process.execPath, ...argv] : argv, {
    stderr: 'ignore',
    onLine: (line) => {
      if (!line.startsWith('{')) return
      const l = JSON.parse(line) as Record<string, unknown>
      if (typeof l['server'] === 'string' && typeof l['event'] === 'string') {
        m.events.push({ time: typeof l['time'] === 'string' ? Date.parse(l['time']) : (l['time'] as number), server: l['server'], source: String(l['source']), event: l['event'], reason: String(l['reason']) })
      }
    },
  })
  procs.add(m.proc)
  await until(async () => (await get(`${m.admin}/ready`)) === 200, `${id} ready`)
  return m
}

/** Steady load through every vigil until stopped: two busy vigils, the others light. */
function load(members: readonly Member[]): () => Promise<void> {
  let on = true
  const loops = members.map(async (m, i) => {
    const every = 1000 / (i < 2 ? BUSY : LIGHT)
    const inflight = new Set<Promise<void>>()
    while (on) {
      const p = get(m.url).then((s) => {
        if (s === 200) m.ok++
        else m.failed++
      })
      inflight.add(p)
      void p.finally(() => inflight.delete(p))
      await sleep(every)
    }
    await Promise.all(inflight)
  })
  return async () => {
    on = false
    await Promise.all(loops)
  }
}

async function stopAll(members: readonly Member[]): Promise<void> {
  await Promise.all(members.map((m) => m.proc.stop()))
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : (s[Math.min(s.length - 1, Math.floor(q * s.length))] as number)
}

async function killPhase(providers: Provider[], registry: FleetRegistry | undefined, fleet: object | undefined): Promise<FleetDrillRow> {
  const members = await Promise.all(Array.from({ length: VIGILS }, (_, i) => startMember(i, providers, fleet, false)))
  const stop = load(members)
  await sleep(6_000)
  for (const m of members) m.ok = m.failed = 0
  const victim = providers[4] as Provider
  const killedAt = Date.now()
  victim.proc.signal('SIGKILL')
  await victim.proc.exited
  await sleep(15_000)
  await stop()
  const detection = members.map((m) => {
    const e = m.events.find((x) => x.server === victim.address && x.time >= killedAt && (x.event === 'ejected' || x.event === 'down'))
    return e === undefined ? null : e.time - killedAt
  })
  const failed = members.reduce((n, m) => n + m.failed, 0)
  const requests = members.reduce((n, m) => n + m.ok + m.failed, 0)
  await stopAll(members)
  providers[4] = await startProvider(victim.name, victim.port, HOST_IP)
  const seen = detection.filter((d): d is number => d !== null)
  return { phase: 'kill', registry, shared: fleet !== undefined, detection, p50: quantile(seen, 0.5), max: seen.length === detection.length ? Math.max(...seen) : NaN, failed, requests }
}

async function partitionPhase(providers: readonly Provider[], registry: FleetRegistry, fleet: object): Promise<FleetDrillRow> {
  const members = [...(await Promise.all(Array.from({ length: VIGILS - 1 }, (_, i) => startMember(i, providers, fleet, false)))), await startMember(VIGILS - 1, providers, fleet, true)]
  const stop = load(members)
  await sleep(6_000)
  const cut = providers[0] as Provider
  const since = Date.now()
  sh('ip', 'netns', 'exec', NS, 'nft', 'add', 'table', 'inet', 'drill')
  sh('ip', 'netns', 'exec', NS, 'nft', 'add', 'chain', 'inet', 'drill', 'out', '{ type filter hook output priority 0 ; }')
  sh('ip', 'netns', 'exec', NS, 'nft', 'add', 'rule', 'inet', 'drill', 'out', 'ip', 'daddr', HOST_IP, 'tcp', 'dport', String(cut.port), 'drop')
  await sleep(20_000)
  await stop()
  const out = (m: Member): boolean => m.events.some((e) => e.server === cut.address && e.time >= since && (e.event === 'ejected' || e.event === 'down'))
  const partitioned = members[VIGILS - 1] as Member
  const others = members.slice(0, VIGILS - 1)
  const row: FleetDrillRow = {
    phase: 'partition',
    registry,
    shared: true,
    partitionedVigilTookItOut: out(partitioned),
    othersThatTookItOut: others.filter(out).map((m) => m.id),
    othersFailed: others.reduce((n, m) => n + m.failed, 0),
    othersRequests: others.reduce((n, m) => n + m.ok + m.failed, 0),
    fleetDecisionsAtOthers: others.flatMap((m) => m.events.filter((e) => e.source === 'fleet' && e.server === cut.address && e.time >= since).map((e) => `${m.id}:${e.event}`)),
  }
  await stopAll(members)
  return row
}

async function registryPhase(providers: readonly Provider[], registry: FleetRegistry, server: RegistryServer, fleet: object): Promise<FleetDrillRow> {
  const members = await Promise.all(Array.from({ length: VIGILS }, (_, i) => startMember(i, providers, fleet, false)))
  const stop = load(members)
  await sleep(6_000)
  for (const m of members) m.ok = m.failed = 0
  const since = Date.now()
  await server.kill()
  await sleep(OUTAGE)
  const during = members.flatMap((m) => m.events.filter((e) => e.time >= since && ['ejected', 'down', 'suspect', 'capped'].includes(e.event)).map((e) => `${m.id}:${e.server}:${e.event}`))
  const failed = members.reduce((n, m) => n + m.failed, 0)
  const requests = members.reduce((n, m) => n + m.ok + m.failed, 0)
  await server.start()
  const back = Date.now()
  // Registered again: every vigil sees the whole fleet in the registry's consumer list (its own status page),
  // looked at once the records of the old sessions and leases (5 s) have expired: until then the old ones are
  // still listed, and when they go at once, the list dips until each vigil has written its record again.
  await sleep(12_000)
  let seen = 0
  while ((seen = Math.min(...(await Promise.all(members.map((m) => fleetCount(m)))))) < VIGILS && Date.now() - back < 60_000) await sleep(250)
  const reregistered = Date.now() - back
  await stop()
  await stopAll(members)
  return { phase: 'registry', registry, shared: true, outageSeconds: OUTAGE / 1000, healthChangesDuringOutage: during, failed, requests, fleetSeenAfter: seen, reregisteredMs: reregistered }
}

async function fleetCount(m: Member): Promise<number> {
  try {
    const res = await request(`${m.admin}/status?format=json`, { dispatcher: agent, headersTimeout: 5_000, bodyTimeout: 5_000 })
    return ((await res.body.json()) as { fleet?: { count?: number } }).fleet?.count ?? 0
  } catch {
    return 0
  }
}

/** A registry on the veth's host address (and the fleet section that uses it), so a vigil in the namespace reaches it. */
async function startRegistry(name: FleetRegistry): Promise<{ server: RegistryServer; fleet: (path: string) => object }> {
  const common = { connectTimeout: '2s', resyncInterval: '5s' }
  const base = { ttl: '5s', window: '30s' }
  if (name === 'zookeeper') {
    const zk = await ZooKeeperServer.create(HOST_IP)
    registries.add(zk)
    return { server: zk, fleet: (path) => ({ registry: { zookeeper: { servers: zk.connect, sessionTimeout: '5s', ...common } }, path, ...base }) }
  }
  const etcd = new FleetEtcd(await freePort(), await freePort(), undefined)
  registries.add(etcd)
  await etcd.start()
  return { server: etcd, fleet: (path) => ({ registry: { etcd: { endpoints: [etcd.endpoint], ...common } }, path, ...base }) }
}

async function main(): Promise<void> {
  const ns = PHASES.has('partition') && netnsUp()
  if (!ns) {
    // Without the namespace, providers and the registries listen on loopback under the same names.
    sh('ip', 'addr', 'add', `${HOST_IP}/32`, 'dev', 'lo')
  }
  const names: FleetRegistry[] = []
  for (const r of args.registries.split(',')) {
    if (r !== 'etcd' && r !== 'zookeeper') throw new Error(`--registries: ${r} is neither etcd nor zookeeper`)
    const missing = r === 'zookeeper' ? await missingZooKeeper() : undefined
    if (missing === undefined) names.push(r)
    else console.error(`${missing}: the ZooKeeper rows are skipped`)
  }
  const started = await Promise.all(names.map((r) => startRegistry(r)))
  const providers: Provider[] = []
  for (let i = 0; i < 5; i++) providers.push(await startProvider(`p${i}`, await freePort(), HOST_IP))
  const rows: FleetDrillRow[] = []
  const record = (r: FleetDrillRow): void => {
    rows.push(r)
    console.log(JSON.stringify(r))
  }
  const at = new Date().toISOString()
  if (PHASES.has('kill')) {
    record(await killPhase(providers, undefined, undefined))
    for (const [i, r] of names.entries()) record(await killPhase(providers, r, started[i]?.fleet(`/vigil/drill-kill-${Date.now()}`)))
  }
  const [first] = names
  if (PHASES.has('partition') && first !== undefined) {
    record(ns ? await partitionPhase(providers, first, started[0]?.fleet('/vigil/drill-partition') as object) : { phase: 'partition', registry: first, shared: true, skipped: 'network namespaces unavailable (needs root, ip netns, nft)' })
  }
  if (PHASES.has('registry')) {
    for (const [i, r] of names.entries()) {
      const reg = started[i] as { server: RegistryServer; fleet: (path: string) => object }
      record(await registryPhase(providers, r, reg.server, reg.fleet(`/vigil/drill-registry-${r}`)))
    }
  }
  const doc: FleetDrillDoc = { kind: 'fleet', run: at, vigils: VIGILS, busy: BUSY, light: LIGHT, outageSeconds: OUTAGE / 1000, interval: args.interval, rows }
  await writeJson(`${resultsDir}fleet.json`, doc)
  console.log(`report: ${await writeReport()}`)
}

async function cleanup(): Promise<void> {
  await Promise.all([...procs].map((p) => p.stop(1_000)))
  await Promise.all([...registries].map((r) => r.destroy()))
  await agent.close()
  netnsDown()
  try {
    sh('ip', 'addr', 'del', `${HOST_IP}/32`, 'dev', 'lo')
  } catch {
    // not added
  }
  rmSync(dir, { recursive: true, force: true })
}

process.on('SIGINT', () => void cleanup().then(() => process.exit(130)))
main().then(
  () => cleanup(),
  async (err: unknown) => {
    console.error(err)
    await cleanup()
    process.exitCode = 1
  },
)
