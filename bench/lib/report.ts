// The report: every result in one folder as one self-contained HTML page (inline SVG charts, no external assets)
// and a markdown summary, rewritten by `npm run bench` and `npm run drill` in bench/out/, and by
// `npm run bench:keep` in the committed bench/results/. Every row says which run wrote it and at what scale, and
// every missed target is marked.
import { readdir, readFile, writeFile } from 'node:fs/promises'
import type { RunResult } from '../drill/drill.js'
import type { FaultEvent } from '../drill/faults.js'
import type { Series } from '../drill/timeline.js'
import { quantile, resultsDir, runLabel, type RunLabel } from './results.js'
import { COLORS, esc, htmlTable, mdTable } from './tables.js'
import type { SimDoc } from '../sim/sim.js'
import { simHtmlSection, simMarkdownSection } from '../sim/report.js'
import { fleetHtmlSection, fleetMarkdownSection, type FleetDrillDoc } from './fleet-report.js'
import { h2HtmlSection, h2MarkdownSection, type H2Doc } from './h2-report.js'

interface ThroughputDoc {
  kind: 'throughput'
  date: string
  machine: { cpus: number; model?: string; node: string; loadavg: number[] }
  settings: { rounds: number; duration: number; connections: number; upstream?: string }
  summary: ThroughputRow[]
  ratios: Ratios
  fixedRate?: { rate: number; summary: ThroughputRow[]; ratios: Ratios }
  /** Target descriptions (strings) and whether each was met (`...Met` booleans; undefined: not measured). */
  targets?: Record<string, string | boolean | undefined>
  notes: string[]
  run?: string
  scale?: number
}

interface ThroughputRow {
  target: string
  rps: number
  p50: number
  p99: number
  errors: number
  /** CPU time per request (µs) of the proxy's processes and of the upstream's, from /proc/PID/stat. */
  cpuUs?: number
  upstreamCpuUs?: number
}

interface Ratios {
  vigilOverDirect?: number
  vigilOverUndici?: number
  vigilCpuOverUndici?: number
  vigilOverHttpProxy?: number
  vigilOverNginx?: number
  vigilP99AboveDirect?: number
  undiciP99AboveDirect?: number
  nginxP99AboveDirect?: number
  accessOverVigil?: number
  accessCpuOverVigil?: number
  noForwardingOverUndici?: number
  noForwardingCpuOverUndici?: number
}

export interface DrillDoc {
  kind: 'drill'
  scenario: string
  description: string
  date: string
  /** 1-minute load average when the scenario started and ended: how busy the machine was. */
  machine?: { cpus: number; node: string; loadavg: number[] }
  timing: Record<string, number>
  load: { rate: number; connections: number; timeout: number }
  runs: RunResult[]
}

/** The registry drill's phases, in the order it runs them. */
export type RegistryPhase = 'deregister, then kill' | 'killed, not deregistered' | 'registry restart' | 'lost event' | 'empty push' | 'start from cache'

/** One phase of the registry drill against one registry (bench/registry-drill.ts). */
export interface RegistryRow extends Partial<RunLabel> {
  kind: string
  /** Providers replaced per rolling deploy. */
  rounds?: number
  phase: RegistryPhase | 'all'
  status: 'ok' | 'failed' | 'skipped'
  requests?: number
  clientErrors?: number
  /** Requests a provider received after vigil applied its removal (counted by the provider). */
  sentToRemoved?: number
  /** Seconds from each registry change to vigil applying it. */
  changeToApply?: number[]
  seconds?: number
  /** What the phase showed, in words. */
  result?: string
  /** Targets of the phase's own (beyond 0 client errors and 0 requests to removed addresses) that it missed. */
  missed?: string[]
  note?: string
}

export interface RegistryDoc {
  kind: 'registry'
  date: string
  machine: { cpus: number; node: string; loadavg: number[] }
  clients: number
  runs: RegistryRow[]
}

const ORDER = ['kill', 'freeze', 'errors', 'slow', 'flap', 'rolling', 'noise', 'partial', 'global', 'grpc-kill', 'grpc-freeze', 'grpc-errors']

interface Results {
  throughput?: ThroughputDoc
  h2?: H2Doc
  drills: DrillDoc[]
  registry?: RegistryDoc
  fleet?: FleetDrillDoc
  sim?: SimDoc
}

export async function readResults(dir = resultsDir): Promise<Results> {
  const files = await readdir(dir).catch(() => [] as string[])
  let throughput: ThroughputDoc | undefined
  let registry: RegistryDoc | undefined
  let sim: SimDoc | undefined
  let fleet: FleetDrillDoc | undefined
  let h2: H2Doc | undefined
  const drills: DrillDoc[] = []
  for (const f of files.filter((f) => f.endsWith('.json')).sort()) {
    const doc = JSON.parse(await readFile(`${dir}${f}`, 'utf8')) as ThroughputDoc | DrillDoc | RegistryDoc | SimDoc | FleetDrillDoc | H2Doc
    if (doc.kind === 'throughput') throughput = doc
    else if (doc.kind === 'drill') drills.push(doc)
    else if (doc.kind === 'registry') registry = doc
    else if (doc.kind === 'sim') sim = doc
    else if (doc.kind === 'fleet') fleet = doc
    else if (doc.kind === 'h2-throughput') h2 = doc
  }
  drills.sort((a, b) => ORDER.indexOf(a.scenario) - ORDER.indexOf(b.scenario))
  return { throughput, h2, drills, registry, fleet, sim }
}

const n0 = (n: number | undefined) => (n === undefined ? '-' : Math.round(n).toString())
const n1 = (n: number | undefined) => (n === undefined ? '-' : n.toFixed(1))
const n2 = (n: number | undefined) => (n === undefined ? '-' : n.toFixed(2))
const ratio = (n: number | undefined) => (n === undefined ? '-' : `${n.toFixed(2)}x`)
const secs = (ms: number | null | undefined) => (ms === undefined ? '-' : ms === null ? 'never' : `${(ms / 1000).toFixed(1)} s`)
const pct = (n: number | undefined) => (n === undefined ? '-' : `${(n * 100).toFixed(0)}%`)

function throughputRows(rows: readonly ThroughputRow[]): string[][] {
  return rows.map((s) => [s.target, n0(s.rps), n2(s.p50), n2(s.p99), String(s.errors), n1(s.cpuUs), n1(s.upstreamCpuUs)])
}
const THROUGHPUT_HEAD = ['target', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/request', 'upstream CPU µs/request']

function fixedRateLine(f: NonNullable<ThroughputDoc['fixedRate']>): string {
  return `At a fixed ${f.rate} req/s, paced evenly (bench/lib/paced.ts; every target keeps up, so nothing queues): vigil p99 − direct p99 = ${n2(f.ratios.vigilP99AboveDirect)} ms (target ≤ 1 ms; undici ${n2(f.ratios.undiciP99AboveDirect)} ms, nginx ${n2(f.ratios.nginxP99AboveDirect)} ms); vigil/undici CPU per request ${ratio(f.ratios.vigilCpuOverUndici)}.`
}

function throughputRatios(r: Ratios): string {
  return (
    `vigil/undici ${ratio(r.vigilOverUndici)} req/s (target ≥ 0.9x) and ${ratio(r.vigilCpuOverUndici)} CPU per request (target ≤ 1.1x), ` +
    `vigil/http-proxy ${ratio(r.vigilOverHttpProxy)} (target ≥ 2x), vigil/nginx ${ratio(r.vigilOverNginx)}, vigil/direct ${ratio(r.vigilOverDirect)}; ` +
    `vigil p99 − direct p99 = ${n2(r.vigilP99AboveDirect)} ms at saturation` +
    (r.accessOverVigil === undefined ? '' : `; access log on: vigil+access/vigil ${ratio(r.accessOverVigil)} req/s (target ≥ 0.9x), ${ratio(r.accessCpuOverVigil)} CPU per request`) +
    (r.noForwardingOverUndici === undefined
      ? ''
      : `; without forwarding headers (listener \`forwardedHeaders: false\`, as the forwarder): vigil-nofwd/undici ${ratio(r.noForwardingOverUndici)} req/s, ${ratio(r.noForwardingCpuOverUndici)} CPU per request`)
  )
}

/** "✓ met" / "✗ MISSED" per measured target of a throughput run, e.g. "undici throughput ✗ MISSED". */
export function targetMarks(targets: ThroughputDoc['targets']): string[] {
  return Object.entries(targets ?? {})
    .filter((e): e is [string, boolean] => typeof e[1] === 'boolean')
    .map(([key, met]) => `${key.replace(/Met$/, '').replace(/([A-Z])/g, ' $1').toLowerCase()} ${met ? '✓ met' : '✗ MISSED'}`)
}

/** The targets every drill row is judged by: every fault window detected, no healthy provider ejected. */
export function drillMisses(r: RunResult): string[] {
  const missed: string[] = []
  const [found, all] = (r.detected ?? '').split('/').map(Number)
  if (found !== undefined && all !== undefined && found < all) missed.push(`detected ${r.detected}`)
  if ((r.falseEjections ?? 0) > 0) missed.push(`${r.falseEjections} false ejection${r.falseEjections === 1 ? '' : 's'}`)
  return missed
}

export const DRILL_HEAD = ['run', 'proxy', 'requests', 'errors', 'non-2xx', '> 1 s', 'p50 ms', 'p99 ms', 'fault → out', 'sent after out', 'repair → back', 'detected', 'faulty share', 'false ejections', 'targets', 'note']

export function drillRow(r: RunResult): string[] {
  if (r.status !== 'ok' || r.client === undefined) return [runLabel(r), r.proxy, r.status, ...new Array<string>(DRILL_HEAD.length - 4).fill(''), r.note ?? '']
  const missed = drillMisses(r)
  const c = r.client
  const reloads = (r.events ?? []).filter((e) => e.note !== undefined).map((e) => `${e.provider}→${e.replacement}: ${e.note}`)
  return [
    runLabel(r),
    r.proxy,
    String(c.requests),
    String(c.errors),
    String(c.non2xx),
    String(c.slow),
    n1(c.p50),
    n1(c.p99),
    secs(r.detectMs),
    r.leaked === undefined ? '-' : String(r.leaked),
    secs(r.recoverMs),
    r.detected ?? '-',
    pct(r.faultyShare),
    r.falseEjections === undefined ? '-' : String(r.falseEjections),
    missed.length === 0 ? '✓ met' : `✗ MISSED: ${missed.join(', ')}`,
    [r.note, ...reloads].filter((x) => x !== undefined).join('; '),
  ]
}

/** Every target a registry drill row missed: 0 client errors, 0 requests to removed addresses, its own. */
export function registryMisses(r: RegistryRow): string[] {
  if (r.status === 'skipped') return []
  if (r.status === 'failed') return ['phase failed']
  const missed: string[] = []
  if ((r.clientErrors ?? 0) > 0) missed.push(`${r.clientErrors} client error${r.clientErrors === 1 ? '' : 's'}`)
  if ((r.sentToRemoved ?? 0) > 0) missed.push(`${r.sentToRemoved} sent to removed addresses`)
  return [...missed, ...(r.missed ?? [])]
}

export const REGISTRY_HEAD = ['run', 'registry', 'phase', 'rounds', 'requests', 'client errors', 'sent to removed', 'change → apply p50', 'p99', 'changes', 'phase s', 'result', 'targets']

const s3 = (n: number | undefined) => (n === undefined ? '-' : `${n.toFixed(3)} s`)

export function registryRow(r: RegistryRow): string[] {
  const head = [runLabel(r), r.kind, r.phase, r.rounds === undefined ? '-' : String(r.rounds)]
  if (r.status !== 'ok') return [...head, r.status, ...new Array<string>(REGISTRY_HEAD.length - head.length - 3).fill(''), r.note ?? '', r.status === 'failed' ? '✗ MISSED: phase failed' : '']
  const applied = r.changeToApply ?? []
  const missed = registryMisses(r)
  return [
    ...head,
    r.requests === undefined ? '-' : String(r.requests),
    r.clientErrors === undefined ? '-' : String(r.clientErrors),
    r.sentToRemoved === undefined ? '-' : String(r.sentToRemoved),
    s3(applied.length === 0 ? undefined : quantile(applied, 0.5)),
    s3(applied.length === 0 ? undefined : quantile(applied, 0.99)),
    String(applied.length),
    n1(r.seconds),
    r.result ?? '',
    missed.length === 0 ? '✓ met' : `✗ MISSED: ${missed.join(', ')}`,
  ]
}

const REGISTRY_LEGEND = `Under 16 closed-loop clients through vigil, against real etcd and ZooKeeper servers, one row per phase.
sent to removed: requests a provider received after vigil applied its removal (counted by the provider);
change → apply: from the registry write (or, for a killed provider, the kill) to vigil applying the change;
the killed providers' etcd leases are 2 s, their ZooKeeper sessions 4 s and held by a process of their own.
Targets: 0 client errors and 0 requests to removed addresses in every phase, plus the phase's own (restart: ends
with the live providers; lost event: caught within resyncInterval plus its second look, 2.5 s, and counted as a
drift; empty push: every server kept; start from cache: a 200).`

function registryIntro(d: RegistryDoc): string {
  const labels = [...new Set(d.runs.map(runLabel))]
  const mixed = labels.length < 2 ? '' : ` Rows from ${labels.length} runs (${labels.join('; ')}): compare across them with care.`
  return `${REGISTRY_LEGEND.replace(/\s*\n\s*/g, ' ')} ${d.date}; ${d.machine.cpus} CPUs, load average ${d.machine.loadavg.map((l) => l.toFixed(1)).join(' → ')} over the drill.${mixed}`
}

/** Said above a scenario's table when its rows come from more than one run (or scale). */
export function mixedRunsNote(d: DrillDoc): string {
  const labels = [...new Set(d.runs.map(runLabel))]
  return labels.length < 2 ? '' : ` Rows from ${labels.length} runs (${labels.join('; ')}): compare across them with care.`
}

function machineNote(d: DrillDoc): string {
  const m = d.machine
  return m === undefined ? '' : `; ${m.cpus} CPUs, load average ${m.loadavg.map((l) => l.toFixed(1)).join(' → ')} over the scenario`
}


/** A timeline: requests per second per provider, client errors per second, faults and repairs marked. */
export function timelineSvg(s: Series, events: readonly FaultEvent[], title: string): string {
  const W = 640
  const H = 220
  const L = 44
  const R = 10
  const T = 36
  const B = 30
  const points = s.ok.length
  const bad = s.ok.map((_, i) => (s.errors[i] ?? 0) + (s.non2xx[i] ?? 0))
  const lines: [string, number[], string][] = Object.entries(s.providers)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, v], i) => [name, v, COLORS[i % COLORS.length] as string])
  lines.push(['client errors', bad, '#d62728'])
  const max = Math.max(10, ...lines.flatMap(([, v]) => v))
  const yMax = Math.ceil(max / 10) * 10
  const x = (i: number) => L + ((W - L - R) * i) / Math.max(1, points)
  const y = (v: number) => T + (H - T - B) * (1 - v / yMax)
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">`,
    `<text x="${L}" y="14" font-size="12" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${L}" y1="${y(0)}" x2="${W - R}" y2="${y(0)}" stroke="#999"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${y(0)}" stroke="#999"/>`,
  ]
  for (const v of [0, yMax / 2, yMax]) parts.push(`<text x="${L - 4}" y="${y(v) + 4}" font-size="10" text-anchor="end">${v}</text>`)
  for (let i = 0; i <= points; i += Math.max(1, Math.ceil(points / 10))) parts.push(`<text x="${x(i)}" y="${H - B + 14}" font-size="10" text-anchor="middle">${(i * s.width) / 1000}s</text>`)
  parts.push(`<text x="${L}" y="${H - 2}" font-size="10">req/s per provider; red: client errors + non-2xx per second</text>`)
  for (const e of events) {
    const ex = x(e.ran / s.width)
    const color = e.mark === 'fault' ? '#d62728' : e.mark === 'repair' ? '#2ca02c' : '#ff7f0e'
    parts.push(`<line x1="${ex}" y1="${T}" x2="${ex}" y2="${y(0)}" stroke="${color}" stroke-dasharray="4 3"><title>${esc(`${(e.ran / 1000).toFixed(1)} s ${e.action} ${e.provider ?? ''} ${e.arg ?? ''}`)}</title></line>`)
  }
  for (const [name, v, color] of lines) {
    // Each value is the count for [i, i+1) seconds: plotted at the middle of its second.
    const d = v.map((n, i) => `${i === 0 ? 'M' : 'L'}${x(i + 0.5).toFixed(1)},${y(n).toFixed(1)}`).join(' ')
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"><title>${esc(name)}</title></path>`)
  }
  lines.forEach(([name, , color], i) => {
    const lx = L + i * 80
    parts.push(`<rect x="${lx}" y="21" width="10" height="3" fill="${color}"/><text x="${lx + 14}" y="26" font-size="10">${esc(name)}</text>`)
  })
  parts.push('</svg>')
  return parts.join('')
}

const STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td:first-child,td:last-child{text-align:left}td:last-child{max-width:420px;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:8px}.charts svg{border:1px solid #eee}code{background:#f6f6f6;padding:0 3px}.missed{color:#b00}`

const LEGEND = `Columns: <b>errors</b> socket errors and timeouts seen by the clients; <b>non-2xx</b> responses the clients got
that were not 2xx; <b>&gt; 1 s</b> responses slower than one second; p50/p99 over every response; <b>fault → out</b> from
the fault until the faulty provider was out of rotation: the start of the first second (half the fault when shorter) in
which it was sent nothing while at least 10 requests went elsewhere — judged from its own counts when it still counts
(503s, latency), from the client requests the fault hurt (error, non-2xx, slower than 250 ms) when it was killed or
frozen; <i>never</i>: not before the repair (worst fault window); <b>sent after out</b> requests it was still sent
during the fault after that (trial requests, failed re-admissions); <b>repair → back</b> from the repair until it got
traffic again for good (no 1 s gap after); <b>detected</b> fault windows detected / all; <b>faulty share</b> of all
requests the faulty provider received during its faults (a third when nothing is detected); <b>false ejections</b>
spans of 1 s in which a healthy provider got nothing while at least 10 requests went to others. Resolution: 100 ms.`

export function renderHtml(results: Results): string {
  const out: string[] = [`<!doctype html><html><head><meta charset="utf-8"><title>vigil bench and drills</title><style>${STYLE.replace(/\n/g, '')}</style></head><body>`]
  out.push('<h1>vigil: throughput and fault drills</h1>')
  const t = results.throughput
  if (t !== undefined) {
    out.push('<h2>Throughput (<code>npm run bench</code>)</h2>')
    out.push(`<p>Run ${esc(runLabel(t))}: ${esc(t.date)}, ${t.machine.cpus} CPUs (${esc(t.machine.model ?? '')}), Node ${esc(t.machine.node)}, load average before the run ${t.machine.loadavg.map((l) => l.toFixed(2)).join(' ')}. Median of ${t.settings.rounds} interleaved rounds of ${t.settings.duration} s at ${t.settings.connections} connections.</p>`)
    out.push(htmlTable(THROUGHPUT_HEAD, throughputRows(t.summary)))
    out.push(`<p>${esc(throughputRatios(t.ratios))}</p>`)
    const marks = targetMarks(t.targets)
    if (marks.length > 0) out.push(`<p>Targets: ${marks.map((m) => (m.includes('MISSED') ? `<b class="missed">${esc(m)}</b>` : esc(m))).join('; ')}</p>`)
    if (t.fixedRate !== undefined) out.push(`<p>${esc(fixedRateLine(t.fixedRate))}</p>`, htmlTable(THROUGHPUT_HEAD, throughputRows(t.fixedRate.summary)))
    if (t.notes.length > 0) out.push(`<p>${t.notes.map(esc).join('<br>')}</p>`)
  }
  if (results.h2 !== undefined) out.push(h2HtmlSection(results.h2))
  if (results.drills.length > 0) out.push(`<h2>Fault drills (<code>npm run drill</code>)</h2><p>${LEGEND.replace(/\s*\n\s*/g, ' ')}</p>`)
  for (const d of results.drills) {
    out.push(`<h3>${esc(d.scenario)}</h3><p>${esc(d.description)}. ${esc(d.date)}; load ${d.load.rate} req/s over ${d.load.connections} connections; timing ${esc(JSON.stringify(d.timing))}${esc(machineNote(d))}.<b class="missed">${esc(mixedRunsNote(d))}</b></p>`)
    out.push(htmlTable(DRILL_HEAD, d.runs.map(drillRow)))
    out.push('<div class="charts">')
    for (const r of d.runs) if (r.series !== undefined) out.push(timelineSvg(r.series, r.events ?? [], `${d.scenario} / ${r.proxy}`))
    out.push('</div>')
  }
  const reg = results.registry
  if (reg !== undefined) out.push(`<h2>Registry drills (<code>npm run drill:registry</code>)</h2><p>${esc(registryIntro(reg))}</p>`, htmlTable(REGISTRY_HEAD, reg.runs.map(registryRow)))
  if (results.fleet !== undefined) out.push(fleetHtmlSection(results.fleet))
  if (results.sim !== undefined) out.push(simHtmlSection(results.sim))
  out.push('</body></html>\n')
  return out.join('\n')
}

export function renderMarkdown(results: Results): string {
  const out: string[] = ['# vigil: benchmark and drill summary', '', 'Written by `npm run bench` and `npm run drill` (to bench/out/, untracked) and kept by `npm run bench:keep`; charts in [report.html](report.html), raw figures in the JSON files beside it.', '']
  const t = results.throughput
  if (t !== undefined) {
    const load = t.machine.loadavg.map((l) => l.toFixed(1)).join(' ')
    const upstream = t.settings.upstream === undefined ? '' : `; upstream ${t.settings.upstream}`
    out.push('## Throughput', '', `Run ${runLabel(t)}: ${t.date}, ${t.machine.cpus} CPUs, Node ${t.machine.node}, load average before the run ${load}; median of ${t.settings.rounds} interleaved rounds of ${t.settings.duration} s at ${t.settings.connections} connections${upstream}.`, '')
    out.push(mdTable(THROUGHPUT_HEAD, throughputRows(t.summary)), '', throughputRatios(t.ratios), '')
    const marks = targetMarks(t.targets)
    if (marks.length > 0) out.push(`Targets: ${marks.map((m) => (m.includes('MISSED') ? `**${m}**` : m)).join('; ')}`, '')
    if (t.fixedRate !== undefined) out.push(fixedRateLine(t.fixedRate), '', mdTable(THROUGHPUT_HEAD, throughputRows(t.fixedRate.summary)), '')
    for (const n of t.notes) out.push(`- ${n}`)
  }
  if (results.h2 !== undefined) out.push(h2MarkdownSection(results.h2))
  if (results.drills.length > 0) out.push('## Fault drills', '', LEGEND.replace(/<\/?[bi]>/g, '').replace(/&gt;/g, '>').replace(/\s*\n\s*/g, ' '), '')
  for (const d of results.drills) {
    out.push(`### ${d.scenario}`, '', `${d.description}. ${d.date}; ${d.load.rate} req/s over ${d.load.connections} connections${machineNote(d)}.${mixedRunsNote(d) === '' ? '' : ` **${mixedRunsNote(d).trim()}**`}`, '', mdTable(DRILL_HEAD, d.runs.map(drillRow)), '')
  }
  const reg = results.registry
  if (reg !== undefined) out.push('## Registry drills (`npm run drill:registry`)', '', registryIntro(reg), '', mdTable(REGISTRY_HEAD, reg.runs.map(registryRow)), '')
  if (results.fleet !== undefined) out.push(fleetMarkdownSection(results.fleet))
  if (results.sim !== undefined) out.push(simMarkdownSection(results.sim))
  return `${out.join('\n')}\n`
}

/** Rewrite report.html and SUMMARY.md from every result file; resolves to the HTML path. */
export async function writeReport(dir = resultsDir): Promise<string> {
  const results = await readResults(dir)
  await writeFile(`${dir}report.html`, renderHtml(results))
  await writeFile(`${dir}SUMMARY.md`, renderMarkdown(results))
  return `${dir}report.html`
}
