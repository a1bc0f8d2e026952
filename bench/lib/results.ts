// Where results go and the small numeric helpers every result uses.
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { root } from './procs.js'

/**
 * Where a run writes: bench/out/ (not tracked, so a run never dirties the tree), or BENCH_RESULTS_DIR (the test
 * suite writes to a temp dir). Results become part of the repository only by `npm run bench:keep`.
 */
export const resultsDir = process.env['BENCH_RESULTS_DIR'] !== undefined ? `${process.env['BENCH_RESULTS_DIR'].replace(/\/$/, '')}/` : `${root}bench/out/`

/** The committed results: bench/results/, written only by `npm run bench:keep`. */
export const keptDir = `${root}bench/results/`

/** What labels every row of a run: when the invocation started, and the scale of its durations. */
export interface RunLabel {
  /** ISO time the invocation started; every row it wrote carries it. */
  run: string
  /** Multiplier of the default durations (drill --scale; throughput duration/5 s). */
  scale: number
}

/** The short form for tables: "2026-12-01 10:20 ×0.5". */
export function runLabel(l: Partial<RunLabel>): string {
  if (l.run === undefined) return 'earlier run'
  return `${l.run.slice(0, 16).replace('T', ' ')}${l.scale === undefined || l.scale === 1 ? '' : ` ×${l.scale}`}`
}

export async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`)
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** One measured run of a target in a bench round, with the CPU time it cost. */
export interface MeasuredRound {
  target: string
  round: number
  /** CPU time per request (µs) of the proxy's processes; undefined for direct or without /proc. */
  cpuUs: number | undefined
  /** CPU time per request (µs) of the upstream's processes. */
  upstreamCpuUs: number | undefined
}

/** The median of the values that are known; undefined when none is. */
export function medianKnown(values: readonly (number | undefined)[]): number | undefined {
  const known = values.filter((v): v is number => v !== undefined)
  return known.length === 0 ? undefined : median(known)
}

/** Nearest-rank quantile (q in [0, 1]) of unsorted values; 0 for an empty list. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number
}
