// Slow-read drill (issue 13): clients that pipeline GETs of a 1 MiB body and never read, then leave; then
// slowhttptest's slow-read mode (-X) when Debian's slowhttptest is installed. vigil runs in its own process in
// front of three demo providers; before and after each phase: vigil's RSS and descriptors, in flight on its status
// page, and how many of 10 plain GETs are answered.
//   npm run build && node dist/bench/slow-read.js [--connections 150] [--pipeline 6] [--hold 1000] [--slowhttptest-seconds 30]
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { parseArgs } from 'node:util'
import { cliScript, firstJsonLine, freePort, Proc, providerScript, waitForPort, which } from './lib/procs.js'
import { vigilConfig } from './lib/proxies.js'

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '150' },
    pipeline: { type: 'string', default: '6' },
    hold: { type: 'string', default: '1000' },
    'slowhttptest-seconds': { type: 'string', default: '30' },
  },
})
const CONNECTIONS = Number(values.connections)
const PIPELINE = Number(values.pipeline)
const HOLD = Number(values.hold)
const SLOW_SECONDS = Number(values['slowhttptest-seconds'])
const BIG = '/big?bytes=1048576'

interface Figures {
  rssMiB: number
  fds: number
  inflight: number
  waiting: number
  stuck: number
  failures: number
  ejections: number
  plainOk: number
}

/** Upstream keep-alive connections close after 4 s idle (src/upstream/upstream.ts): wait past that to see leaks only. */
const SETTLE = 5_000

async function figures(pid: number, port: number, admin: string): Promise<Figures> {
  await new Promise((r) => setTimeout(r, SETTLE))
  const status = (await (await fetch(`${admin}/status?format=json`)).json()) as { servers: { server: Record<string, number>[] } }
  const rows = status.servers.server
  const sum = (k: string): number => rows.reduce((s, r) => s + (r[k] ?? 0), 0)
  const rss = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1]
  const fds = (await readdir(`/proc/${pid}/fd`)).length
  const plain = await Promise.all(
    Array.from({ length: 10 }, () =>
      fetch(`http://127.0.0.1:${port}/plain`, { signal: AbortSignal.timeout(5_000) })
        .then(async (r) => (await r.text(), r.status === 200))
        .catch(() => false),
    ),
  )
  return {
    rssMiB: Math.round(Number(rss) / 102.4) / 10,
    fds,
    inflight: sum('inflight'),
    waiting: sum('waiting'),
    stuck: sum('stuck'),
    failures: sum('failures'),
    ejections: sum('ejections'),
    plainOk: plain.filter(Boolean).length,
  }
}

function slowPipeliner(port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.on('error', () => {})
    s.once('connect', () => {
      s.pause()
      s.write(`GET ${BIG} HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(PIPELINE))
      setTimeout(() => {
        s.destroy()
        resolve()
      }, HOLD)
    })
  })
}

const providers = await Promise.all(['a', 'b', 'c'].map((n) => new Proc(n, process.execPath, [providerScript, '--name', n])))
const servers = (await Promise.all(providers.map((p) => firstJsonLine<{ port: number }>(p)))).map((r) => `127.0.0.1:${r.port}`)
const dir = await mkdtemp(join(tmpdir(), 'vigil-slow-read-'))
const [port, adminPort] = [await freePort(), await freePort()]
await writeFile(join(dir, 'vigil.json'), JSON.stringify(vigilConfig(port, adminPort, servers, {})))
const vigil = new Proc('vigil', process.execPath, [cliScript, 'start', '-c', join(dir, 'vigil.json')], { onLine: () => undefined })
await waitForPort(port, 10_000, vigil)
const admin = `http://127.0.0.1:${adminPort}`
const rows: [string, Figures][] = [['start', await figures(vigil.pid, port, admin)]]

for (let i = 0; i < CONNECTIONS; i += 10) await Promise.all(Array.from({ length: Math.min(10, CONNECTIONS - i) }, () => slowPipeliner(port)))
rows.push([`after ${CONNECTIONS} pipelining slow readers (${PIPELINE} x 1 MiB, ${HOLD} ms)`, await figures(vigil.pid, port, admin)])

const slowhttptest = await which('slowhttptest')
if (slowhttptest === undefined) console.log('slowhttptest not installed: its row is skipped (apt-get install slowhttptest)')
else {
  // Slow read: a tiny receive window, reading 32 bytes every 2 s, pipelining factor 2, 100 connections.
  const args = ['-X', '-c', '100', '-r', '20', '-w', '10', '-y', '20', '-n', '2', '-z', '32', '-k', '2', '-l', String(SLOW_SECONDS), '-u', `http://127.0.0.1:${port}${BIG}`]
  await new Promise<void>((resolve) => spawn(slowhttptest, args, { stdio: 'ignore' }).once('exit', () => resolve()))
  rows.push([`after slowhttptest ${args.join(' ')}`, await figures(vigil.pid, port, admin)])
}

console.log('| phase | RSS MiB | fds | in flight | waiting | stuck | failures | ejections | plain GETs ok |')
console.log('|---|---|---|---|---|---|---|---|---|')
for (const [phase, f] of rows) console.log(`| ${phase} | ${f.rssMiB} | ${f.fds} | ${f.inflight} | ${f.waiting} | ${f.stuck} | ${f.failures} | ${f.ejections} | ${f.plainOk}/10 |`)
await vigil.stop()
await Promise.all(providers.map((p) => p.stop()))
await rm(dir, { recursive: true, force: true })
