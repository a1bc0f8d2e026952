// SIGHUP and POST /reload on the compiled CLI behave the same: validate, apply or reject, report.
import t from 'tap'
import { join } from 'node:path'
import { get, spawnProvider } from './helpers/index.js'
import { startCli } from './helpers/cli.js'
import { proxyConfig, tempDir, until, writeConfig } from './helpers/config-file.js'

t.test('SIGHUP and POST /reload apply a good file and reject a bad one the same way', async (t) => {
  const [a, b, c] = await Promise.all([spawnProvider(t, 'a'), spawnProvider(t, 'b'), spawnProvider(t, 'c')])
  const file = join(tempDir(t), 'vigil.json')
  writeConfig(file, proxyConfig([a.address]))
  const { child, lines, exited } = startCli(t, ['start', '--config', file])
  await until(() => lines.some((l) => l['msg'] === 'vigil started'), 'the CLI to start')
  const started = lines.find((l) => l['msg'] === 'vigil started') as { listeners: string[]; admin: string }
  const url = `http://${started.listeners[0]}`
  const admin = `http://${started.admin}`
  const count = (msg: string): number => lines.filter((l) => l['msg'] === msg).length
  const status = async (): Promise<{ generation: number; last: { ok: boolean; source: string } }> => JSON.parse((await get(`${admin}/reload`)).body)
  t.equal((await get(url)).headers['x-provider'], 'a')

  writeConfig(file, proxyConfig([b.address]))
  process.kill(child.pid as number, 'SIGHUP')
  await until(() => count('config reloaded') === 1, 'the SIGHUP reload')
  t.match(await status(), { generation: 2, last: { ok: true, source: 'signal' } })
  t.equal((await get(url)).headers['x-provider'], 'b')

  writeConfig(file, JSON.stringify({ ...proxyConfig([]), upstreams: { api: { servers: [{ address: c.address, weight: 0 }] } } }))
  process.kill(child.pid as number, 'SIGHUP')
  await until(() => count('config reload rejected; the running config stays') === 1, 'the SIGHUP rejection')
  t.match(await status(), { generation: 2, last: { ok: false, source: 'signal' } })
  t.match(lines.find((l) => l['msg'] === 'config reload rejected; the running config stays'), { issues: [{ path: 'upstreams.api.servers[0].weight' }] })
  t.equal((await get(url)).headers['x-provider'], 'b', 'the last good config keeps serving')

  const bad = await get(`${admin}/reload`, { method: 'POST' })
  t.equal(bad.status, 422, 'POST /reload rejects the same file')
  await until(() => count('config reload rejected; the running config stays') === 2, 'the same log line for it')

  writeConfig(file, proxyConfig([c.address]))
  const good = await get(`${admin}/reload`, { method: 'POST' })
  t.equal(good.status, 200)
  t.match(JSON.parse(good.body), { ok: true, source: 'admin', generation: 3, change: { added: [`api/${c.address}`], removed: [`api/${b.address}`] } })
  t.equal((await get(url)).headers['x-provider'], 'c')

  process.kill(child.pid as number, 'SIGTERM')
  t.equal(await exited, 0, 'SIGTERM still stops it cleanly')
})
