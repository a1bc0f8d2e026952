// The real-fleet drill's rows (bench/fleet-drill.ts) as the drill report shows them: one table, one row per phase
// and registry, each with its target met or missed.
import { esc, htmlTable, mdTable } from './tables.js'
import { runLabel } from './results.js'

export type FleetRegistry = 'etcd' | 'zookeeper'

export interface FleetDrillRow {
  phase: 'kill' | 'partition' | 'registry'
  /** The registry the fleet shares through; undefined for the kill phase without sharing. */
  registry: FleetRegistry | undefined
  shared: boolean
  skipped?: string
  /** kill: ms from the kill to each vigil's first ejection or down (null: never). */
  detection?: (number | null)[]
  p50?: number
  max?: number
  failed?: number
  requests?: number
  /** partition */
  partitionedVigilTookItOut?: boolean
  othersThatTookItOut?: string[]
  othersFailed?: number
  othersRequests?: number
  fleetDecisionsAtOthers?: string[]
  /** registry */
  outageSeconds?: number
  healthChangesDuringOutage?: string[]
  /** The smallest consumer count a vigil saw in the registry after the outage (polled for up to 60 s). */
  fleetSeenAfter?: number
  /** From the registry's restart until every vigil saw the whole fleet (polled from 12 s, once the old sessions' and leases' records expired). */
  reregisteredMs?: number
}

export interface FleetDrillDoc {
  kind: 'fleet'
  run: string
  vigils: number
  busy: number
  light: number
  outageSeconds: number
  interval: string
  rows: FleetDrillRow[]
}

export const FLEET_HEAD = ['phase', 'registry', 'shared observations', 'detected', 'detection p50', 'max', 'failed / requests', 'result', 'target']

const s2 = (ms: number | undefined): string => (ms === undefined || !Number.isFinite(ms) ? '-' : `${(ms / 1000).toFixed(2)} s`)

/** The kill phase without sharing, which every kill row with sharing must beat. */
const baseline = (d: FleetDrillDoc): FleetDrillRow | undefined => d.rows.find((r) => r.phase === 'kill' && !r.shared)

function killCells(d: FleetDrillDoc, r: FleetDrillRow): string[] {
  const detected = (r.detection ?? []).filter((x) => x !== null).length
  const base = baseline(d)
  const all = detected === d.vigils
  const sooner = !r.shared || base?.p50 === undefined || r.p50 === undefined ? undefined : r.p50 < base.p50
  const fewer = !r.shared || base?.failed === undefined || r.failed === undefined ? undefined : r.failed <= base.failed
  const missed = [...(all ? [] : [`${d.vigils - detected} never took it out`]), ...(sooner === false ? ['not sooner than without'] : []), ...(fewer === false ? ['more failed requests than without'] : [])]
  const ratio = r.shared && base?.p50 !== undefined && r.p50 !== undefined && r.p50 > 0 ? `p50 ${(base.p50 / r.p50).toFixed(1)}× sooner than without` : 'the baseline'
  return [`${detected} of ${d.vigils}`, s2(r.p50), s2(r.max), `${r.failed ?? '-'} / ${r.requests ?? '-'}`, ratio, missed.length === 0 ? '✓ met' : `✗ MISSED: ${missed.join(', ')}`]
}

function partitionCells(d: FleetDrillDoc, r: FleetDrillRow): string[] {
  const others = r.othersThatTookItOut ?? []
  const result = `${others.length === 0 ? `in rotation at all ${d.vigils - 1} others` : `taken out at ${others.join(', ')}`}; the partitioned vigil ${r.partitionedVigilTookItOut === true ? 'took it out' : 'did not take it out'}`
  const missed = [...(others.length > 0 ? ['spread to others'] : []), ...((r.othersFailed ?? 0) > 0 ? [`${r.othersFailed} failed at others`] : [])]
  return ['-', '-', '-', `${r.othersFailed ?? '-'} / ${r.othersRequests ?? '-'} (others)`, result, missed.length === 0 ? '✓ met' : `✗ MISSED: ${missed.join(', ')}`]
}

function registryCells(d: FleetDrillDoc, r: FleetDrillRow): string[] {
  const changes = r.healthChangesDuringOutage ?? []
  const result = `registry down ${r.outageSeconds ?? '-'} s: ${changes.length === 0 ? 'no health change' : changes.join(', ')}; ${r.fleetSeenAfter === d.vigils ? `every vigil saw all ${d.vigils} registered again by ${s2(r.reregisteredMs)} after its restart (looked from 12 s on)` : `${s2(r.reregisteredMs)} after its restart a vigil saw only ${r.fleetSeenAfter ?? '-'} of ${d.vigils} registered`}`
  const missed = [...(changes.length > 0 ? [`${changes.length} health changes`] : []), ...((r.failed ?? 0) > 0 ? [`${r.failed} failed requests`] : []), ...(r.fleetSeenAfter !== d.vigils ? ['not all registered again'] : [])]
  return ['-', '-', '-', `${r.failed ?? '-'} / ${r.requests ?? '-'}`, result, missed.length === 0 ? '✓ met' : `✗ MISSED: ${missed.join(', ')}`]
}

export function fleetRows(d: FleetDrillDoc): string[][] {
  return d.rows.map((r) => {
    const head = [r.phase, r.registry ?? '-', r.shared ? 'on' : 'off']
    if (r.skipped !== undefined) return [...head, '-', '-', '-', '-', `skipped: ${r.skipped}`, '']
    return [...head, ...(r.phase === 'kill' ? killCells(d, r) : r.phase === 'partition' ? partitionCells(d, r) : registryCells(d, r))]
  })
}

function intro(d: FleetDrillDoc): string {
  return `Run ${runLabel({ run: d.run })}: ${d.vigils} vigil processes, 5 providers, steady load (two vigils at ${d.busy} req/s, the others at ${d.light} req/s), active checks every ${d.interval}; no retries, so a request sent to a dead provider is a failed one. kill: a provider SIGKILLed, detection is kill → each vigil's first ejection or down, without and with shared observations (target: sooner with). partition: one vigil in a network namespace whose firewall drops its packets to one provider (target: in every other vigil's rotation). registry: the registry SIGKILLed for ${d.outageSeconds} s (target: no health change, no failed request, everyone registered again).`
}

export function fleetMarkdownSection(d: FleetDrillDoc): string {
  return ['## Real fleet drill (`npm run drill:fleet`)', '', intro(d), '', mdTable(FLEET_HEAD, fleetRows(d)), ''].join('\n')
}

export function fleetHtmlSection(d: FleetDrillDoc): string {
  return `<h2>Real fleet drill (<code>npm run drill:fleet</code>)</h2><p>${esc(intro(d))}</p>${htmlTable(FLEET_HEAD, fleetRows(d))}`
}
