// The probes traffic-aware checks save: vigil in front of 10 real providers (lib/provider-ports.ts: one child process, one port each)
// under steady load, http checks every `--interval`, once without and once with active.trafficInterval; the
// providers count the /healthz requests they receive. Side by side in one invocation.
//   npm run build && node dist/bench/probe-rate.js [--servers 10] [--seconds 20] [--rate 200] [--interval 1s] [--traffic 30s]
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { startProviderPorts } from './lib/provider-ports.js'
import { Vigil, type Config } from '../src/index.js'
import { runLoad } from './lib/load.js'

const { values } = parseArgs({
  options: {
    servers: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '20' },
    rate: { type: 'string', default: '200' },
    interval: { type: 'string', default: '1s' },
    traffic: { type: 'string', default: '30s' },
  },
})

await main()

/** /healthz requests each provider received so far, from its own side. */
async function healthz(ports: readonly number[]): Promise<number[]> {
  return Promise.all(ports.map(async (p) => ((await (await fetch(`http://127.0.0.1:${p}/_control`)).json()) as { healthz: number }).healthz))
}

async function main(): Promise<void> {
  const servers = Number(values.servers)
  const seconds = Number(values.seconds)
  const rate = Number(values.rate)
  const providers = await startProviderPorts(servers)
  const ports = providers.ports
  console.log(`probe rate: ${servers} providers, http checks every ${values.interval}, ${rate} req/s for ${seconds} s per run (round robin), node ${process.version}`)
  console.log('')
  console.log('| run | requests | non-2xx | probes | probes/s per provider | checks left out (traffic) |')
  console.log('|---|---|---|---|---|---|')
  const rows: { probes: number }[] = []
  try {
    for (const trafficInterval of [undefined, values.traffic]) {
      const config: Config = {
        listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
        upstreams: {
          api: {
            servers: ports.map((p) => ({ address: `127.0.0.1:${p}` })),
            active: { type: 'http', interval: values.interval, ...(trafficInterval === undefined ? {} : { trafficInterval }), http: { path: '/healthz' } },
          },
        },
      }
      const vigil = await new Vigil(config, { logger: pino({ level: 'silent' }), admin: false }).start()
      const url = `http://127.0.0.1:${(vigil.listenerAddresses[0] as AddressInfo).port}/`
      // A second of load first, so every server has answered real requests when the count starts.
      await runLoad({ url, connections: 10, duration: 1, rate })
      const before = await healthz(ports)
      const skipped0 = [...vigil.checker.all].reduce((n, t) => n + t.skipped.traffic, 0)
      const load = await runLoad({ url, connections: 10, duration: seconds, rate, spread: 5 })
      const after = await healthz(ports)
      const skipped = [...vigil.checker.all].reduce((n, t) => n + t.skipped.traffic, 0) - skipped0
      await vigil.stop(0)
      const probes = after.reduce((n, a, i) => n + a - (before[i] as number), 0)
      rows.push({ probes })
      const name = trafficInterval === undefined ? 'interval only' : `trafficInterval ${trafficInterval}`
      console.log(`| ${name} | ${load.requests} | ${load.non2xx + load.errors + load.timeouts} | ${probes} | ${(probes / servers / seconds).toFixed(3)} | ${skipped} |`)
      await sleep(200)
    }
  } finally {
    providers.stop()
  }
  const [without, withTraffic] = rows as [{ probes: number }, { probes: number }]
  console.log('')
  console.log(`probes saved: ${without.probes - withTraffic.probes} of ${without.probes} (${((1 - withTraffic.probes / Math.max(1, without.probes)) * 100).toFixed(1)}%), ratio ${(without.probes / Math.max(1, withTraffic.probes)).toFixed(1)}x`)
}
