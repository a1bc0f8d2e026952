// The fault injector: a script of timed actions against the drill's providers and proxy, run on one clock,
// with the time each action really happened recorded (the machine is shared, a step can be late).

export type FaultAction = 'kill' | 'restart' | 'freeze' | 'thaw' | 'control' | 'replace' | 'retire' | 'burn'

export interface FaultStep {
  /** Planned time, ms after the load started. */
  at: number
  action: FaultAction
  provider?: string
  /** For `control`: the /_control query, e.g. "status=503". For `burn`: how long, ms. */
  arg?: string
  /** Marks the start of a fault or its repair on the charts and for detection/recovery times. */
  mark?: 'fault' | 'repair'
}

export interface FaultEvent extends FaultStep {
  /** When the action ran, ms after the load started. */
  ran: number
  /** When it had finished (a restarted provider listens again), ms after the load started. */
  done: number
  /** What the action reported (a reload's outcome, a replacement's name). */
  note?: string
  /** For `replace`: the provider that took over. */
  replacement?: string
}

/** The world the injector acts on; bench/drill/providers.ts implements it with real processes. */
export interface FaultTarget {
  kill(provider: string): Promise<void>
  restart(provider: string): Promise<void>
  freeze(provider: string): Promise<void>
  thaw(provider: string): Promise<void>
  control(provider: string, query: string): Promise<void>
  /** Start a new provider, point the proxy at it instead of `provider`; resolves to its name and what the proxy did. */
  replace(provider: string): Promise<{ replacement: string; note: string }>
  /** Stop a provider that was replaced (gracefully). */
  retire(provider: string): Promise<void>
  /** Saturate the CPU for `ms` (does not wait for it to end). */
  burn(ms: number): Promise<void>
}

export interface Clock {
  now(): number
  sleep(ms: number): Promise<void>
}

export const realClock: Clock = { now: Date.now, sleep: (ms) => new Promise((r) => setTimeout(r, ms)) }

/** Run `steps` in time order, each at `origin + at` (or as soon after as possible). */
export async function inject(steps: readonly FaultStep[], target: FaultTarget, origin: number, clock: Clock = realClock): Promise<FaultEvent[]> {
  const events: FaultEvent[] = []
  for (const step of [...steps].sort((a, b) => a.at - b.at)) {
    const wait = origin + step.at - clock.now()
    if (wait > 0) await clock.sleep(wait)
    const event: FaultEvent = { ...step, ran: clock.now() - origin, done: 0 }
    const p = step.provider ?? ''
    switch (step.action) {
      case 'kill':
        await target.kill(p)
        break
      case 'restart':
        await target.restart(p)
        break
      case 'freeze':
        await target.freeze(p)
        break
      case 'thaw':
        await target.thaw(p)
        break
      case 'control':
        await target.control(p, step.arg ?? '')
        break
      case 'replace': {
        const { replacement, note } = await target.replace(p)
        event.replacement = replacement
        event.note = note
        break
      }
      case 'retire':
        await target.retire(p)
        break
      case 'burn':
        await target.burn(Number(step.arg ?? 0))
        break
    }
    event.done = clock.now() - origin
    events.push(event)
  }
  return events
}
