// What the fleet simulation is run with: the faults, the strategies, the fleet's size and load, and the health
// settings of every vigil in it (the drills' `vigil-both` fragment, read by vigil's own resolvers).
import type { Active, Passive } from '../../src/config/schema.js'

export type Fault = 'kill' | 'freeze' | 'partition' | 'degrade' | 'registry' | 'registry+kill'

export const FAULTS: readonly Fault[] = ['kill', 'freeze', 'partition', 'degrade', 'registry', 'registry+kill']

export const FAULT_WORDS: Record<Fault, string> = {
  kill: 'a provider dies (connects refused at once)',
  freeze: 'a provider freezes (accepts, never answers)',
  partition: 'a provider is partitioned from one consumer only (its connects time out)',
  degrade: 'a provider degrades (20% of requests and checks fail with 503)',
  registry: 'the registry is down (no provider fault)',
  'registry+kill': 'the registry is down and a provider dies at the same time (what shared evidence is worth when it cannot be shared)',
}

/** How the faulty provider behaves in a fault. */
export function providerFault(f: Fault): 'kill' | 'freeze' | 'partition' | 'degrade' | undefined {
  return f === 'registry+kill' ? 'kill' : f === 'registry' ? undefined : f
}

/** Whether the registry is down (for `outage` ms from the fault's start). */
export const registryOutage = (f: Fault): boolean => f === 'registry' || f === 'registry+kill'

/** How the consumers of one fleet watch their providers. Every strategy keeps vigil's passive health. */
export interface Strategy {
  name: string
  /** A server that answered real requests within `trafficInterval` is probed at `trafficInterval`. */
  trafficAware: boolean
  /** Each consumer uses a stable subset of `subsetSize` providers. */
  subset: boolean
  /** Transitions are written to the registry; a quorum of observers is evidence for the others. */
  shareObservations: boolean
  /** Each provider is checked by `fleet.checkers` consumers chosen by rendezvous hashing; the others read their results. */
  shareChecks: boolean
}

export const STRATEGIES: readonly Strategy[] = [
  { name: 'probe-all', trafficAware: false, subset: false, shareObservations: false, shareChecks: false },
  { name: 'traffic-aware', trafficAware: true, subset: false, shareObservations: false, shareChecks: false },
  { name: 'subset', trafficAware: false, subset: true, shareObservations: false, shareChecks: false },
  { name: 'shared-obs', trafficAware: false, subset: false, shareObservations: true, shareChecks: false },
  { name: 'shared-checks', trafficAware: false, subset: false, shareObservations: true, shareChecks: true },
  { name: 'combined', trafficAware: true, subset: true, shareObservations: true, shareChecks: true },
]

/** The fleet settings (docs/fleet.md), with the defaults vigil documents; `checkers` is shareChecks.k. */
export interface FleetRules {
  /** Observers (other than the consumer itself) that must report a server failing; undefined: max(2, 10% of the consumers). */
  quorum: number | undefined
  /** A report older than this is not evidence; an observer that still sees the failure says it again every window, ms. */
  window: number
  /** What "recent" means for a consumer's own traffic to a server, ms. */
  localWindow: number
  /** Each write waits a random time up to this first, ms. */
  writeJitter: number
  /** From a registry write to every watcher seeing it, ms. */
  watchDelay: number
  /** shareChecks.k: how many consumers check each server; the others are down when a strict majority of them report down. */
  checkers: number
  /** Share of its weight a suspect server keeps. */
  suspectWeight: number
}

export interface SimParams {
  seed: number
  consumers: number
  providers: number
  /** Requests per second each consumer sends, spread evenly over the providers it uses. */
  rate: number
  /** Simulated time from the fault's start, ms. */
  duration: number
  /** How long the registry is down in the `registry` fault, ms (from the fault's start). */
  outage: number
  /** Failure probability of any request to a healthy provider (resets, transient 5xx). */
  noise: number
  /** Failure probability of a request or check to the degraded provider. */
  degradeErrors: number
  subsetSize: number
  trafficInterval: number
  fleet: FleetRules
  passive: Passive
  active: Active
  timeouts: { connect: number; response: number }
}

export const FLEET_DEFAULTS: FleetRules = {
  quorum: undefined,
  window: 30_000,
  localWindow: 10_000,
  writeJitter: 1_000,
  watchDelay: 50,
  // docs/fleet.md's example: with k = 2 one checker's report is half of them.
  checkers: 2,
  suspectWeight: 0.1,
}

/** `npm run sim` without flags: small enough to finish in well under a minute on a loaded 2-core machine. */
export const SIM_DEFAULTS: Omit<SimParams, 'passive' | 'active' | 'timeouts'> = {
  seed: 1,
  consumers: 1_000,
  providers: 100,
  rate: 20,
  duration: 60_000,
  outage: 30_000,
  noise: 0.001,
  degradeErrors: 0.2,
  subsetSize: 10,
  trafficInterval: 30_000,
  fleet: FLEET_DEFAULTS,
}

/** The big run of issue 19 (`npm run sim -- --big`). */
export const BIG: Partial<SimParams> = { consumers: 10_000, providers: 500, rate: 100, subsetSize: 20 }
