// Prometheus series of the fleet, built at scrape time from its status; decisions counted as they change.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Fleet } from './fleet.js'
import type { ServerFleetStatus } from './shared-health.js'

export function registerFleetMetrics(registry: Registry, fleet: Fleet): void {
  const registers = [registry]
  const gauge = (name: string, help: string, value: () => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value())
      },
    })
  }
  gauge('vigil_fleet_consumers', 'consumers registered in the fleet (this vigil included)', () => fleet.consumers.view.count)
  gauge('vigil_fleet_index', "this vigil's index in the sorted list of consumers", () => fleet.consumers.view.index)
  gauge('vigil_fleet_registered', '1 once the registry lists this vigil', () => (fleet.consumers.view.registered ? 1 : 0))
  const perServer = (name: string, help: string, value: (s: ServerFleetStatus) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['upstream', 'server'],
      registers,
      collect() {
        this.reset()
        for (const [upstream, servers] of Object.entries(fleet.status().upstreams)) for (const s of servers) this.set({ upstream, server: s.server }, value(s))
      },
    })
  }
  // Per server: under `subset` the default quorum counts only the consumers whose subset holds the server.
  perServer('vigil_fleet_quorum', 'observers that must report the server failing for it to become suspect here', (s) => s.quorum)
  perServer('vigil_fleet_observers', 'other vigils reporting the server failing within the window', (s) => s.reporting)
  new Gauge({
    name: 'vigil_fleet_checked_servers',
    help: 'check targets this vigil probes itself (probed) or takes from other consumers (shared)',
    labelNames: ['role'],
    registers,
    collect() {
      const c = fleet.health.checkShare()
      this.set({ role: 'probed' }, c.probed)
      this.set({ role: 'shared' }, c.shared)
    },
  })
  new Counter({
    name: 'vigil_fleet_writes_total',
    help: "this vigil's observation writes to the registry, by result (superseded: replaced by a newer state before it was written; suppressed: skipped, enough other observers already report the failure or there was no failing record to take back)",
    labelNames: ['result'],
    registers,
    collect() {
      this.reset()
      const w = fleet.writer.status()
      this.inc({ result: 'written' }, w.written)
      this.inc({ result: 'failed' }, w.failed)
      this.inc({ result: 'superseded' }, w.superseded)
      this.inc({ result: 'suppressed' }, w.suppressed)
    },
  })
  const decisions = new Counter({
    name: 'vigil_fleet_decisions_total',
    help: 'decisions taken on shared evidence, as they changed: ignored (local success wins), suspect, ejected, capped, none (cleared)',
    labelNames: ['upstream', 'decision'],
    registers,
  })
  fleet.decided = (upstream, decision) => decisions.inc({ upstream, decision })
}
