// One drill run: three (or five) provider processes, one proxy in front of them, steady autocannon load, the scenario's
// fault script on the same clock, and the figures the issue asks for.
import { runGrpcLoad } from '../lib/grpc-load.js'
import { runLoad, type LoadOptions } from '../lib/load.js'
import { startProxy, unavailable, type Propagation, type ProxySpec, type ProxyUnderTest } from '../lib/proxies.js'
import { grpcProviderScript, sleep } from '../lib/procs.js'
import { inject, type FaultEvent } from './faults.js'
import { ProviderSet } from './providers.js'
import { providersOf, type Scenario, type Timing } from './scenarios.js'
import {
  BUCKET,
  ClientRecorder,
  ProviderRecorder,
  clientFigures,
  detection,
  falseEjections,
  recoveryTime,
  series,
  type ClientFigures,
  type FaultWindow,
  type Series,
} from './timeline.js'

export interface LoadShape {
  /** Requests per second, all connections together. */
  rate: number
  connections: number
  /** autocannon's per-request timeout, seconds. */
  timeout: number
}

/** Between starting a proxy and the load: time for first health checks, the same for every proxy. */
export const WARM = 1_500

/** autocannon instances started 100 ms apart, so the load is even at the timeline's 100 ms resolution. */
const SPREAD = 10

export const defaultLoad: LoadShape = { rate: 200, connections: 20, timeout: 5 }

export interface RunResult {
  proxy: string
  status: 'ok' | 'skipped' | 'failed'
  note?: string
  client?: ClientFigures
  /** Fault → faulty provider out of rotation, ms (worst window); null: not within the fault. */
  detectMs?: number | null
  /** Requests sent to the faulty provider during its faults after it was out of rotation (all windows). */
  leaked?: number
  /** Repair → it gets traffic again for good, ms (worst window); null: never. */
  recoverMs?: number | null
  /** Fault windows detected / all windows. */
  detected?: string
  falseEjections?: number
  /** Share of all provider traffic the faulty provider received during its fault windows. */
  faultyShare?: number
  events?: FaultEvent[]
  series?: Series
  duration?: number
  /** vigil with workers: the primary's decisions until every worker applied them (target: within 100 ms). */
  propagation?: Propagation
  /** Which invocation wrote this row and at what scale (see RunLabel); absent in results from before labels. */
  run?: string
  scale?: number
}

/** Pair each fault mark with the next repair of the same provider. */
export function faultWindows(events: readonly FaultEvent[], end: number, counts: boolean): (FaultWindow & { replacement?: string })[] {
  const windows: (FaultWindow & { replacement?: string })[] = []
  for (const [i, e] of events.entries()) {
    if (e.mark !== 'fault' || e.provider === undefined) continue
    const repair = events.slice(i + 1).find((r) => r.mark === 'repair' && r.provider === e.provider)
    const next = events.slice(i + 1).find((r) => r.mark === 'fault' && r.provider === e.provider)
    // A repair counts from when it was done: a restarted provider is repaired once it listens again.
    windows.push({ provider: e.provider, fault: e.ran, repair: repair?.done ?? end, until: next?.ran ?? end, counts, replacement: e.replacement })
  }
  return windows
}

function worst(values: readonly (number | undefined)[]): number | null | undefined {
  if (values.length === 0) return undefined
  if (values.some((v) => v === undefined)) return null
  return Math.max(...(values as number[]))
}

export function analyse(scenario: Scenario, events: readonly FaultEvent[], clients: ClientRecorder, providers: ProviderRecorder, end: number): Omit<RunResult, 'proxy' | 'status'> {
  const windows = faultWindows(events, end, scenario.counts)
  const detections = windows.map((w) => detection(w, providers, clients))
  // A replaced provider recovers when its replacement gets traffic, measured from the reload.
  const recoveries = windows.map((w) =>
    w.replacement === undefined ? recoveryTime(w, providers) : recoveryTime({ ...w, provider: w.replacement, repair: w.fault, until: end }, providers),
  )
  const names = [...providers.buckets.keys()]
  const faulty = new Set(windows.map((w) => w.provider))
  const healthy = [...providersOf(scenario), ...windows.flatMap((w) => (w.replacement === undefined ? [] : [w.replacement]))].filter((n) => !faulty.has(n))
  let faultyTraffic = 0
  let allTraffic = 0
  for (const w of windows) {
    faultyTraffic += providers.total(w.provider, w.fault, w.repair)
    for (const n of names) allTraffic += providers.total(n, w.fault, w.repair)
  }
  // Ejections are judged after the first second (pools warming up) and before the last one.
  const from = 1_000
  const to = end - BUCKET * 5
  return {
    client: clientFigures(clients),
    detectMs: worst(detections.map((d) => d.after)),
    leaked: windows.length === 0 ? undefined : detections.reduce((n, d) => n + (d.leaked ?? 0), 0),
    recoverMs: worst(recoveries),
    detected: windows.length === 0 ? undefined : `${detections.filter((d) => d.after !== undefined).length}/${windows.length}`,
    // In `rolling` every provider is replaced on purpose and replacements start mid-run: nothing to judge.
    falseEjections: scenario.name === 'rolling' ? undefined : falseEjections(healthy, providers, from, to),
    faultyShare: windows.length === 0 || allTraffic === 0 ? undefined : faultyTraffic / allTraffic,
    events: [...events],
    series: series(clients, providers, end),
    duration: end,
  }
}

/** Run `scenario` against the proxy `spec`; a proxy that is not installed is skipped with a note. */
export async function runScenario(scenario: Scenario, spec: ProxySpec, timing: Timing, load: LoadShape = defaultLoad): Promise<RunResult> {
  const missing = await unavailable(spec)
  if (missing !== undefined) return { proxy: spec.name, status: 'skipped', note: missing }
  const providers = new ProviderSet(scenario.grpc === true ? grpcProviderScript : undefined)
  let proxy: ProxyUnderTest | undefined
  try {
    for (const name of providersOf(scenario)) await providers.start(name)
    if (scenario.setup !== undefined) await providers.controlAll(scenario.setup)
    proxy = await startProxy(spec, providers.servers())
    const running = proxy
    providers.onReplace = (servers) => running.reload(servers)
    await sleep(WARM)
    const duration = scenario.duration(timing)
    const origin = Date.now()
    const clients = new ClientRecorder(origin, load.timeout * 1_000)
    const counts = new ProviderRecorder(origin)
    providers.sink = counts
    const shape = {
      connections: load.connections,
      rate: load.rate,
      duration: duration / 1_000,
      timeout: load.timeout,
      spread: SPREAD,
      onResponse: (status: number, latency: number) => clients.response(status, latency),
      onError: (err: Error) => clients.error(err),
    } satisfies Omit<LoadOptions, 'url'>
    const [, events] = await Promise.all([
      scenario.grpc === true
        ? runGrpcLoad({ ...shape, target: `127.0.0.1:${proxy.port}` })
        : runLoad({ ...shape, url: `http://127.0.0.1:${proxy.port}/` }),
      inject(scenario.steps(timing), providers, origin),
    ])
    await sleep(BUCKET * 3) // the providers' last counter lines
    const propagation = await proxy.propagation?.()
    return { proxy: spec.name, status: 'ok', ...analyse(scenario, events, clients, counts, duration), propagation }
  } catch (err) {
    return { proxy: spec.name, status: 'failed', note: (err as Error).message }
  } finally {
    await proxy?.stop()
    await providers.stopAll()
  }
}
