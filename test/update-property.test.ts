// The update path under a seeded random sequence of changes and steady load: file reloads (POST /reload, SIGHUP's
// path), invalid files, admin PUT/DELETE, DNS answer changes. After every step: the live set equals the desired
// state of the last valid update; no request is dispatched to a server after the swap that removed it; no client
// request fails; every subscriber has seen every generation, in order. VIGIL_SEED=n replays a sequence.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { client, get, silent } from './helpers/index.js'
import { dnsServer } from './helpers/dns.js'
import { proxyConfig, startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'
import type { Config, GenerationRecord } from '../src/index.js'
import type { Peer } from '../src/upstream/peer.js'

type Tap = { teardown(fn: () => unknown): void }

const SEED = Number(process.env['VIGIL_SEED'] ?? 20261201)
const STEPS = Number(process.env['VIGIL_STEPS'] ?? 150)

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

async function listen(t: Tap, host: string, port: number): Promise<string> {
  const server = createServer((_req, res) => res.end('ok'))
  await new Promise<void>((resolve) => server.listen(port, host, resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  return `${host}:${(server.address() as AddressInfo).port}`
}

t.test(`random updates under load keep every invariant (seed ${SEED}, ${STEPS} steps)`, async (t) => {
  const next = random(SEED)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T
  const dns = await dnsServer(t)
  // Static servers on 127.0.0.1; DNS-named ones on 127.0.0.2-5, one port (a DNS name has one port).
  const statics = await Promise.all([0, 1, 2, 3].map(() => listen(t, '127.0.0.1', 0)))
  const first = await listen(t, '127.0.0.2', 0)
  const port = Number(first.split(':')[1])
  const named = [first, ...(await Promise.all(['127.0.0.3', '127.0.0.4', '127.0.0.5'].map((h) => listen(t, h, port))))]
  const setAnswer = (addresses: string[]): void => void dns.zone.set('pool.test', { A: addresses.map((a) => ({ address: a.split(':')[0] as string, ttl: 0 })) })

  // The desired state, as the sources hand it: the file's static servers, the DNS answer, the admin overlay.
  let fileStatics = [statics[0] as string, statics[1] as string]
  let answer = [named[0] as string]
  let overlay = new Map<string, boolean>()
  const config = (servers: string[]): Config =>
    proxyConfig([], {
      resolver: { servers: [dns.address], minTtl: '20ms', maxTtl: '100ms', timeout: '500ms' },
      upstreams: { api: { servers: [...servers.map((address) => ({ address })), { address: `pool.test:${port}`, resolve: true }] } },
    })
  setAnswer(answer)
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), config(fileStatics), silent)
  const desired = (): string[] => {
    const out = new Set([...fileStatics, ...answer])
    for (const [address, present] of overlay) if (present) out.add(address)
    else out.delete(address)
    return [...out].sort()
  }
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

  // Steady load: four clients in a loop, every answer recorded.
  let stop = false
  const failures: string[] = []
  let answered = 0
  const loops = [0, 1, 2, 3].map(async () => {
    const agent = client(t)
    while (!stop) {
      const r = await get(proxy.url, { dispatcher: agent }).catch((err: Error) => ({ status: 0, headers: {}, body: err.message }))
      answered++
      if (r.status !== 200) failures.push(`${r.status} ${String((r.headers as Record<string, unknown>)['x-vigil-error'] ?? '')} ${r.body}`)
    }
  })

  const steps: string[] = []
  for (let i = 0; i < STEPS; i++) {
    const kind = pick(['file', 'file', 'invalid', 'put', 'delete', 'dns', 'subscribe'] as const)
    const before = answered
    if (kind === 'file') {
      fileStatics = statics.filter(() => next() < 0.5)
      if (fileStatics.length === 0) fileStatics = [pick(statics)]
      writeConfig(proxy.file, config(fileStatics))
      const r = await proxy.vigil.reload(pick(['api', 'signal'] as const))
      t.equal(r.ok, true, `step ${i}: the file applies`)
      overlay = new Map()
    } else if (kind === 'invalid') {
      writeConfig(proxy.file, pick(['{ "listeners": [', JSON.stringify({ ...config(fileStatics), upstreams: { api: { servers: [{ address: statics[0], weight: 0 }] } } })]))
      t.equal((await proxy.vigil.reload('api')).ok, false, `step ${i}: the invalid file is rejected`)
      writeConfig(proxy.file, config(fileStatics)) // the running file again, for later steps
    } else if (kind === 'put') {
      const address = pick(statics)
      t.equal([200, 201].includes((await get(`${proxy.admin}/upstreams/api/servers/${address}`, { method: 'PUT', body: '{}' })).status), true, `step ${i}: PUT ${address}`)
      overlay.set(address, true)
    } else if (kind === 'delete') {
      const current = desired()
      if (current.length < 2) continue
      const address = pick(current)
      t.equal((await get(`${proxy.admin}/upstreams/api/servers/${address}`, { method: 'DELETE' })).status, 200, `step ${i}: DELETE ${address}`)
      overlay.set(address, false)
    } else if (kind === 'dns') {
      answer = named.filter(() => next() < 0.5)
      if (answer.length === 0) answer = [pick(named)]
      setAnswer(answer)
      // An overlay removal of a DNS address stays in force; the answer arrives on its TTL.
      await until(() => live().join() === desired().join(), `step ${i}: the new DNS answer`)
    } else subscribe()
    steps.push(kind)
    t.same(live(), desired(), `step ${i} (${kind}): the live set is the desired state`)
    // Some load ran across the step.
    await until(() => answered > before + 8, 'requests across the step')
  }
  stop = true
  await Promise.all(loops)

  t.same(failures, [], `no client request failed (${answered} answered)`)
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
