// The active checker's own cost: CPU of vigil checking N servers every second, tcp and http checks.
// One child process answers on N loopback ports (lib/provider-ports.ts); vigil runs in this process, which measures its own CPU.
//   npm run build && node dist/bench/checker-cost.js [--servers 1000] [--seconds 20]
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import { startProviderPorts } from './lib/provider-ports.js'
import { Vigil, type Config } from '../src/index.js'

const { values } = parseArgs({
  options: {
    servers: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '20' },
  },
})

await main(Number(values.servers), Number(values.seconds))

async function main(servers: number, seconds: number): Promise<void> {
  const providers = await startProviderPorts(servers)
  const ports = providers.ports
  try {
    console.log(`checker cost: ${servers} servers, interval 1s, ${seconds}s measured per run, node ${process.version}`)
    for (const active of [{ type: 'tcp' as const }, { type: 'http' as const, http: { path: '/healthz' } }]) {
      const config: Config = {
        listeners: [{ address: '127.0.0.1:0', upstream: 'many' }],
        upstreams: { many: { servers: ports.map((p) => ({ address: `127.0.0.1:${p}` })), active: { ...active, interval: '1s', timeout: '1s', maxInFlight: 256 } } },
      }
      const vigil = await new Vigil(config, { logger: pino({ level: 'silent' }), admin: false }).start()
      // Warm up: the first round checks everything at once, then the schedule spreads.
      await sleep(3_000)
      const checks = (): number => [...vigil.checker.all].reduce((n, t) => n + t.checks, 0)
      const failures = (): number => [...vigil.checker.all].reduce((n, t) => n + t.failures + t.inconclusive, 0)
      const lag = monitorEventLoopDelay({ resolution: 10 })
      lag.enable()
      const cpu = process.cpuUsage()
      const n0 = checks()
      const f0 = failures()
      const t0 = performance.now()
      await sleep(seconds * 1_000)
      const used = process.cpuUsage(cpu)
      const elapsed = (performance.now() - t0) / 1000
      lag.disable()
      const rate = (checks() - n0) / elapsed
      const core = (used.user + used.system) / 1e6 / elapsed
      console.log(
        `${active.type.padEnd(4)}: ${rate.toFixed(0)} checks/s, CPU ${(core * 100).toFixed(1)}% of one core ` +
          `(${((core * 1e6) / rate).toFixed(0)} µs per check), failed ${failures() - f0}, ` +
          `loop delay p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms, rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`,
      )
      await vigil.stop(0)
    }
  } finally {
    providers.stop()
  }
}
