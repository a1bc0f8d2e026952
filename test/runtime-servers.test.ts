// PUT / DELETE /upstreams/NAME/servers/ADDRESS: runtime changes through the same update path as file reloads.
import t from 'tap'
import { join } from 'node:path'
import { get, spawnProvider } from './helpers/index.js'
import { liveSet, proxyConfig, startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'
import type { Config, MembershipChange } from '../src/index.js'

const put = (admin: string, upstream: string, address: string, body?: unknown) =>
  get(`${admin}/upstreams/${upstream}/servers/${encodeURIComponent(address)}`, { method: 'PUT', body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) })
const del = (admin: string, upstream: string, address: string) => get(`${admin}/upstreams/${upstream}/servers/${encodeURIComponent(address)}`, { method: 'DELETE' })

t.test('servers are added, changed and removed at run time, and a file reload replaces those changes', async (t) => {
  const [a, b] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b')])
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig([a.address], { reload: { debounce: 30 } }))
  const added = await put(proxy.admin, 'api', b.address)
  t.equal(added.status, 201)
  t.match(JSON.parse(added.body), { upstream: 'api', server: b.address, generation: 2, change: { source: 'admin', added: [`api/${b.address}`] } })
  const seen = new Set<unknown>()
  for (let i = 0; i < 4; i++) seen.add((await get(proxy.url)).headers['x-provider'])
  t.same([...seen].sort(), ['a', 'b'], 'the added server takes traffic')
  const status = JSON.parse((await get(`${proxy.admin}/status`)).body) as { servers: { generation: number; server: { name: string }[] } }
  t.same(
    status.servers.server.map((s) => s.name),
    [a.address, b.address],
    'the status page lists it',
  )
  t.equal(status.servers.generation, 2)

  const changed = await put(proxy.admin, 'api', b.address, { weight: 4, backup: true })
  t.equal(changed.status, 200)
  t.match(JSON.parse(changed.body), { change: { changed: [`api/${b.address} (weight 1->4, backup false->true)`] } })
  t.match(proxy.vigil.upstreams.get('api')?.find(b.address), { weight: 4, backup: true })

  const removed = await del(proxy.admin, 'api', a.address)
  t.equal(removed.status, 200)
  t.same(liveSet(proxy.vigil), [b.address])
  t.equal((await get(proxy.url)).headers['x-provider'], 'b')

  // An unchanged file (a touch, a rewrite with the same content) keeps the runtime changes...
  writeConfig(proxy.file, proxyConfig([a.address], { reload: { debounce: 30 } }))
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(liveSet(proxy.vigil), [b.address], 'a watch event with unchanged content keeps runtime changes')
  // ...and the next applied reload makes the file the truth again.
  t.equal((await get(`${proxy.admin}/reload`, { method: 'POST' })).status, 200)
  t.same(liveSet(proxy.vigil), [a.address])
  t.equal(proxy.vigil.upstreams.get('api')?.find(a.address)?.weight, 1)
})

t.test('runtime changes are validated and refused with a reason', async (t) => {
  const proxy = await startProxyFromFile(t, join(tempDir(t), 'vigil.json'), proxyConfig(['127.0.0.1:1']))
  const cases: [Promise<{ status: number; body: string }>, number, RegExp][] = [
    [put(proxy.admin, 'nope', '127.0.0.1:2'), 404, /no upstream "nope"/],
    [del(proxy.admin, 'nope', '127.0.0.1:2'), 404, /no upstream "nope"/],
    [del(proxy.admin, 'api', '127.0.0.1:2'), 404, /no server 127.0.0.1:2/],
    [del(proxy.admin, 'api', '127.0.0.1:1'), 409, /last server/],
    [put(proxy.admin, 'api', '127.0.0.1:2', { weight: 0 }), 400, /body: weight: found number 0, expected an integer from 1 to 1000/],
    [put(proxy.admin, 'api', '127.0.0.1:2', { colour: 'red' }), 400, /unknown key "colour"/],
    [put(proxy.admin, 'api', '127.0.0.1:2', { address: '127.0.0.1:3' }), 400, /expected the address in the path/],
    [put(proxy.admin, 'api', 'not-an-address'), 400, /body: address: found string "not-an-address"/],
    [put(proxy.admin, 'api', '127.0.0.1:2', '{'), 400, /not JSON/],
    [put(proxy.admin, 'api', '127.0.0.1:2', 'x'.repeat(70_000)), 413, /larger than/],
  ]
  for (const [reply, status, body] of cases) {
    const r = await reply
    t.equal(r.status, status, body.source)
    // The admin API's one error shape: {"error": message, "code": name}.
    t.match(JSON.parse(r.body), { error: body, code: /^[a-z_]+$/ })
  }
  t.same(liveSet(proxy.vigil), ['127.0.0.1:1'])
  t.equal(proxy.vigil.generation, 1, 'nothing was applied')
})

t.test('many concurrent admin updates and file reloads end consistent', async (t) => {
  const file = join(tempDir(t), 'vigil.json')
  const base = (servers: string[]): Config => proxyConfig(servers, { reload: { debounce: 10 } })
  const proxy = await startProxyFromFile(t, file, base(['127.0.0.1:1']))
  const changes: MembershipChange[] = []
  proxy.vigil.membership.on('applied', (c) => changes.push(c))
  const address = (i: number): string => `127.0.0.1:${30_000 + (i % 25)}`
  const ops: Promise<unknown>[] = []
  for (let i = 0; i < 120; i++) {
    if (i % 10 === 0) writeConfig(file, base([address(i), address(i + 1), address(i + 2)]))
    if (i % 15 === 0) ops.push(get(`${proxy.admin}/reload`, { method: 'POST' }))
    ops.push(i % 3 === 0 ? del(proxy.admin, 'api', address(i * 7)) : put(proxy.admin, 'api', address(i * 7), { weight: 1 + (i % 5) }))
  }
  const replies = (await Promise.all(ops)) as { status: number }[]
  t.ok(
    replies.every((r) => [200, 201, 404, 409, 422].includes(r.status)),
    'every call got a deliberate answer',
  )
  const last = base(['127.0.0.1:40001', '127.0.0.1:40002'])
  writeConfig(file, last)
  t.equal((await get(`${proxy.admin}/reload`, { method: 'POST' })).status, 200)
  // Late watch events read the same last file and change nothing.
  await new Promise((resolve) => setTimeout(resolve, 200))
  await proxy.vigil.reloader.enqueue(() => undefined)
  t.same(liveSet(proxy.vigil), ['127.0.0.1:40001', '127.0.0.1:40002'], 'the last file is live')

  // Replaying every logged diff from the first set reproduces the live set: no change was lost or half-applied.
  const replay = new Set(['api/127.0.0.1:1'])
  changes.forEach((c, i) => {
    t.equal(c.generation, i + 2, 'generations are consecutive')
    for (const r of c.removed) replay.delete(r)
    for (const a of c.added) replay.add(a)
  })
  t.same([...replay].sort(), liveSet(proxy.vigil).map((a) => `api/${a}`).sort(), 'the diffs add up to the live set')
  const u = proxy.vigil.upstreams.get('api')
  t.equal(new Set(u?.peers.map((p) => p.address)).size, u?.peers.length, 'no duplicate peers')
  await until(() => proxy.vigil.membership.retiringPools === 0, 'every removed pool to close')
})
