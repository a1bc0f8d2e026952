// `npm run sim`: the fleet simulation, every fault × every strategy, deterministic for a seed. Writes
// bench/out/sim.json, sim.md (the table and the assumptions), sim.svg and sim.png (the chart), and rewrites the
// report (report.html, SUMMARY.md) with its section. Flags:
//   --big (issue 19's 10,000 consumers × 500 providers at 100 req/s, subset 20)
//   --consumers N --providers M --rate R --duration S --seed X --subset-size K --noise P
//   --faults kill,freeze --strategies probe-all,shared-obs  --no-png
import { parseArgs } from 'node:util'
import { writeFile } from 'node:fs/promises'
import { resultsDir, writeJson } from '../lib/results.js'
import { writeReport } from '../lib/report.js'
import { BIG, FAULTS, STRATEGIES, type Fault, type SimParams } from './model.js'
import { defaultParams, runAll } from './sim.js'
import { renderPng, simMarkdown, simSvg } from './report.js'

const { values } = parseArgs({
  options: {
    big: { type: 'boolean', default: false },
    consumers: { type: 'string' },
    providers: { type: 'string' },
    rate: { type: 'string' },
    duration: { type: 'string' },
    seed: { type: 'string' },
    'subset-size': { type: 'string' },
    noise: { type: 'string' },
    faults: { type: 'string', default: FAULTS.join(',') },
    strategies: { type: 'string', default: STRATEGIES.map((s) => s.name).join(',') },
    'no-png': { type: 'boolean', default: false },
  },
})

function num(flag: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n < min) throw new Error(`--${flag}: expected a number ≥ ${min}, found "${v}"`)
  return n
}

const overrides: Partial<SimParams> = { ...(values.big ? BIG : {}) }
const set = <K extends keyof SimParams>(k: K, v: SimParams[K] | undefined): void => {
  if (v !== undefined) overrides[k] = v
}
set('consumers', num('consumers', values.consumers, 1))
set('providers', num('providers', values.providers, 2))
set('rate', num('rate', values.rate, 0))
const seconds = num('duration', values.duration, 1)
set('duration', seconds === undefined ? undefined : seconds * 1000)
set('seed', num('seed', values.seed, 0))
set('subsetSize', num('subset-size', values['subset-size'], 1))
set('noise', num('noise', values.noise, 0))
const params = defaultParams(overrides)

const faults = values.faults.split(',').map((f) => {
  if (!(FAULTS as readonly string[]).includes(f)) throw new Error(`--faults: unknown fault "${f}" (known: ${FAULTS.join(', ')})`)
  return f as Fault
})
const strategies = values.strategies.split(',').map((name) => {
  const s = STRATEGIES.find((x) => x.name === name)
  if (s === undefined) throw new Error(`--strategies: unknown strategy "${name}" (known: ${STRATEGIES.map((x) => x.name).join(', ')})`)
  return s
})

const command = ['npm run sim', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ')
process.stderr.write(`sim: ${params.consumers} consumers × ${params.providers} providers, ${faults.length} faults × ${strategies.length} strategies, seed ${params.seed}\n`)
const doc = runAll(params, faults, strategies, command)
await writeJson(`${resultsDir}sim.json`, doc)
const svg = simSvg(doc)
await writeFile(`${resultsDir}sim.svg`, svg)
const png = !values['no-png'] && (await renderPng(svg, `${resultsDir}sim.png`))
const md = simMarkdown(doc, png ? 'sim.png' : 'sim.svg')
await writeFile(`${resultsDir}sim.md`, md)
await writeReport()
process.stdout.write(md)
process.stderr.write(`sim: ${(doc.wallMs / 1000).toFixed(1)} s; wrote ${resultsDir}sim.{json,md,svg${png ? ',png' : ''}} and the report\n`)
