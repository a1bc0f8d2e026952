// The compiled CLI as a child process (its own process group, killed at teardown, or when the test process exits
// or is stopped by tap's timeout), its JSON log lines collected.
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { cliScript } from './index.js'
import { killAtExit } from '../../bench/lib/procs.js'

type Tap = { teardown(fn: () => unknown): void }

export interface CliProcess {
  child: ChildProcess
  /** Every stdout line, parsed, in order. */
  lines: Record<string, unknown>[]
  exited: Promise<number | null>
}

export function startCli(t: Tap, args: string[]): CliProcess {
  const child = spawn(process.execPath, [cliScript, ...args], { stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  killAtExit(child)
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(async () => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL')
    } catch {
      // already gone
    }
    await exited
  })
  const lines: Record<string, unknown>[] = []
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>))
  return { child, lines, exited }
}
