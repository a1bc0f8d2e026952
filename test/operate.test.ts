// The documented ways of running vigil stop with one signal to the PID the user has: the binary run directly
// (with --pid-file), the demo through npm, the binary installed from the packed tarball, the systemd unit.
import t, { type Test } from 'tap'
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { cliScript, closedPort, get, httpServer, root } from './helpers/index.js'
import { waitFor } from './helpers/wait.js'
import { canConnect } from '../bench/lib/procs.js'

type Tap = Test

const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version
const exec = promisify(execFile)

/** A process in its own group, SIGKILLed as a whole at teardown if it is still there. */
function launch(t: Tap, command: string, args: string[], env: NodeJS.ProcessEnv = process.env, cwd = root): { child: ChildProcess; exited: Promise<number | null>; stderr: string[] } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env, cwd })
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  const stderr: string[] = []
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => stderr.push(l))
  child.stdout?.resume()
  t.teardown(() => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL')
    } catch {
      // the whole group is gone
    }
  })
  return { child, exited, stderr }
}

/** True when nothing accepts connections on the port any more. */
const refused = async (port: number): Promise<boolean> => !(await canConnect(port))

/** No process is left in the group (it was started detached, so its id is the group's). */
function groupGone(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return false
  } catch {
    return true
  }
}

/** `dir`: a folder of its own (tap's testdir() starts afresh on every call). */
async function configFile(t: Tap, dir: string): Promise<{ file: string; port: number; dir: string }> {
  const up = await httpServer(t, (_req, res) => res.end('up'))
  const [port, admin] = [await closedPort(), await closedPort()]
  mkdirSync(dir, { recursive: true })
  const file = join(dir, 'vigil.json')
  writeFileSync(file, JSON.stringify({ listeners: [{ address: `127.0.0.1:${port}`, upstream: 'api' }], admin: { address: `127.0.0.1:${admin}` }, upstreams: { api: { servers: [{ address: up.address }] } } }))
  return { file, port, dir }
}

/** Start a vigil binary with --pid-file, stop it by the PID in the file, and check it is gone and so is the file. */
async function stopsByPidFile(t: Tap, command: string, args: string[], where: string): Promise<void> {
  const { file, port, dir } = await configFile(t, where)
  const pidFile = join(dir, 'vigil.pid')
  const run = launch(t, command, [...args, 'start', '--config', file, '--pid-file', pidFile], process.env, dir)
  await waitFor(() => existsSync(pidFile), 30_000)
  const pid = Number(readFileSync(pidFile, 'utf8').trim())
  t.equal(pid, run.child.pid, 'the file holds the PID of the process serving (no wrapper in between)')
  t.equal((await get(`http://127.0.0.1:${port}/`)).body, 'up')
  process.kill(pid, 'SIGTERM')
  t.equal(await run.exited, 0)
  t.ok(await refused(port), 'the port is closed')
  t.notOk(existsSync(pidFile), 'the PID file is removed on exit')
  t.ok(groupGone(pid), 'nothing of it is left running')
}

t.test('node dist/src/cli.js start --pid-file: SIGTERM to the PID in the file stops it', (t) => stopsByPidFile(t, process.execPath, [cliScript], t.testdir()))

t.test('--pid-file that cannot be written: one line, exit 1, nothing left listening', async (t) => {
  const { file, port, dir } = await configFile(t, t.testdir())
  const r = spawnSync(process.execPath, [cliScript, 'start', '-c', file, '--pid-file', join(dir, 'missing', 'vigil.pid')], { encoding: 'utf8', timeout: 30_000 })
  t.equal(r.status, 1)
  t.match(r.stderr, /^vigil: --pid-file .*missing\/vigil\.pid: no such file or directory\n$/)
  t.ok(await refused(port))
})

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`npm run demo: ${signal} to npm's PID stops npm, vigil and the three providers`, async (t) => {
    const [port, admin] = [await closedPort(), await closedPort()]
    const run = launch(t, 'npm', ['run', 'demo'], { ...process.env, VIGIL_DEMO_PORT: String(port), VIGIL_DEMO_ADMIN_PORT: String(admin) })
    await waitFor(() => run.stderr.some((l) => l.includes('Ctrl-C')), 60_000)
    const providers = run.stderr.flatMap((l) => /^ {4}([abc]) {2}127\.0\.0\.1:(\d+)/.exec(l)?.slice(1) ?? [])
    t.same(
      providers.filter((_, i) => i % 2 === 0),
      ['a', 'b', 'c'],
      'the banner names a, b and c with their addresses',
    )
    t.match((await get(`http://127.0.0.1:${port}/`)).body, /^hello from [abc]\n$/)
    process.kill(run.child.pid as number, signal)
    await run.exited
    // npm exits once its child did; the providers exit when the demo stops them.
    await waitFor(() => groupGone(run.child.pid as number), 20_000)
    t.ok(await refused(port), 'vigil stopped')
    for (let i = 1; i < providers.length; i += 2) t.ok(await refused(Number(providers[i])), `provider ${providers[i - 1]} stopped`)
  })
}

t.test('the demo killed with SIGKILL: its providers still exit (their stdin closes)', async (t) => {
  const [port, admin] = [await closedPort(), await closedPort()]
  const run = launch(t, process.execPath, [join(root, 'dist/src/demo/demo.js')], { ...process.env, VIGIL_DEMO_PORT: String(port), VIGIL_DEMO_ADMIN_PORT: String(admin) })
  await waitFor(() => run.stderr.some((l) => l.includes('Ctrl-C')), 30_000)
  process.kill(run.child.pid as number, 'SIGKILL')
  await run.exited
  await waitFor(() => groupGone(run.child.pid as number), 20_000)
  t.pass('no provider outlived the demo')
})

t.test('npm pack: the tarball installs with no registry and no cache, runs vigil --version, and stops by PID', async (t) => {
  const dir = t.testdir()
  const packed = await exec('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: root, maxBuffer: 16 * 1024 * 1024 })
  const tarball = join(dir, packed.stdout.trim().split('\n').pop() as string)
  t.ok(existsSync(tarball), tarball)
  // A clean folder, an empty cache and --offline: everything vigil needs is inside the tarball (bundled).
  const prefix = join(dir, 'prefix')
  const clean = join(dir, 'clean')
  mkdirSync(clean)
  await exec('npm', ['install', '--global', '--prefix', prefix, '--offline', '--cache', join(dir, 'empty-cache'), '--no-audit', '--no-fund', tarball], { cwd: clean })
  const vigil = join(prefix, 'bin', 'vigil')
  const v = await exec(vigil, ['--version'], { cwd: clean })
  t.equal(v.stdout, `vigil ${version}\n`)
  await stopsByPidFile(t, vigil, [], join(dir, 'run'))

  const noSystemd = spawnSync('systemd-analyze', ['--version']).status !== 0 && 'systemd-analyze is not installed'
  t.test('the systemd unit, pointed at the installed binary, passes systemd-analyze verify', { skip: noSystemd }, async (t) => {
    const unit = join(dir, 'vigil.service')
    writeFileSync(unit, readFileSync(join(root, 'deploy/vigil.service'), 'utf8').replaceAll('/usr/local/bin/vigil', vigil))
    const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' })
    t.equal(r.status, 0, r.stderr)
    t.same(
      r.stderr.split('\n').filter((l) => l.includes('vigil.service')),
      [],
      'no warning about the unit',
    )
    t.ok(readFileSync(tarball).length > 0 && spawnSync('tar', ['tzf', tarball], { encoding: 'utf8' }).stdout.includes('package/deploy/vigil.service'), 'the unit ships in the package')
  })
})
