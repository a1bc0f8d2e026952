// Helpers for health tests: polling for a condition, the admin status, a provider's /_control.
import { get } from './index.js'
import { until } from './wait.js'
import type { ServerStatus } from '../../src/admin/status.js'
import type { HealthEvent } from '../../src/health/events.js'
import type { Vigil } from '../../src/index.js'

/** until() in the argument order the health tests use: what is awaited first. */
export function waitFor(what: string, check: () => boolean | Promise<boolean>, limit = 20_000): Promise<void> {
  return until(check, what, limit)
}

export async function statusOf(admin: string, query = '', headers: Record<string, string> = {}): Promise<ServerStatus[]> {
  const r = await get(`${admin}/status?format=json${query}`, { headers })
  return (JSON.parse(r.body) as { servers: { server: ServerStatus[] } }).servers.server
}

export interface ProviderState {
  served: number
  healthz: number
  status: number
  delay: number
}

/** Read or change a provider's behaviour, e.g. `control(p, 'status=500')`. */
export async function control(provider: { address: string }, query = ''): Promise<ProviderState> {
  return JSON.parse((await get(`http://${provider.address}/_control?${query}`)).body) as ProviderState
}

/** Every health event vigil reports, in order. */
export function recordEvents(vigil: Vigil, source?: HealthEvent['source']): HealthEvent[] {
  const seen: HealthEvent[] = []
  vigil.events.on('health', (e) => (source === undefined || e.source === source) && seen.push(e))
  return seen
}
