// The drill's providers: real child processes (src/demo/provider.ts, or the gRPC provider
// bench/lib/grpc-provider.ts) that report per-interval served counts on stdout, and the fault actions on
// them (the FaultTarget the injector drives).
import { cpus } from 'node:os'
import { Proc, firstJsonLine, providerScript } from '../lib/procs.js'
import { BUCKET } from './timeline.js'
import type { FaultTarget } from './faults.js'

export interface CountSink {
  add(name: string, t: number, n: number): void
}

interface Running {
  proc: Proc
  port: number
  /** Where its /_control answers: its own port (HTTP), or the port it names (the gRPC provider). */
  control: number
}

const BURN = 'const end = Date.now() + Number(process.argv[1]); while (Date.now() < end);'

export class ProviderSet implements FaultTarget {
  private readonly running = new Map<string, Running>()
  /** Provider names in proxy order; a replacement takes its predecessor's place. */
  private order: string[] = []
  private readonly burners = new Set<Proc>()
  /** Where counter lines go; unset until the load starts (nothing is counted before). */
  sink: CountSink | undefined
  /** Called with the new server list when a provider is replaced; resolves to what the proxy did. */
  onReplace: (servers: readonly string[]) => Promise<string> = async () => 'no proxy to reload'

  /** `script`: the provider program, taking --name, --port and --count. */
  constructor(private readonly script = providerScript) {}

  async start(name: string, port = 0): Promise<string> {
    const proc = new Proc(name, process.execPath, [this.script, '--name', name, '--port', String(port), '--count', String(BUCKET)], {
      onLine: (line) => this.line(name, line),
    })
    const ready = await firstJsonLine<{ port: number; control?: number }>(proc)
    this.running.set(name, { proc, port: ready.port, control: ready.control ?? ready.port })
    if (!this.order.includes(name)) this.order.push(name)
    return `127.0.0.1:${ready.port}`
  }

  private line(name: string, line: string): void {
    // Counter lines are {"t","n"}; the ready line ({"name","port"}) is not one.
    if (!line.startsWith('{"t"')) return
    const { t, n } = JSON.parse(line) as { t: number; n: number }
    this.sink?.add(name, t, n)
  }

  servers(): string[] {
    return this.order.map((n) => `127.0.0.1:${this.get(n).port}`)
  }

  private get(name: string): Running {
    const r = this.running.get(name)
    if (r === undefined) throw new Error(`no provider named "${name}"`)
    return r
  }

  async kill(name: string): Promise<void> {
    const r = this.get(name)
    r.proc.signal('SIGKILL')
    await r.proc.exited
  }

  async restart(name: string): Promise<void> {
    await this.start(name, this.get(name).port)
  }

  async freeze(name: string): Promise<void> {
    this.get(name).proc.signal('SIGSTOP')
  }

  async thaw(name: string): Promise<void> {
    this.get(name).proc.signal('SIGCONT')
  }

  async control(name: string, query: string): Promise<void> {
    const res = await fetch(`http://127.0.0.1:${this.get(name).control}/_control?${query}`, { signal: AbortSignal.timeout(5_000) })
    await res.text()
  }

  /** Set the same behaviour on every provider. */
  async controlAll(query: string): Promise<void> {
    await Promise.all(this.order.map((n) => this.control(n, query)))
  }

  async replace(name: string): Promise<{ replacement: string; note: string }> {
    const base = name.replace(/\d+$/, '')
    let k = 2
    while (this.running.has(`${base}${k}`)) k++
    const replacement = `${base}${k}`
    await this.start(replacement)
    // start() appended it; it belongs where its predecessor was.
    this.order = this.order.filter((n) => n !== replacement).map((n) => (n === name ? replacement : n))
    const note = await this.onReplace(this.servers())
    return { replacement, note }
  }

  async retire(name: string): Promise<void> {
    await this.get(name).proc.stop()
  }

  async burn(ms: number): Promise<void> {
    for (let i = 0; i < cpus().length; i++) {
      const p = new Proc(`burn${i}`, process.execPath, ['-e', BURN, String(ms)])
      this.burners.add(p)
      void p.exited.then(() => this.burners.delete(p))
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.burners, ...[...this.running.values()].map((r) => r.proc)].map((p) => p.stop(1_000)))
  }
}
