// Prometheus series per registry source, built at scrape time from the sources' status.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { SourceStatus } from './registries.js'

type Labels = { kind: string; source: string }

export function registerDiscoveryMetrics(registry: Registry, status: () => SourceStatus[]): void {
  const registers = [registry]
  const labelNames = ['kind', 'source'] as const
  const labels = (s: SourceStatus): Labels => ({ kind: s.kind, source: s.source })
  const gauge = (name: string, help: string, value: (s: SourceStatus) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset()
        for (const s of status()) {
          const v = value(s)
          if (v !== undefined) this.set(labels(s), v)
        }
      },
    })
  }
  gauge('vigil_discovery_connected', '1 while the registry source is connected', (s) => (s.connected ? 1 : 0))
  gauge('vigil_discovery_stale', '1 when the source had no successful read within staleAfter', (s) => (s.stale ? 1 : 0))
  gauge('vigil_discovery_servers', 'servers in the last list the registry gave', (s) => s.servers)
  gauge('vigil_discovery_last_read_timestamp_seconds', 'time of the last successful read, in Unix seconds', (s) => (s.lastRead === undefined ? undefined : Date.parse(s.lastRead) / 1000))
  gauge('vigil_discovery_age_seconds', 'seconds since the last successful read', (s) => s.ageSeconds)
  new Counter({
    name: 'vigil_discovery_drift_total',
    help: 'resyncs that found the registry different from what the subscription delivered (a lost event)',
    labelNames,
    registers,
    collect() {
      this.reset()
      for (const s of status()) this.inc(labels(s), s.drifts)
    },
  })
  new Gauge({
    name: 'vigil_discovery_held_servers',
    help: 'servers kept by the protection rules although the registry no longer lists them, by reason',
    labelNames: ['kind', 'source', 'upstream', 'reason'],
    registers,
    collect() {
      this.reset()
      for (const s of status()) {
        for (const b of s.upstreams) {
          for (const reason of ['passing checks', 'empty list', 'awaiting confirmation']) {
            this.set({ ...labels(s), upstream: b.upstream, reason }, b.held.filter((h) => h.reason === reason).length)
          }
        }
      }
    },
  })
}
