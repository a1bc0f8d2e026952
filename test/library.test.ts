// The library: a config object goes through the same checks as a file, with the same issues; the package is
// importable by its name, and the README's example runs as written.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { ConfigError, parseConfig, startVigil, validateConfig, type Config } from '../src/index.js'
import { closedPort, httpServer, root, silent } from './helpers/index.js'
import { tempDir } from './helpers/config-file.js'
import { configErrorOf } from './helpers/config-error.js'

type Tap = { teardown(fn: () => unknown): void }


const refused = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => (s.destroy(), resolve(false)))
    s.once('error', () => resolve(true))
  })

t.test('startVigil with a typo is refused with the issues a file gets, and binds nothing', async (t) => {
  const port = await closedPort()
  const doc = { listeners: [{ address: `127.0.0.1:${port}`, upstrem: 'api' }], upstreams: { api: { servers: [{ address: '127.0.0.1:9001', wieght: 2 }], timeouts: { idle: 'forever' } } } }
  const err = await startVigil(doc as unknown as Config, { logger: silent }).then(
    () => t.fail('started'),
    (e: unknown) => e,
  )
  t.ok(err instanceof ConfigError, 'a ConfigError')
  const { issues } = err as ConfigError
  t.same(
    issues.map((i) => [i.path, i.found]),
    [
      ['listeners[0].upstrem', 'unknown key "upstrem"'],
      ['upstreams.api.servers[0].wieght', 'unknown key "wieght"'],
      ['upstreams.api.timeouts.idle', 'string "forever"'],
      ['listeners[0]', 'neither "upstream" nor "routes"'],
    ],
  )
  t.match(issues[0], { expected: /^one of address, upstream, routes/ })
  t.match((err as ConfigError).message, /<config object>: 4 errors\n<config object>: listeners\[0\]\.upstrem: found unknown key "upstrem"/)
  // The same issues as the same document read from a file, less the line and column a file has.
  const fromText = configErrorOf(() => parseConfig(JSON.stringify(doc))).issues.map(({ line: _l, column: _c, ...i }) => i)
  t.same(issues, fromText)
  t.ok(await refused(port), 'nothing listens on the address')
  // Values the schema cannot judge are checked too: a certificate file that is not there.
  const tls = { listeners: [{ address: '127.0.0.1:0', upstream: 'api', tls: { cert: '/nonexistent/c.pem', key: '/nonexistent/k.pem' } }], upstreams: { api: { servers: [{ address: '127.0.0.1:9001' }] } } }
  t.match(configErrorOf(() => validateConfig(tls)).issues, [{ path: 'listeners[0].tls.cert', found: /ENOENT/ }, { path: 'listeners[0].tls.key' }])
})

t.test('a valid object starts and serves', async (t) => {
  const up = await httpServer(t, (_req, res) => res.end('hello'))
  const vigil = await startVigil({ listeners: [{ address: '0', upstream: 'api' }], admin: { address: '127.0.0.1:0' }, upstreams: { api: { servers: [{ address: up.address }] } } }, { logger: silent })
  t.teardown(() => vigil.stop(1_000))
  const res = await fetch(`http://127.0.0.1:${vigil.listenerAddresses[0]?.port}/`)
  t.equal(await res.text(), 'hello')
})

/** The README's library example, in a folder that has vigil only as a dependency named "vigil". */
function consumer(t: Tap, edit: (code: string) => string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const example = /## Library\n[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1]
  if (example === undefined) throw new Error('no js example under "## Library" in README.md')
  const dir = tempDir(t)
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(root, join(dir, 'node_modules', 'vigil'), 'dir')
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n')
  // Free ports instead of the example's fixed ones (the demo or another test may hold them).
  writeFileSync(join(dir, 'example.js'), edit(example.replace(/127\.0\.0\.1:(8080|9901)/g, '127.0.0.1:0')))
  return dir
}

function run(t: Tap, dir: string): { lines: string[]; stderr: Promise<string>; exit: Promise<number | null>; kill(sig: NodeJS.Signals): void } {
  const child = spawn(process.execPath, ['example.js'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const kill = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-(child.pid as number), sig)
    } catch {
      // already gone
    }
  }
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(async () => {
    kill('SIGKILL')
    await exit
  })
  const lines: string[] = []
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(l))
  let err = ''
  child.stderr.on('data', (c: Buffer) => (err += c.toString()))
  return { lines, stderr: exit.then(() => err), exit, kill }
}

t.test("the README's example, importing 'vigil' by name: starts, and stops on SIGTERM with exit 0", async (t) => {
  const p = run(t, consumer(t, (code) => code))
  const end = Date.now() + 30_000
  while (!p.lines.some((l) => l.startsWith('listening on 127.0.0.1:'))) {
    if (Date.now() > end) throw new Error(`no "listening on" line: ${p.lines.join('\n')} ${await Promise.race([p.stderr, Promise.resolve('')])}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  p.kill('SIGTERM')
  t.equal(await p.exit, 0)
  t.ok(p.lines.some((l) => l.includes('"msg":"vigil stopped"')), 'stopped cleanly')
})

t.test("the README's example with a typo prints each issue with its path and exits 2", async (t) => {
  const p = run(t, consumer(t, (code) => code.replace("upstream: 'api'", "upstrem: 'api'")))
  t.equal(await p.exit, 2)
  const stderr = await p.stderr
  t.match(stderr, /^listeners\[0\]\.upstrem: found unknown key "upstrem", expected one of address, upstream, routes/m)
  t.match(stderr, /^listeners\[0\]: found neither "upstream" nor "routes", expected exactly one of "upstream" or "routes"$/m)
})
