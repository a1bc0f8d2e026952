// The fleet simulation's runs: every fault × every strategy on one set of parameters, as one result document.
import { readFileSync } from 'node:fs'
import { ms } from '../../src/config/duration.js'
import type { Active, Passive } from '../../src/config/schema.js'
import { root } from '../lib/procs.js'
import { simulate, type RunResult } from './fleet.js'
import { FAULTS, SIM_DEFAULTS, STRATEGIES, type Fault, type SimParams, type Strategy } from './model.js'

export interface SimDoc {
  kind: 'sim'
  date: string
  /** The command line that reproduces it. */
  command: string
  params: SimParams
  runs: RunResult[]
  wallMs: number
}

/** Every consumer's health settings: the drills' vigil-both fragment (passive + active HTTP checks, timeouts). */
export function vigilSettings(): Pick<SimParams, 'passive' | 'active' | 'timeouts'> {
  const f = JSON.parse(readFileSync(`${root}bench/peers/vigil-both.json`, 'utf8')) as { passive: Passive; active: Active; timeouts: { connect: string; response: string } }
  return { passive: f.passive, active: f.active, timeouts: { connect: ms(f.timeouts.connect), response: ms(f.timeouts.response) } }
}

export function defaultParams(overrides: Partial<SimParams> = {}): SimParams {
  return { ...SIM_DEFAULTS, ...vigilSettings(), ...overrides }
}

export function runAll(params: SimParams, faults: readonly Fault[] = FAULTS, strategies: readonly Strategy[] = STRATEGIES, command = 'npm run sim'): SimDoc {
  const started = performance.now()
  const runs: RunResult[] = []
  for (const fault of faults) for (const s of strategies) runs.push(simulate(params, fault, s))
  return { kind: 'sim', date: new Date().toISOString(), command, params, runs, wallMs: Math.round(performance.now() - started) }
}
