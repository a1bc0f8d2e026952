// The fleet simulation's outputs: the table (markdown and HTML), a chart (SVG, and a PNG of it rendered by headless
// Chromium), the model's assumptions, and the section the drill report (bench/lib/report.ts) shows.
import { COLORS, esc, htmlTable, mdTable } from '../lib/tables.js'
import { FAULTS, FAULT_WORDS, STRATEGIES, type Fault } from './model.js'
import type { RunResult } from './fleet.js'
import type { SimDoc } from './sim.js'

/** What the model leaves out or simplifies; printed with every result and in bench/README.md. */
export const ASSUMPTIONS: readonly string[] = [
  'One fault, on one provider (P0), starting at t = 0 and lasting the whole run; no repair, so recovery is not measured. Before it, the fleet is in a steady state: every check passing, check phases spread uniformly, each pair’s last success drawn backwards from its Poisson rate.',
  'Each consumer sends `rate` requests per second as a Poisson process, spread evenly over the providers it uses (all, or its subset): per pair rate/M (or rate/size). A suspect server’s share drops to suspectWeight. Retries are not modelled: “failed” counts attempts the fault failed or stalled (with vigil’s retries most of them would be retried elsewhere at a latency cost).',
  'P0’s pairs are simulated request by request, check by check. The other (consumer, provider) pairs are healthy, and only their failures matter: a fleet-wide Poisson process of noise failures (probability `noise` per request) hits a random pair; the latest success before each failure is drawn backwards (for nginx/consecutive/window detectors, the only successes that can change a decision). Their checks pass and are counted analytically (probes/s per healthy provider), not simulated.',
  'Outcomes: kill → connects refused at once (checks too); freeze → requests hang until the response timeout, checks time out; partition → the one consumer’s connects and checks time out, the others are unaffected; degrade → 20% of requests and checks fail with 503 at once; registry → no provider fault, the registry refuses writes and sends no events for `outage` ms; registry+kill → both at once. Healthy answers take 1 ms.',
  'Stall detection: a request waiting stallFloor (200 ms, the floor: the group’s p99 × factor is assumed below it) makes the server suspect, under the cap; its waiting requests are raced elsewhere at once, and while it stays suspect one request at a time is let through after a quiet time of 250 ms doubling to 1 s (vigil’s stall trials, at the next request the consumer sends then).',
  'Recovery probes (vigil’s passive.recoveryProbe) run for connection-level ejections (refused, connect timeout, reset) with the group’s check at its fast interval; while they fail no trial request is let through. They count as probes to the faulty provider.',
  'Shared observations follow docs/fleet.md: a consumer writes its own transitions (ejected on its own evidence or down by its check → failing; restored/up → not) after a random wait up to writeJitter, the state at write time (a newer state replaces an unwritten one), again every window while it still sees the failure, deferred while the registry is down; a transition taken on the fleet’s word is not written (no echo). The per-vigil writeRate limit is not modelled (one server of interest writes far below it). Every watcher sees a write watchDelay later, with no per-watcher skew. Enough has been said (src/fleet/quorum.ts worthWriting, asked when a write’s turn comes, after its jitter, as vigil’s writer does): a failing write is skipped (suppressed) while the consumer sees at least quorum + writeMargin (half the quorum, at least 1) other failing reports within window, and its restatements follow the same rule; a held-back failure is written once it sees them too few (after each write it sees, and each second) while it still sees the failure; an end is written only to take back a failing record; a shared-checks checker always writes. Observers do not leave (no consumer churn or lease expiry), so what makes the count drop is reports ageing out or being taken back. Quorum: vigil’s default max(2, 10% of the consumers that use the server: all N, or under subsetting those whose subset holds it), other observers whose report is within window. At quorum each consumer decides with the rule of src/fleet/quorum.ts (restated over counts in bench/sim/quorum-stub.ts): its last outcome within localWindow a success, and fewer than quorum of the reported failures began after it (a failure’s start: its observer’s first failing write, in 100 ms buckets) → ignored; no request within localWindow → ejected on the fleet’s word (under the cap), ended at once when the quorum goes; otherwise suspect (weight × suspectWeight, checked at once). It decides again after each of its own outcomes while the quorum holds. Noise ejections of healthy providers are counted as writes; their quorum is not evaluated (far below it).',
  'Shared checks follow docs/fleet.md: each server is checked by k consumers, the highest rendezvous scores (vigil’s string hash of consumer and server); a non-checker takes it down when a strict majority of them (src/fleet/share-checks.ts checkMajority: 2 of 2, 2 of 3) have reported it down by check within window, and up when they no longer do; a minority report makes vigil’s non-checkers verify with their own checks, which is not modelled (they keep their state and do not probe), nor are k = 1’s local corroboration and local success winning over check results; it keeps its passive health and recovery probes. With the registry away, checkers keep checking and the others keep the last state they read.',
  'The partitioned consumer is the worst case for the strategy: consumer 0 (its subset holds P0), or P0’s first checker when checks are shared.',
  'Traffic-aware probing is vigil’s own skipCheck (health/active.ts, active.trafficInterval): a due check of an up, settled server that answered a real request within trafficInterval, and was checked within it, waits (until trafficInterval since its last check, or the next interval); rechecks after a counted failure always run. The subset rotation’s standby servers (src/upstream/subset-rotation.ts) are not modelled. Probes/s per healthy provider is computed from the schedule (a renewal average of trafficInterval and interval by the chance of a success within trafficInterval).',
  'Detection: the first moment a consumer stops sending to P0 (ejected, suspect, down by its check or by shared evidence), from t = 0; p50/p99 over the consumers the fault concerns (all that use P0; the partitioned one only); “never” when more than the quantile’s share did not by the end. False ejections: a healthy provider (or, in the partition, P0 by a consumer that reaches it) taken out by any consumer, counted per episode.',
]

export const SIM_HEAD = ['fault', 'strategy', 'consumers of P0', 'probes/s per healthy provider', 'probes/s to faulty', 'failed requests', 'sent to faulty', 'detected', 'detection p50', 'detection p99', 'false ejections', 'shared decisions', 'registry writes', 'writes suppressed', 'writes peak/s']

const secs = (ms: number | null): string => (ms === null ? 'never' : `${(ms / 1000).toFixed(2)} s`)
const rate = (n: number): string => (n >= 100 ? Math.round(n).toString() : n >= 1 ? n.toFixed(1) : n.toFixed(2))

export function simRows(runs: readonly RunResult[]): string[][] {
  return runs.map((r) => {
    const concerned = r.affected > 0
    return [
      r.fault,
      r.strategy,
      String(r.watchers),
      rate(r.probesPerProvider),
      r.affected === 0 ? '-' : rate(r.probesFaulty),
      String(r.failed),
      String(r.sentToFaulty),
      concerned ? `${r.detected}/${r.affected}` : '-',
      concerned ? secs(r.detectP50) : '-',
      concerned ? secs(r.detectP99) : '-',
      String(r.falseEjections),
      String(r.sharedDecisions),
      String(r.registryWrites),
      String(r.suppressedWrites),
      String(r.writesPeak),
    ]
  })
}

export function paramsLine(d: SimDoc): string {
  const p = d.params
  const f = p.fleet
  return (
    `${p.consumers} consumers × ${p.providers} providers, ${p.rate} req/s per consumer, ${p.duration / 1000} s of fault, seed ${p.seed}; ` +
    `noise ${p.noise * 100}% of requests; subset size ${p.subsetSize}; trafficInterval ${p.trafficInterval / 1000} s; ` +
    `fleet (docs/fleet.md): quorum ${f.quorum ?? `max(2, 10% of ${p.consumers})`} within window ${f.window / 1000} s, localWindow ${f.localWindow / 1000} s, writeJitter ${f.writeJitter} ms, watch delay ${f.watchDelay} ms, shareChecks k = ${f.checkers}; registry outage ${p.outage / 1000} s. ` +
    `Health settings: bench/peers/vigil-both.json (passive ${JSON.stringify(p.passive)}, active ${JSON.stringify(p.active)}, timeouts ${JSON.stringify(p.timeouts)}). ` +
    `${d.runs.length} runs in ${(d.wallMs / 1000).toFixed(1)} s of wall time (${d.date}).`
  )
}

const FAULT_ORDER = (f: Fault): number => FAULTS.indexOf(f)

/** Grouped bars per fault, one colour per strategy, log scales: detection p99, failed requests, probes per healthy provider. */
export function simSvg(d: SimDoc): string {
  const W = 980
  const PH = 210
  const L = 64
  const R = 10
  const top = 40
  const faults = [...new Set(d.runs.map((r) => r.fault))].sort((a, b) => FAULT_ORDER(a) - FAULT_ORDER(b))
  const strategies = STRATEGIES.map((s) => s.name).filter((n) => d.runs.some((r) => r.strategy === n))
  const run = (f: Fault, s: string) => d.runs.find((r) => r.fault === f && r.strategy === s)
  const short = (v: number) => (v >= 1 ? String(Math.round(v)) : String(v))
  const panels: { title: string; value: (r: RunResult) => number | null | undefined; unit: (v: number) => string; skip?: (f: Fault) => boolean }[] = [
    { title: 'detection p99 across consumers, s (log scale; ∞: more than 1% never took it out)', value: (r) => (r.affected === 0 ? undefined : r.detectP99 === null ? null : r.detectP99 / 1000), unit: short, skip: (f) => f === 'registry' },
    { title: 'failed requests, fleet-wide (log scale)', value: (r) => (r.affected === 0 ? undefined : r.failed), unit: short, skip: (f) => f === 'registry' },
    { title: 'probes per second per healthy provider (log scale)', value: (r) => r.probesPerProvider, unit: short },
  ]
  const H = top + panels.length * (PH + 30) + 10
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="fleet simulation" font-family="system-ui,sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${L}" y="16" font-size="13" font-weight="bold">${esc(`vigil fleet simulation: ${d.params.consumers} consumers × ${d.params.providers} providers, seed ${d.params.seed}`)}</text>`,
  ]
  strategies.forEach((s, i) => {
    const x = L + i * 130
    parts.push(`<rect x="${x}" y="24" width="12" height="8" fill="${COLORS[i % COLORS.length]}"/><text x="${x + 16}" y="32" font-size="11">${esc(s)}</text>`)
  })
  const groupW = (W - L - R) / faults.length
  const barW = (groupW * 0.8) / strategies.length
  panels.forEach((panel, k) => {
    const y0 = top + k * (PH + 30) + 18
    const bottom = y0 + PH - 20
    const values = d.runs.map(panel.value).filter((v): v is number => typeof v === 'number' && v > 0)
    const max = Math.max(1, ...values)
    // A decade below the smallest value, so the smallest bar still shows.
    const lo = Math.floor(Math.log10(Math.min(max, ...values) / 2))
    const hi = Math.ceil(Math.log10(max))
    const y = (v: number) => bottom - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / Math.max(1, hi - lo)) * (PH - 40)
    parts.push(`<text x="${L}" y="${y0}" font-size="12" font-weight="bold">${esc(panel.title)}</text>`)
    parts.push(`<line x1="${L}" y1="${bottom}" x2="${W - R}" y2="${bottom}" stroke="#999"/><line x1="${L}" y1="${y0 + 10}" x2="${L}" y2="${bottom}" stroke="#999"/>`)
    const ticks = Array.from({ length: hi - lo + 1 }, (_, i) => Number((10 ** (lo + i)).toPrecision(1)))
    for (const v of ticks) parts.push(`<text x="${L - 4}" y="${y(v) + 4}" font-size="10" text-anchor="end">${esc(panel.unit(v))}</text>`)
    faults.forEach((f, g) => {
      const gx = L + g * groupW + groupW * 0.1
      parts.push(`<text x="${gx + groupW * 0.4}" y="${bottom + 14}" font-size="11" text-anchor="middle">${esc(f)}</text>`)
      if (panel.skip?.(f) === true) {
        parts.push(`<text x="${gx + groupW * 0.4}" y="${bottom - 10}" font-size="10" text-anchor="middle" fill="#888">no faulty provider</text>`)
        return
      }
      strategies.forEach((s, i) => {
        const r = run(f, s)
        if (r === undefined) return
        const v = panel.value(r)
        if (v === undefined) return
        const x = gx + i * barW
        const color = COLORS[i % COLORS.length] as string
        const label = `${f} / ${s}: ${v === null ? 'never (more than 1% did not detect)' : panel.unit(v)}`
        if (v === null) {
          parts.push(`<rect x="${x.toFixed(1)}" y="${y0 + 12}" width="${(barW - 1).toFixed(1)}" height="${(bottom - y0 - 12).toFixed(1)}" fill="${color}" fill-opacity="0.25" stroke="${color}" stroke-dasharray="3 2"><title>${esc(label)}</title></rect>`)
          parts.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${y0 + 24}" font-size="10" text-anchor="middle">∞</text>`)
          return
        }
        const yy = y(v)
        parts.push(`<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${Math.max(0.5, bottom - yy).toFixed(1)}" fill="${color}"><title>${esc(label)}</title></rect>`)
      })
    })
  })
  parts.push('</svg>')
  return parts.join('')
}

export function simMarkdown(d: SimDoc, png?: string): string {
  const out = [
    '# vigil fleet simulation',
    '',
    `Reproduce: \`${d.command}\`. ${paramsLine(d)}`,
    '',
    ...FAULTS.filter((f) => d.runs.some((r) => r.fault === f)).map((f) => `- **${f}**: ${FAULT_WORDS[f]}`),
    '',
    mdTable(SIM_HEAD, simRows(d.runs)),
    '',
  ]
  if (png !== undefined) out.push(`![fleet simulation](${png})`, '')
  out.push('## Model assumptions', '', ...ASSUMPTIONS.map((a) => `- ${a}`), '')
  return out.join('\n')
}

/** The section of the drill report (report.html): the same table, the chart inline, the assumptions. */
export function simHtmlSection(d: SimDoc): string {
  return [
    `<h2>Fleet simulation (<code>${esc(d.command)}</code>)</h2>`,
    `<p>${esc(paramsLine(d))}</p>`,
    `<ul>${FAULTS.filter((f) => d.runs.some((r) => r.fault === f)).map((f) => `<li><b>${f}</b>: ${esc(FAULT_WORDS[f])}</li>`).join('')}</ul>`,
    htmlTable(SIM_HEAD, simRows(d.runs)),
    simSvg(d),
    `<details><summary>Model assumptions</summary><ul>${ASSUMPTIONS.map((a) => `<li>${esc(a)}</li>`).join('')}</ul></details>`,
  ].join('\n')
}

export function simMarkdownSection(d: SimDoc): string {
  return simMarkdown(d).replace(/^# vigil fleet simulation/, '## Fleet simulation (`npm run sim`)').replace(/^## Model assumptions/m, '### Model assumptions')
}

const CHROMIUM = '/usr/bin/chromium'
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync']

/** The chart as a PNG, rendered by headless Chromium (playwright-core); resolves to false when there is no browser. */
export async function renderPng(svg: string, path: string): Promise<boolean> {
  const { chromium } = await import('playwright-core')
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, timeout: 60_000 }).catch(() => undefined)
  if (browser === undefined) return false
  try {
    const page = await browser.newPage({ deviceScaleFactor: 2 })
    await page.setContent(`<!doctype html><html><body style="margin:0">${svg}</body></html>`)
    await page.locator('svg').first().screenshot({ path })
    return true
  } finally {
    await browser.close()
  }
}
