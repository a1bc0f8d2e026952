// The drill scenarios (issue 3's seven, and issue 15's partial and global) as fault scripts. Every duration comes from Timing so a full drill can
// be shortened (`npm run drill -- --scale 0.5`); the defaults are the (faults of 10 s, flap for 20 s).
import type { FaultStep } from './faults.js'

export interface Timing {
  /** Steady load before the first fault, ms. */
  before: number
  /** How long a fault lasts, ms. */
  fault: number
  /** Steady load after the repair, ms. */
  after: number
  /** flap: how long the provider flaps, and each half period. */
  flap: number
  flapHalf: number
  /** rolling: time between replacing two providers, and from a reload to stopping the old provider. */
  step: number
  settle: number
}

export const defaultTiming: Timing = { before: 5_000, fault: 10_000, after: 10_000, flap: 20_000, flapHalf: 1_000, step: 6_000, settle: 3_000 }

/** Every duration multiplied by `factor`, except flap's half period (1 s up / 1 s down is the fault itself). */
export function scaled(t: Timing, factor: number): Timing {
  const s = (ms: number) => Math.round(ms * factor)
  return { before: s(t.before), fault: s(t.fault), after: s(t.after), flap: s(t.flap), flapHalf: t.flapHalf, step: s(t.step), settle: s(t.settle) }
}

export const PROVIDERS = ['a', 'b', 'c'] as const
/** The group of the drills that judge a provider against the others (outlier detection needs five). */
export const FIVE = ['a', 'b', 'c', 'd', 'e'] as const
/** The provider every single-provider fault hits. */
export const FAULTY = 'b'

export interface Scenario {
  name: string
  description: string
  /** Load duration, ms. */
  duration(t: Timing): number
  steps(t: Timing): FaultStep[]
  /** /_control query applied to every provider before the load starts. */
  setup?: string
  /** Whether the faulty provider still counts what it receives while faulty. */
  counts: boolean
  /** The providers behind the proxy; PROVIDERS (three) unless said. */
  providers?: readonly string[]
  /** A gRPC drill: gRPC providers, gRPC load, the proxies that carry gRPC (bench/drill/run.ts grpcProxySpecs). */
  grpc?: boolean
}

export function providersOf(s: Scenario): readonly string[] {
  return s.providers ?? PROVIDERS
}

const window = (t: Timing) => t.before + t.fault + t.after

type Action = Pick<FaultStep, 'action' | 'arg'>

/** The faulty provider breaks after `before` and is repaired `fault` ms later. */
function faultFor(fault: Action, repair: Action): (t: Timing) => FaultStep[] {
  return (t) => [
    { ...fault, at: t.before, provider: FAULTY, mark: 'fault' },
    { ...repair, at: t.before + t.fault, provider: FAULTY, mark: 'repair' },
  ]
}

export const scenarios: readonly Scenario[] = [
  {
    name: 'kill',
    description: 'one provider SIGKILLed, restarted on the same port after the fault time',
    duration: window,
    steps: faultFor({ action: 'kill' }, { action: 'restart' }),
    counts: false,
  },
  {
    name: 'freeze',
    description: 'one provider SIGSTOPped (port open, nothing answers), SIGCONT after the fault time',
    duration: window,
    steps: faultFor({ action: 'freeze' }, { action: 'thaw' }),
    counts: false,
  },
  {
    name: 'errors',
    description: 'one provider answers 503 (and fails /healthz) for the fault time',
    duration: window,
    steps: faultFor({ action: 'control', arg: 'status=503' }, { action: 'control', arg: 'status=200' }),
    counts: true,
  },
  {
    name: 'slow',
    description: 'one provider adds 200 ms latency for the fault time (/healthz stays fast)',
    duration: window,
    steps: faultFor({ action: 'control', arg: 'delay=200' }, { action: 'control', arg: 'delay=0' }),
    counts: true,
  },
  {
    name: 'flap',
    description: 'one provider alternates 1 s answering 503 / 1 s healthy for the flap time',
    duration: (t) => t.before + t.flap + t.after,
    steps: (t) => {
      const steps: FaultStep[] = []
      for (let at = t.before; at < t.before + t.flap; at += 2 * t.flapHalf) {
        steps.push({ at, action: 'control', provider: FAULTY, arg: 'status=503', mark: 'fault' })
        steps.push({ at: at + t.flapHalf, action: 'control', provider: FAULTY, arg: 'status=200', mark: 'repair' })
      }
      return steps
    },
    counts: true,
  },
  {
    name: 'rolling',
    description: 'all three providers replaced one by one by new ones on new ports; the proxy reloaded for each step, the old provider stopped after a settle time',
    duration: (t) => t.before + PROVIDERS.length * t.step + t.after,
    steps: (t) =>
      PROVIDERS.flatMap((p, i): FaultStep[] => [
        { at: t.before + i * t.step, action: 'replace', provider: p, mark: 'fault' },
        { at: t.before + i * t.step + t.settle, action: 'retire', provider: p, mark: 'repair' },
      ]),
    counts: true,
  },
  {
    name: 'partial',
    description: 'one provider of five answers 20% of its requests with 503 for the fault time (an outlier: eject it)',
    duration: window,
    steps: faultFor({ action: 'control', arg: 'failPercent=20' }, { action: 'control', arg: 'failPercent=0' }),
    counts: true,
    providers: FIVE,
  },
  {
    name: 'global',
    description: 'all five providers answer 20% of their requests with 503 for the fault time (a shared dependency: eject nobody)',
    duration: window,
    // No fault mark: no provider is the faulty one, so any ejection is a false one.
    steps: (t) =>
      FIVE.flatMap((provider): FaultStep[] => [
        { at: t.before, action: 'control', provider, arg: 'failPercent=20' },
        { at: t.before + t.fault, action: 'control', provider, arg: 'failPercent=0' },
      ]),
    counts: true,
    providers: FIVE,
  },
  {
    name: 'noise',
    description: 'no fault: providers with 0-50 ms random latency, and the CPU saturated by busy processes for the fault time; any ejection is a false one',
    duration: window,
    setup: 'jitter=50',
    steps: (t) => [{ at: t.before, action: 'burn', arg: String(t.fault) }],
    counts: true,
  },
]

/** The gRPC variants of kill, freeze and errors: the same faults under unary gRPC calls (errors: UNAVAILABLE). */
const named = (name: string): Scenario => scenarios.find((s) => s.name === name) as Scenario
export const grpcScenarios: readonly Scenario[] = [
  { ...named('kill'), name: 'grpc-kill', description: 'gRPC: one provider SIGKILLed, restarted on the same port after the fault time', grpc: true },
  { ...named('freeze'), name: 'grpc-freeze', description: 'gRPC: one provider SIGSTOPped (port open, nothing answers), SIGCONT after the fault time', grpc: true },
  {
    name: 'grpc-errors',
    description: 'gRPC: one provider answers every call UNAVAILABLE (its health service stays SERVING) for the fault time',
    duration: window,
    steps: faultFor({ action: 'control', arg: 'fail=14' }, { action: 'control', arg: 'fail=0' }),
    counts: true,
    grpc: true,
  },
]

export function scenarioNamed(name: string): Scenario {
  const all = [...scenarios, ...grpcScenarios]
  const s = all.find((x) => x.name === name)
  if (s === undefined) throw new Error(`unknown scenario "${name}" (known: ${all.map((x) => x.name).join(', ')})`)
  return s
}
