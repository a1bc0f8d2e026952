// A test or bench process that ends takes the processes it started with it: on a normal exit, on SIGTERM, and on
// the SIGALRM tap sends at its per-file timeout. Left running, they would hold the runner's stderr open.
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { root } from '../bench/lib/procs.js'

/** A runner that starts a long-lived child with killAtExit and prints the child's pid. */
const RUNNER = `
import { spawn } from 'node:child_process'
import { killAtExit } from '${root}dist/bench/lib/procs.js'
const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', detached: true })
killAtExit(child)
console.log(child.pid)
setInterval(() => {}, 1000)
`

/** Running: it exists and is not a zombie (an orphan is reaped by init, which in a container may never do it). */
const alive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

for (const how of ['SIGTERM', 'SIGALRM', 'SIGINT'] as const) {
  t.test(`the runner ended by ${how}: its child is killed`, async (t) => {
    const runner = spawn(process.execPath, ['--input-type=module', '-e', RUNNER], { stdio: ['ignore', 'pipe', 'inherit'] })
    const pid = Number(await new Promise<string>((resolve) => createInterface({ input: runner.stdout }).once('line', resolve)))
    t.teardown(() => {
      if (alive(pid)) process.kill(-pid, 'SIGKILL')
    })
    t.ok(alive(pid), 'the child runs')
    const exited = new Promise((resolve) => runner.once('exit', resolve))
    runner.kill(how)
    await exited
    // The kill is sent before the runner exits; it may take the child a moment to die.
    const end = Date.now() + 10_000
    while (alive(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
    t.notOk(alive(pid), 'the child is gone')
  })
}
