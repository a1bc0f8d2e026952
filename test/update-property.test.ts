// The update path under a seeded random sequence of changes and steady load: file reloads, invalid files, admin
// PUT/DELETE, DNS answer changes. Twice: in-process (reload calls; every subscriber must see every generation, in
// order), and as a real vigil process (the compiled CLI) changed by real SIGHUPs, its file watch and POST /reload.
// After every step: the live set equals the desired state of the last valid update; no request is dispatched to a
// server after the swap that removed it; no client request fails; the process never exits.
// VIGIL_SEED=n replays a sequence, VIGIL_STEPS=n changes its length (VIGIL_CLI_STEPS=n for the process).
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { client, get, silent } from './helpers/index.js'
import { startCli } from './helpers/cli.js'
import { dnsServer } from './helpers/dns.js'
import { proxyConfig, startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'
import type { Config, GenerationRecord } from '../src/index.js'
import type { Peer } from '../src/upstream/peer.js'

type Tap = { teardown(fn: () => unknown): void }

const SEED = Number(process.env['VIGIL_SEED'] ?? 20261201)
const STEPS = Number(process.env['VIGIL_STEPS'] ?? 150)
const CLI_STEPS = Number(process.env['VIGIL_CLI_STEPS'] ?? 40)

/** mulberry32: small, seeded, good enough to pick steps. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** Requests each provider was sent, by address: the black-box side of "no request after the swap that removed it". */
type Served = Map<string, number>

async function listen(t: Tap, host: string, port: number, served: Served = new Map()): Promise<string> {
  let address = ''
  const server = createServer((_req, res) => {
    served.set(address, (served.get(address) ?? 0) + 1)
    res.end('ok')
  })
  await new Promise<void>((resolve) => server.listen(port, host, resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  address = `${host}:${(server.address() as AddressInfo).port}`
  return address
}

/**
 * The providers and the desired state of group "api", as the sources hand it: static servers on 127.0.0.1 from
 * the file, DNS-named ones on 127.0.0.2-5 (one port: a DNS name has one port) from a real DNS server's answer,
 * and the admin overlay (PUT adds, DELETE removes, until the next file reload).
 */
async function world(t: Tap, next: () => number) {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T
  const served: Served = new Map()
  const dns = await dnsServer(t)
  const statics = await Promise.all([0, 1, 2, 3].map(() => listen(t, '127.0.0.1', 0, served)))
  const first = await listen(t, '127.0.0.2', 0, served)
  const port = Number(first.split(':')[1])
  const named = [first, ...(await Promise.all(['127.0.0.3', '127.0.0.4', '127.0.0.5'].map((h) => listen(t, h, port, served))))]
  const w = {
    pick,
    served,
    statics,
    named,
    fileStatics: [statics[0] as string, statics[1] as string],
    answer: [named[0] as string],
    overlay: new Map<string, boolean>(),
    config: (servers: string[], watch = false): Config =>
      proxyConfig([], {
        reload: { watch, debounce: '20ms' },
        resolver: { servers: [dns.address], minTtl: '20ms', maxTtl: '100ms', timeout: '500ms' },
        upstreams: { api: { servers: [...servers.map((address) => ({ address })), { address: `pool.test:${port}`, resolve: true }] } },
      }),
    setAnswer: (addresses: string[]): void => void dns.zone.set('pool.test', { A: addresses.map((a) => ({ address: a.split(':')[0] as string, ttl: 0 })) }),
    desired: (): string[] => {
      const out = new Set([...w.fileStatics, ...w.answer])
      for (const [address, present] of w.overlay) if (present) out.add(address)
      else out.delete(address)
      return [...out].sort()
    },
    /** A new random file: some of the static servers, never none. */
    newFile: (): void => {
      w.fileStatics = statics.filter(() => next() < 0.5)
      if (w.fileStatics.length === 0) w.fileStatics = [pick(statics)]
      w.overlay = new Map()
    },
    newAnswer: (): void => {
      w.answer = named.filter(() => next() < 0.5)
      if (w.answer.length === 0) w.answer = [pick(named)]
      w.setAnswer(w.answer)
    },
    /** An invalid file, unique per step (the watch reports a failed text once). */
    invalid: (step: number): string =>
      pick([`{ "listeners": [ ${step}`, JSON.stringify({ ...w.config(w.fileStatics), upstreams: { api: { servers: [{ address: statics[step % 4], weight: 0 }] } } })]),
  }
  w.setAnswer(w.answer)
  return w
}

/** Steady load: four clients in a loop, every answer that is not a 200 recorded; `stop()` ends them. */
function load(t: Tap, url: () => string) {
  let stop = false
  const state = { answered: 0, failures: [] as string[], started: [0, 0, 0, 0], done: [0, 0, 0, 0] }
  const loops = [0, 1, 2, 3].map(async (i) => {
    const agent = client(t)
    while (!stop) {
      const n = ++state.started[i]!
      const r = await get(url(), { dispatcher: agent }).catch((err: Error) => ({ status: 0, headers: {}, body: err.message }))
      state.done[i] = n
      state.answered++
      if (r.status !== 200) state.failures.push(`${r.status} ${String((r.headers as Record<string, unknown>)['x-vigil-error'] ?? '')} ${r.body}`)
    }
  })
  return {
    state,
    /** Resolves once every client has finished a request it started after this call (so all earlier ones are done). */
    fence: (): Promise<void> => {
      const mark = [...state.started]
      return until(() => state.done.every((d, i) => d > (mark[i] as number)), 'a request from every client after the step')
    },
    stop: async (): Promise<void> => {
      stop = true
      await Promise.all(loops)
    },
  }
}

/**
 * "No request reaches a server after the swap that removed it", seen from the providers: once a step's live set is
 * observed and every client has finished a request started after that (so every request sent before the swap is
 * done), a server outside the desired state is fenced at its count; it must never be sent another request until a
 * later update brings it back. Returns the servers that were.
 */
function fences(served: Served) {
  const fenced = new Map<string, number>()
  const late = new Set<string>()
  return {
    late,
    check: (all: readonly string[], desired: readonly string[]): void => {
      for (const a of all) {
        const now = served.get(a) ?? 0
        if (desired.includes(a)) fenced.delete(a)
        else if (!fenced.has(a)) fenced.set(a, now)
        else if (now > (fenced.get(a) as number)) late.add(a)
      }
    },
  }
}

t.test(`random updates under load keep every invariant (seed ${SEED}, ${STEPS} steps)`, async (t) => {
  const next = random(SEED)
  const w = await world(t, next)
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), w.config(w.fileStatics), silent)
  const live = (): string[] => (proxy.vigil.upstreams.get('api')?.peers.map((p) => p.address) ?? []).sort()

  // Removed servers: what they had been sent at the swap that removed them; they must never get more.
  const removed = new Map<Peer, number>()
  proxy.vigil.membership.on('peers-removed', (_u, peers) => {
    for (const p of peers) removed.set(p, p.requests + p.inflight)
  })
  // Subscribers joining at random moments, each from the generation live when it joined.
  const subscribers: { since: number; seen: number[] }[] = []
  const subscribe = (): void => {
    const s = { since: proxy.vigil.generation, seen: [] as number[] }
    subscribers.push(s)
    proxy.vigil.updates.subscribe({ applied: (r: GenerationRecord) => void s.seen.push(r.generation) }, s.since)
  }
  subscribe()
  const traffic = load(t, () => proxy.url)

  const steps: string[] = []
  for (let i = 0; i < STEPS; i++) {
    const kind = w.pick(['file', 'file', 'invalid', 'put', 'delete', 'dns', 'subscribe'] as const)
    const before = traffic.state.answered
    if (kind === 'file') {
      w.newFile()
      writeConfig(proxy.file, w.config(w.fileStatics))
      const r = await proxy.vigil.reload(w.pick(['api', 'signal'] as const))
      t.equal(r.ok, true, `step ${i}: the file applies`)
    } else if (kind === 'invalid') {
      writeConfig(proxy.file, w.invalid(i))
      t.equal((await proxy.vigil.reload('api')).ok, false, `step ${i}: the invalid file is rejected`)
      writeConfig(proxy.file, w.config(w.fileStatics)) // the running file again, for later steps
    } else if (kind === 'put') {
      const address = w.pick(w.statics)
      t.equal([200, 201].includes((await get(`${proxy.admin}/upstreams/api/servers/${address}`, { method: 'PUT', body: '{}' })).status), true, `step ${i}: PUT ${address}`)
      w.overlay.set(address, true)
    } else if (kind === 'delete') {
      const current = w.desired()
      if (current.length < 2) continue
      const address = w.pick(current)
      t.equal((await get(`${proxy.admin}/upstreams/api/servers/${address}`, { method: 'DELETE' })).status, 200, `step ${i}: DELETE ${address}`)
      w.overlay.set(address, false)
    } else if (kind === 'dns') {
      w.newAnswer()
      // An overlay removal of a DNS address stays in force; the answer arrives on its TTL.
      await until(() => live().join() === w.desired().join(), `step ${i}: the new DNS answer`)
    } else subscribe()
    steps.push(kind)
    t.same(live(), w.desired(), `step ${i} (${kind}): the live set is the desired state`)
    // Some load ran across the step.
    await until(() => traffic.state.answered > before + 8, 'requests across the step')
  }
  await traffic.stop()

  t.same(traffic.state.failures, [], `no client request failed (${traffic.state.answered} answered)`)
  const late = [...removed].filter(([p, sent]) => p.requests + p.inflight > sent)
  t.same(late.map(([p]) => p.address), [], 'no request was sent to a server after the swap that removed it')
  const generation = proxy.vigil.generation
  for (const s of subscribers) {
    const expected = Array.from({ length: generation - s.since }, (_, k) => s.since + k + 1)
    t.same(s.seen, expected, `a subscriber from generation ${s.since} saw every generation in order`)
  }
  t.equal((await get(proxy.url)).status, 200, 'the proxy still serves')
  t.comment(`steps: ${steps.join(' ')}`)
})

t.test(`a real vigil process: SIGHUP, file watch, POST /reload, admin, DNS, invalid files under load (seed ${SEED}, ${CLI_STEPS} steps)`, async (t) => {
  const next = random(SEED + 1)
  const w = await world(t, next)
  const file = join(tempDir(t), 'vigil.json')
  writeConfig(file, w.config(w.fileStatics, true))
  const cli = startCli(t, ['start', '--config', file])
  let exit: number | null | undefined
  void cli.exited.then((code) => (exit = code))
  await until(() => cli.lines.some((l) => l['msg'] === 'vigil started'), 'vigil to start')
  const started = cli.lines.find((l) => l['msg'] === 'vigil started') as { listeners: string[]; admin: string }
  const url = `http://${started.listeners[0]}`
  const admin = `http://${started.admin}`
  const status = async (): Promise<{ generation: number; reloads: number; failures: number; last?: { ok: boolean } }> => JSON.parse((await get(`${admin}/reload`)).body)
  const live = async (): Promise<string[]> => {
    const page = JSON.parse((await get(`${admin}/status?format=json`)).body) as { servers: { server: { upstream: string; name: string }[] } }
    return page.servers.server.filter((s) => s.upstream === 'api').map((s) => s.name).sort()
  }
  const settled = async (): Promise<boolean> => exit === undefined && (await live()).join() === w.desired().join() && (await status()).last?.ok !== false
  const traffic = load(t, () => url)
  const fence = fences(w.served)
  const all = [...w.statics, ...w.named]

  const steps: string[] = []
  for (let i = 0; i < CLI_STEPS; i++) {
    const kind = w.pick(['sighup', 'watch', 'post', 'invalid-sighup', 'invalid-watch', 'put', 'delete', 'dns'] as const)
    const before = traffic.state.answered
    const { failures } = await status()
    if (kind === 'sighup' || kind === 'watch' || kind === 'post') {
      // With the watch on, a SIGHUP or POST races the watch for the same file: either applies it, the other finds
      // it running already. The log lines say which source applied what (counted at the end).
      const overlay = w.overlay
      const running = w.fileStatics.join()
      w.newFile()
      // A watch event reloads only when the file's config changed: the same file leaves the admin overlay in force.
      if (kind === 'watch' && w.fileStatics.join() === running) w.overlay = overlay
      writeConfig(file, w.config(w.fileStatics, true))
      if (kind === 'sighup') process.kill(cli.child.pid as number, 'SIGHUP')
      if (kind === 'post') t.equal((await get(`${admin}/reload`, { method: 'POST' })).status, 200, `step ${i}: POST /reload applies`)
    } else if (kind === 'invalid-sighup' || kind === 'invalid-watch') {
      writeConfig(file, w.invalid(i))
      if (kind === 'invalid-sighup') process.kill(cli.child.pid as number, 'SIGHUP')
      await until(async () => (await status()).failures > failures, `step ${i}: the invalid file is rejected`)
      writeConfig(file, w.config(w.fileStatics, true)) // the running file again: the watch says it is back
    } else if (kind === 'put') {
      const address = w.pick(w.statics)
      t.equal([200, 201].includes((await get(`${admin}/upstreams/api/servers/${address}`, { method: 'PUT', body: '{}' })).status), true, `step ${i}: PUT ${address}`)
      w.overlay.set(address, true)
    } else if (kind === 'delete') {
      const current = w.desired()
      if (current.length < 2) continue
      const address = w.pick(current)
      t.equal((await get(`${admin}/upstreams/api/servers/${address}`, { method: 'DELETE' })).status, 200, `step ${i}: DELETE ${address}`)
      w.overlay.set(address, false)
    } else w.newAnswer()
    steps.push(kind)
    await until(settled, `step ${i} (${kind}): the live set is the desired state`)
    t.same(await live(), w.desired(), `step ${i} (${kind}): the live set is the desired state`)
    await traffic.fence()
    fence.check(all, w.desired())
    await until(() => traffic.state.answered > before + 8, 'requests across the step')
  }
  await traffic.fence()
  fence.check(all, w.desired())
  await traffic.stop()

  t.same(traffic.state.failures, [], `no client request failed (${traffic.state.answered} answered)`)
  t.same([...fence.late], [], 'no request was sent to a server after the swap that removed it')
  t.equal(exit, undefined, 'the process never exited')
  const sources = new Set(cli.lines.filter((l) => l['msg'] === 'config reloaded').map((l) => String(l['source'])))
  if (steps.includes('sighup')) t.ok(sources.has('signal'), 'a SIGHUP applied a file')
  if (steps.includes('watch')) t.ok(sources.has('watch'), 'the file watch applied a file')
  t.equal((await get(url)).status, 200, 'the proxy still serves')
  t.comment(`steps: ${steps.join(' ')}`)
})
