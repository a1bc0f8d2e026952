// Many providers in one child process, one ephemeral port each (src/demo/provider.ts): for benches that need
// more providers than processes. Run as a script it serves `argv[2]` ports, prints them as one JSON line and exits
// when its stdin closes (its parent went away).
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { createProvider } from '../../src/demo/provider.js'

const script = fileURLToPath(import.meta.url)

export interface ProviderPorts {
  ports: number[]
  /** Kill the child's process group. */
  stop(): void
}

/** A child process serving `count` providers; resolves with their ports. */
export async function startProviderPorts(count: number): Promise<ProviderPorts> {
  const child = spawn(process.execPath, [script, String(count)], { stdio: ['pipe', 'pipe', 'inherit'], detached: true })
  const ports = await new Promise<number[]>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`provider process exited early (${code})`)))
    createInterface({ input: child.stdout }).once('line', (l) => resolve(JSON.parse(l) as number[]))
  })
  return {
    ports,
    stop: () => {
      child.stdin.end()
      try {
        process.kill(-(child.pid as number), 'SIGKILL')
      } catch {
        // gone already
      }
    },
  }
}

if (process.argv[1] === script) {
  const ports: number[] = []
  for (let i = 0; i < Number(process.argv[2]); i++) ports.push((await createProvider({ name: `p${i}` }).listen()).port)
  process.stdout.write(`${JSON.stringify(ports)}\n`)
  process.stdin.resume()
  process.stdin.on('end', () => process.exit(0))
}
