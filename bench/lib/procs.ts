// Child processes for the bench and the drills: each in its own process group (so a SIGKILL or SIGSTOP reaches
// everything it started), its stdout read line by line, and every one of them killed when the runner exits.
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { createInterface, type Interface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { onExit } from 'signal-exit'

/** The repository root (works from bench/lib/ in the sources and from dist/bench/lib/). */
export const root = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../../' : '../../', import.meta.url))
export const providerScript = `${root}dist/src/demo/provider.js`
export const cliScript = `${root}dist/src/cli.js`
export const grpcProviderScript = `${root}dist/bench/lib/grpc-provider.js`

const live = new Set<ChildProcess>()
// On exit and on the signals that end this process without 'exit' handlers (Ctrl-C, SIGTERM, tap's SIGALRM at
// its per-file timeout): left running, the children would hold this process's stderr open.
onExit(() => {
  for (const child of live) {
    for (const sig of ['SIGCONT', 'SIGKILL'] as const) {
      try {
        process.kill(-(child.pid as number), sig)
      } catch {
        // gone already
      }
    }
  }
})

/** Kill `child`'s process group (it was spawned detached) when this process exits, if it is still running. */
export function killAtExit(child: ChildProcess): void {
  if (child.pid === undefined) return
  live.add(child)
  child.once('exit', () => live.delete(child))
}

export interface SpawnOptions {
  /** Called with every stdout line. */
  onLine?: (line: string) => void
  env?: NodeJS.ProcessEnv
  /** Where stderr goes: inherited (default) or dropped. */
  stderr?: 'inherit' | 'ignore'
}

export class Proc {
  readonly child: ChildProcess
  readonly exited: Promise<number | null>
  /** stdout, line by line (one reader: a second readline on the same stream would pause it when closed). */
  readonly lines: Interface
  private exitCode: number | null | undefined = undefined

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    options: SpawnOptions = {},
  ) {
    this.child = spawn(command, args, { stdio: ['ignore', 'pipe', options.stderr ?? 'inherit'], detached: true, env: options.env ?? process.env })
    killAtExit(this.child)
    this.exited = new Promise((resolve) => {
      this.child.once('error', () => resolve(-1))
      this.child.once('exit', (code) => {
        this.exitCode = code
        resolve(code)
      })
    })
    this.lines = createInterface({ input: this.child.stdout as NodeJS.ReadableStream })
    if (options.onLine !== undefined) this.lines.on('line', options.onLine)
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  get running(): boolean {
    return this.exitCode === undefined && this.child.pid !== undefined
  }

  /** Signal the whole process group. */
  signal(sig: NodeJS.Signals): void {
    if (!this.running) return
    try {
      process.kill(-this.pid, sig)
    } catch {
      // gone already
    }
  }

  /** SIGTERM, then SIGKILL after `grace` ms. */
  async stop(grace = 2_000): Promise<void> {
    if (!this.running) return
    this.signal('SIGCONT')
    this.signal('SIGTERM')
    const timer = setTimeout(() => this.signal('SIGKILL'), grace)
    await this.exited
    clearTimeout(timer)
  }
}

/** Resolve with the first stdout line of `proc` that parses as JSON; reject if the process exits first. */
export function firstJsonLine<T>(proc: Proc, timeout = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${proc.name}: no ready line within ${timeout} ms`)), timeout)
    const onLine = (line: string): void => {
      if (!line.startsWith('{')) return
      clearTimeout(timer)
      proc.lines.off('line', onLine)
      resolve(JSON.parse(line) as T)
    }
    proc.lines.on('line', onLine)
    void proc.exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`${proc.name} exited with ${code} before it was ready`))
    })
  })
}

/**
 * A loopback port that was free a moment ago. Used for proxies whose config must name a port (nginx, HAProxy,
 * Caddy, vigil started from a file); another process could take it in between, which on a loopback test box
 * does not happen in practice and shows up as a clear "address in use" failure if it does.
 */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Whether something accepts connections on the loopback port now. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Wait until something accepts connections on the loopback port, or fail after `timeout` ms. */
export async function waitForPort(port: number, timeout = 10_000, proc?: Proc): Promise<void> {
  const deadline = Date.now() + timeout
  while (Date.now() < deadline) {
    if (await canConnect(port)) return
    if (proc !== undefined && !proc.running) throw new Error(`${proc.name} exited before listening on ${port}`)
    await sleep(50)
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeout} ms`)
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The absolute path of `command` on PATH, or undefined. */
export async function which(command: string): Promise<string | undefined> {
  const { access, constants } = await import('node:fs/promises')
  for (const dir of (process.env['PATH'] ?? '').split(':').concat('/usr/sbin', '/sbin')) {
    if (dir === '') continue
    try {
      await access(`${dir}/${command}`, constants.X_OK)
      return `${dir}/${command}`
    } catch {
      // not here
    }
  }
  return undefined
}

/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ): 100 on every Linux build that matters. */
const USER_HZ = 100

/**
 * CPU time (ms, user + system) used so far by every live process in process group `pgid` (a Proc is the leader
 * of its own group, so this covers nginx's workers too); undefined where /proc is missing.
 */
export async function groupCpuMs(pgid: number): Promise<number | undefined> {
  const { readdir, readFile } = await import('node:fs/promises')
  const entries = await readdir('/proc').catch(() => undefined)
  if (entries === undefined) return undefined
  let ticks = 0
  for (const entry of entries) {
    const c = entry.charCodeAt(0)
    if (c < 48 || c > 57) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'latin1').catch(() => '')
    // Fields after the command name, which may itself hold spaces and parentheses: state ppid pgrp ... utime stime.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(fields[2]) === pgid) ticks += Number(fields[11]) + Number(fields[12])
  }
  return (ticks * 1_000) / USER_HZ
}

/** groupCpuMs summed over several process groups; undefined where /proc is missing. */
export async function groupsCpuMs(pgids: readonly number[]): Promise<number | undefined> {
  let total = 0
  for (const pgid of pgids) {
    const ms = await groupCpuMs(pgid)
    if (ms === undefined) return undefined
    total += ms
  }
  return total
}
