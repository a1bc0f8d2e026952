// What the html status page remembers between two loads: the last health transitions (with their evidence),
// and every server's request and failure counters sampled on a timer, for its small chart. Kept per
// upstream/address, so a server that stays through a reload keeps its history; removed servers are dropped.
import type { Upstream } from '../upstream/upstream.js'
import type { HealthEvent, HealthEvents } from '../health/events.js'

/** One bar of a server's chart covers this long; the chart shows SAMPLES of them (5 minutes). */
export const SAMPLE_EVERY = 10_000
export const SAMPLES = 30
/** Transitions kept, over all upstreams (the page shows the latest of each). */
const TRANSITIONS = 200

export interface Transition extends HealthEvent {
  /** Epoch ms it was reported. */
  at: number
}

/** Requests and failures in one SAMPLE_EVERY interval, oldest first; the last one is the interval running now. */
export interface Bar {
  requests: number
  failures: number
}

interface Series {
  /** Cumulative counters at the end of each finished interval, oldest first. */
  requests: number[]
  failures: number[]
}

const keyOf = (upstream: string, address: string): string => `${upstream}/${address}`

export class StatusHistory {
  private readonly transitions: Transition[] = []
  private series = new Map<string, Series>()
  private timer: NodeJS.Timeout | undefined

  constructor(
    events: HealthEvents,
    private readonly upstreams: () => ReadonlyMap<string, Upstream>,
    private readonly now: () => number = Date.now,
  ) {
    events.on('health', (e) => {
      this.transitions.push({ ...e, at: this.now() })
      if (this.transitions.length > TRANSITIONS) this.transitions.splice(0, this.transitions.length - TRANSITIONS)
    })
  }

  start(): void {
    this.sample()
    this.timer = setInterval(() => this.sample(), SAMPLE_EVERY)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  /** Close one interval for every live server (exported for tests, which cannot wait 10 s per bar). */
  sample(): void {
    const next = new Map<string, Series>()
    for (const u of this.upstreams().values()) {
      for (const p of u.peers) {
        const key = keyOf(u.name, p.address)
        const s = this.series.get(key) ?? { requests: [], failures: [] }
        s.requests.push(p.requests)
        s.failures.push(p.failures)
        // One more than the bars: the first sample is the base the oldest bar is measured from.
        if (s.requests.length > SAMPLES) {
          s.requests.shift()
          s.failures.shift()
        }
        next.set(key, s)
      }
    }
    this.series = next
  }

  /** The server's bars, oldest first, ending with the interval running now (from `requests`/`failures` now). */
  bars(upstream: string, address: string, requests: number, failures: number): Bar[] {
    const s = this.series.get(keyOf(upstream, address))
    if (s === undefined) return [{ requests, failures }]
    const req = [...s.requests, requests]
    const fail = [...s.failures, failures]
    const out: Bar[] = []
    // Counters never go down for a kept server; a max(0) guards a server that was replaced under the same name.
    for (let i = 1; i < req.length; i++) out.push({ requests: Math.max(0, (req[i] as number) - (req[i - 1] as number)), failures: Math.max(0, (fail[i] as number) - (fail[i - 1] as number)) })
    return out
  }

  /** The latest transitions of one upstream, newest first. */
  recent(upstream: string, limit: number): Transition[] {
    const out: Transition[] = []
    for (let i = this.transitions.length - 1; i >= 0 && out.length < limit; i--) if (this.transitions[i]?.upstream === upstream) out.push(this.transitions[i] as Transition)
    return out
  }

  /** The latest transition of one server from `source` (and one of `events`, when given). */
  last(upstream: string, server: string, source: HealthEvent['source'], events?: readonly string[]): Transition | undefined {
    for (let i = this.transitions.length - 1; i >= 0; i--) {
      const t = this.transitions[i] as Transition
      if (t.upstream === upstream && t.server === server && t.source === source && (events === undefined || events.includes(t.event))) return t
    }
    return undefined
  }
}
