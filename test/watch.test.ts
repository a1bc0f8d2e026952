// File-watch reloads end to end: real files rewritten the way deploy tools and Kubernetes do it, real providers.
import t from 'tap'
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { client, get, spawnProvider } from './helpers/index.js'
import { liveSet, proxyConfig, startFromWrittenFile, startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'
import type { Config } from '../src/index.js'

const watched = (servers: string[], extra: Partial<Config> = {}): Config => proxyConfig(servers, { reload: { debounce: 30 }, ...extra })

const served = async (address: string): Promise<number> => (JSON.parse((await get(`http://${address}/_control`)).body) as { served: number }).served

t.test('rolling replacement under steady load: no client errors, no request to a removed provider after the swap', async (t) => {
  const [a, b, c, d] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b'), spawnProvider(t, 'c'), spawnProvider(t, 'd')])
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), watched([a.address, b.address]))
  const agent = client(t)
  const errors: string[] = []
  let completed = 0
  let running = true
  const worker = async (): Promise<void> => {
    while (running) {
      try {
        const r = await get(`${proxy.url}/load`, { dispatcher: agent })
        if (r.status !== 200) errors.push(`${r.status} ${r.body}`)
      } catch (err) {
        errors.push((err as Error).message)
      }
      completed++
    }
  }
  const workers = Array.from({ length: 4 }, worker)
  const reached = (n: number) => () => completed >= n
  await until(reached(100), 'load on the old set')

  const old = [...(proxy.vigil.upstreams.get('api')?.peers ?? [])]
  let dispatchedAtSwap: number[] = []
  proxy.vigil.membership.once('applied', () => {
    // Inside the swap: every request ever started on the old peers is counted here.
    dispatchedAtSwap = old.map((p) => p.requests + p.inflight)
  })
  writeConfig(proxy.file, watched([c.address, d.address]))
  await until(() => liveSet(proxy.vigil).join() === [c.address, d.address].join(), 'the new set to be live')
  await until(() => old.every((p) => p.inflight === 0), 'requests in flight on the old set to finish')
  const servedBefore = await Promise.all([served(a.address), served(b.address)])
  const mark = completed
  await until(reached(mark + 200), 'load on the new set')
  t.same(await Promise.all([served(a.address), served(b.address)]), servedBefore, 'removed providers received nothing after the swap')
  t.same(
    old.map((p) => p.requests + p.inflight),
    dispatchedAtSwap,
    'the proxy started no request on a removed peer after the swap',
  )
  a.signal('SIGKILL')
  b.signal('SIGKILL')
  await Promise.all([a.exited, b.exited])
  await until(reached(completed + 100), 'load after the old providers are gone')
  running = false
  await Promise.all(workers)
  t.same(errors, [], 'zero client errors')
  t.ok((await served(c.address)) > 0 && (await served(d.address)) > 0, 'the new providers serve')
})

t.test('a burst of 50 rapid rewrites ends with exactly the last file live', async (t) => {
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), watched(['127.0.0.1:1']))
  const address = (i: number): string => `127.0.0.1:${20_000 + i}`
  let last: Config = watched([])
  for (let i = 0; i < 50; i++) {
    // Each file differs from the one before: a sliding window of servers with changing weights.
    last = watched([], { upstreams: { api: { servers: [0, 1, 2].map((k) => ({ address: address(i + k), weight: 1 + ((i + k) % 7) })) } } })
    writeConfig(proxy.file, last)
    if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  const expected = last.upstreams['api']?.servers.map((s) => `${s.address}/${s.weight}`).join()
  const live = (): string => proxy.vigil.upstreams.get('api')?.peers.map((p) => `${p.address}/${p.weight}`).join() ?? ''
  await until(() => live() === expected, 'the last file to be live')
  // Any reload still queued reads the same last file; let them all run, then the set must still be the last one.
  await proxy.vigil.reloader.enqueue(() => undefined)
  await new Promise((resolve) => setTimeout(resolve, 300))
  await proxy.vigil.reloader.enqueue(() => undefined)
  t.equal(live(), expected)
  t.equal(proxy.vigil.reloadStatus.failures, 0, 'atomic renames never show a partial file')
})

t.test('a bad file mid-stream is rejected and the previous set keeps serving', async (t) => {
  const [a, b] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), watched([a.address]))
  writeConfig(proxy.file, watched([a.address, b.address]))
  await until(() => liveSet(proxy.vigil).length === 2, 'the second good file')
  const generation = proxy.vigil.generation
  writeConfig(proxy.file, JSON.stringify(watched([b.address])).replace('"upstreams"', '"upstreamz"'))
  await until(() => proxy.vigil.reloadStatus.last?.ok === false, 'the bad file to be rejected')
  t.match(proxy.vigil.reloadStatus.last, { source: 'watch' })
  t.ok(proxy.vigil.reloadStatus.last?.issues?.some((i) => i.path === 'upstreamz' && /unknown key/.test(i.found)), 'the issue names its JSON path')
  t.equal(proxy.vigil.generation, generation, 'no new generation')
  t.same(liveSet(proxy.vigil), [a.address, b.address])
  const seen = new Set<unknown>()
  for (let i = 0; i < 4; i++) seen.add((await get(proxy.url)).headers['x-provider'])
  t.same([...seen].sort(), ['a', 'b'], 'the previous set serves')
  writeConfig(proxy.file, watched([b.address]))
  await until(() => liveSet(proxy.vigil).join() === b.address, 'the next good file')
  t.equal(proxy.vigil.reloadStatus.last?.ok, true)
})

t.test('Kubernetes-style symlink swaps and in-place edits of the target are both seen', async (t) => {
  const dir = tempDir(t)
  const revision = (n: number, config: Config): void => {
    mkdirSync(join(dir, `..rev${n}`))
    writeFileSync(join(dir, `..rev${n}`, 'vigil.json'), JSON.stringify(config))
  }
  // dir/vigil.json -> ..data/vigil.json, ..data -> ..rev1: the layout of a mounted ConfigMap.
  const first = watched(['127.0.0.1:1'])
  revision(1, first)
  symlinkSync('..rev1', join(dir, '..data'))
  symlinkSync(join('..data', 'vigil.json'), join(dir, 'vigil.json'))
  const proxy = await startFromWrittenFile(t, join(dir, 'vigil.json'), first)

  const swap = (n: number, config: Config): void => {
    revision(n, config)
    symlinkSync(`..rev${n}`, join(dir, '..data_tmp'))
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
    rmSync(join(dir, `..rev${n - 1}`), { recursive: true })
  }
  swap(2, watched(['127.0.0.1:2']))
  await until(() => liveSet(proxy.vigil).join() === '127.0.0.1:2', 'the first swap')
  swap(3, watched(['127.0.0.1:3']))
  await until(() => liveSet(proxy.vigil).join() === '127.0.0.1:3', 'the second swap (the watch was re-armed)')
  // An in-place write of the resolved target, not through the symlink's directory.
  writeFileSync(join(dir, '..rev3', 'vigil.json'), JSON.stringify(watched(['127.0.0.1:4'])))
  await until(() => liveSet(proxy.vigil).join() === '127.0.0.1:4', 'the in-place edit')
  t.equal(proxy.vigil.reloadStatus.last?.ok, true)
})

t.test('touching the file without changing it reloads nothing', async (t) => {
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), watched(['127.0.0.1:1']))
  // Same config, different text: the watch compares configs, not bytes.
  writeFileSync(proxy.file, JSON.stringify(watched(['127.0.0.1:1']), null, 4))
  // Give the watch time to see it on its own (if it is slow, both writes coalesce and the test stays green).
  await new Promise((resolve) => setTimeout(resolve, 300))
  writeConfig(proxy.file, watched(['127.0.0.1:1', '127.0.0.1:2']))
  await until(() => liveSet(proxy.vigil).length === 2, 'the real change')
  t.equal(proxy.vigil.generation, 2, 'only the real change made a generation')
})

t.test('turning the watch on in the file takes effect with that reload', async (t) => {
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig(['127.0.0.1:1']))
  writeConfig(proxy.file, watched(['127.0.0.1:2']))
  t.equal((await get(`${proxy.admin}/reload`, { method: 'POST' })).status, 200)
  writeConfig(proxy.file, watched(['127.0.0.1:3']))
  await until(() => liveSet(proxy.vigil).join() === '127.0.0.1:3', 'the watch to pick up the next write')
})
