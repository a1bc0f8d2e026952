// The HTTP/2 bench's rows (bench/h2-throughput.ts) as the report shows them: one table over both workloads
// (plain HTTP/2 GETs and gRPC unary calls), with vigil's ratios to direct and to nginx beneath.
import { esc, htmlTable, mdTable } from './tables.js'
import { runLabel } from './results.js'

export interface H2Doc {
  kind: 'h2-throughput'
  date: string
  run?: string
  scale?: number
  machine?: { cpus: number; node: string; loadavg: number[] }
  settings?: { rounds: number; duration: number; clients: number; streams: number; tool: string }
  summary?: { workload: string; target: string; rps: number; meanMs: number; failed: number; cpuUs?: number; upstreamCpuUs?: number }[]
  ratios?: { workload: string; vigilOverDirect?: number; vigilOverNginx?: number; vigilCpuOverNginx?: number }[]
  notes: string[]
}

export const H2_HEAD = ['workload', 'target', 'req/s', 'mean ms', 'failed', 'CPU µs/request', 'upstream CPU µs/request']

const n1 = (x: number | undefined): string => (x === undefined ? '-' : x.toFixed(1))
const x2 = (x: number | undefined): string => (x === undefined ? '-' : `${x.toFixed(2)}x`)

export function h2Rows(d: H2Doc): string[][] {
  return (d.summary ?? []).map((r) => [r.workload, r.target, String(Math.round(r.rps)), r.meanMs.toFixed(2), String(r.failed), n1(r.cpuUs), n1(r.upstreamCpuUs)])
}

function intro(d: H2Doc): string {
  const s = d.settings
  const how = s === undefined ? '' : `; ${s.tool}, ${s.clients} connections × ${s.streams} streams, median of ${s.rounds} rounds of ${s.duration} s`
  const load = d.machine === undefined ? '' : `; ${d.machine.cpus} CPUs, load average before the run ${d.machine.loadavg.map((l) => l.toFixed(1)).join(' ')}`
  return `Run ${runLabel(d)}: ${d.date}${how}${load}.`
}

const ratioLines = (d: H2Doc): string[] =>
  (d.ratios ?? []).map((r) => `${r.workload}: vigil/direct req/s ${x2(r.vigilOverDirect)}, vigil/nginx req/s ${x2(r.vigilOverNginx)}, CPU per request vigil/nginx ${x2(r.vigilCpuOverNginx)}`)

export function h2MarkdownSection(d: H2Doc): string {
  return ['## HTTP/2 and gRPC throughput (`npm run bench:h2`)', '', intro(d), '', mdTable(H2_HEAD, h2Rows(d)), '', ...[...ratioLines(d), ...d.notes].map((l) => `- ${l}`), ''].join('\n')
}

export function h2HtmlSection(d: H2Doc): string {
  return `<h2>HTTP/2 and gRPC throughput (<code>npm run bench:h2</code>)</h2><p>${esc(intro(d))}</p>${htmlTable(H2_HEAD, h2Rows(d))}<p>${[...ratioLines(d), ...d.notes].map(esc).join('<br>')}</p>`
}
