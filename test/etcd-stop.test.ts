// Stopping vigil while its etcd watch is down or still connecting leaves nothing behind: the real CLI, given
// SIGTERM, exits by itself (it sets an exit code and waits for its handles to end, so a watcher that etcd3 keeps
// retrying, or a socket or timer of it, would keep it alive). A real etcd, killed and restarted by the test.
import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Etcd3 } from 'etcd3'
import type { Config } from '../src/index.js'
import { httpServer } from './helpers/index.js'
import { startCli, type CliProcess } from './helpers/cli.js'
import { tempDir, writeConfig } from './helpers/config-file.js'
import { waitFor } from './helpers/wait.js'
import { startEtcd } from './helpers/registries.js'

const etcd = await startEtcd(t)
const dir = tempDir(t)
const cacheFile = join(dir, 'api.json')
const a = (await httpServer(t, (_req, res) => res.end('a'))).address
{
  const kv = new Etcd3({ hosts: etcd.endpoint })
  await kv.put('/stop/api/a').value(a)
  kv.close()
}
const file = join(dir, 'vigil.json')
const config: Config = {
  listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
  reload: { watch: false },
  // debug: the line that says its watch is up.
  log: { level: 'debug' },
  upstreams: { api: { servers: [{ etcd: { endpoints: [etcd.endpoint], prefix: '/stop/api/', connectTimeout: '1s', resyncInterval: '1s', cacheFile } }] } },
}
writeConfig(file, config)

const said = (cli: CliProcess, msg: string): boolean => cli.lines.some((l) => String(l['msg']).startsWith(msg))

/** SIGTERM, then the CLI must exit 0 on its own; the bound is a safety net (a leak never exits at all). */
async function stopsByItself(t: { equal(a: unknown, b: unknown, m: string): void }, cli: CliProcess): Promise<void> {
  process.kill(cli.child.pid as number, 'SIGTERM')
  const code = await Promise.race([cli.exited, new Promise<string>((r) => setTimeout(() => r('still running 20 s after SIGTERM'), 20_000))])
  t.equal(code, 0, 'exited by itself, with 0')
}

t.test('etcd up: a normal stop', async (t) => {
  const cli = startCli(t, ['start', '--config', file])
  await waitFor(() => existsSync(cacheFile) && said(cli, 'vigil started'), 20_000)
  await stopsByItself(t, cli)
})

t.test('etcd down at start: started from the cache, reading again every second; stopped meanwhile', async (t) => {
  await etcd.kill()
  t.teardown(() => (etcd.running ? undefined : etcd.start()))
  const cli = startCli(t, ['start', '--config', file])
  await waitFor(() => said(cli, 'registry unreachable at start'), 20_000)
  // Let it retry a few times (each is a new read and, on success, a new watch).
  await waitFor(() => cli.lines.length > 0 && said(cli, 'registry read failed'), 20_000)
  await new Promise((r) => setTimeout(r, 2_500))
  await stopsByItself(t, cli)
})

t.test('etcd killed while watching, then back: stopped while its watch reconnects', async (t) => {
  const cli = startCli(t, ['start', '--config', file])
  // Its watch is up: killed before, etcd would fail the read or the watch's setup instead (reads again, no watch).
  await waitFor(() => said(cli, 'vigil started') && said(cli, 'watching etcd'), 20_000)
  await etcd.kill()
  await waitFor(() => said(cli, 'disconnected from etcd'), 20_000)
  await new Promise((r) => setTimeout(r, 1_500))
  await etcd.start()
  // The first read after the restart and the watch it sets up race with the stop.
  await new Promise((r) => setTimeout(r, 300))
  await stopsByItself(t, cli)
})

t.test('etcd hung (SIGSTOP: nothing answered) under a live watch: the cancel is never answered, and the stop still ends everything', async (t) => {
  const cli = startCli(t, ['start', '--config', file])
  await waitFor(() => said(cli, 'vigil started') && said(cli, 'watching etcd'), 20_000)
  etcd.signal('SIGSTOP')
  t.teardown(() => etcd.signal('SIGCONT'))
  await new Promise((r) => setTimeout(r, 2_500))
  await stopsByItself(t, cli)
  etcd.signal('SIGCONT')
})
