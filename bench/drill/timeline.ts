// Timeline aggregation for the drills: what each provider received (from its own counters) and what the
// clients saw (from autocannon's events), in fixed buckets on one clock, and the figures derived from them.
import { quantile } from '../lib/results.js'

/** Bucket width of the raw recordings, ms: the resolution of detection and recovery times. */
export const BUCKET = 100
/** A healthy provider without traffic for this long, while others had traffic, counts as ejected. */
export const GAP = 1_000
export const SLOW = 1_000
/**
 * A request slower than this was hurt by a fault, as evidence of where a killed or frozen provider's traffic
 * went (it cannot count itself). Well above the drills' provider jitter (50 ms), well below the timeouts.
 */
export const HURT = 250

export interface ClientBucket {
  ok: number
  non2xx: number
  errors: number
  slow: number
}

export interface Hurt {
  sent: number
  done: number
}

/** What the clients saw, bucketed by the time each response (or error) arrived. */
export class ClientRecorder {
  readonly buckets = new Map<number, ClientBucket>()
  readonly latencies: number[] = []
  /** Requests hurt by a fault (error, non-2xx, slower than HURT): when each was sent and answered, relative ms. */
  readonly hurt: Hurt[] = []

  constructor(
    readonly origin: number,
    /** autocannon's timeout in ms: a timed-out request was sent this long before its error. */
    private readonly timeout: number,
    private readonly now: () => number = Date.now,
  ) {}

  private bucket(at: number): ClientBucket {
    const key = Math.floor(at / BUCKET)
    let b = this.buckets.get(key)
    if (b === undefined) this.buckets.set(key, (b = { ok: 0, non2xx: 0, errors: 0, slow: 0 }))
    return b
  }

  response(status: number, latency: number): void {
    const at = this.now() - this.origin
    const b = this.bucket(at)
    this.latencies.push(latency)
    if (status >= 200 && status < 300) b.ok++
    else b.non2xx++
    if (latency > SLOW) b.slow++
    if (status < 200 || status >= 300 || latency > HURT) this.hurt.push({ sent: at - latency, done: at })
  }

  error(err: Error): void {
    const at = this.now() - this.origin
    this.bucket(at).errors++
    this.hurt.push({ sent: err.message === 'request timed out' ? at - this.timeout : at, done: at })
  }
}

/** Served counts per provider name, bucketed; several processes may report under one name (a restart). */
export class ProviderRecorder {
  readonly buckets = new Map<string, Map<number, number>>()

  constructor(readonly origin: number) {}

  /** A counter line from a provider: interval start (epoch ms) and count. */
  add(name: string, t: number, n: number): void {
    let mine = this.buckets.get(name)
    if (mine === undefined) this.buckets.set(name, (mine = new Map()))
    const key = Math.floor((t - this.origin) / BUCKET)
    mine.set(key, (mine.get(key) ?? 0) + n)
  }

  /** Count for one provider in bucket `key`. */
  at(name: string, key: number): number {
    return this.buckets.get(name)?.get(key) ?? 0
  }

  total(name: string, from = -Infinity, to = Infinity): number {
    let n = 0
    for (const [key, count] of this.buckets.get(name) ?? []) if (key * BUCKET >= from && key * BUCKET < to) n += count
    return n
  }
}

export interface Series {
  /** Width of one point, ms. */
  width: number
  providers: Record<string, number[]>
  ok: number[]
  non2xx: number[]
  errors: number[]
  slow: number[]
}

/** Per-`width` sums from 0 to `end` (relative ms), for the charts. */
export function series(clients: ClientRecorder, providers: ProviderRecorder, end: number, width = 1_000): Series {
  const points = Math.ceil(end / width)
  const per = width / BUCKET
  const zeros = () => new Array<number>(points).fill(0)
  const out: Series = { width, providers: {}, ok: zeros(), non2xx: zeros(), errors: zeros(), slow: zeros() }
  for (const [key, b] of clients.buckets) {
    const i = Math.floor(key / per)
    if (i < 0 || i >= points) continue
    ;(out.ok[i] as number) += b.ok
    ;(out.non2xx[i] as number) += b.non2xx
    ;(out.errors[i] as number) += b.errors
    ;(out.slow[i] as number) += b.slow
  }
  for (const [name, buckets] of providers.buckets) {
    const row = zeros()
    for (const [key, n] of buckets) {
      const i = Math.floor(key / per)
      if (i >= 0 && i < points) (row[i] as number) += n
    }
    out.providers[name] = row
  }
  return out
}

/** One fault of one provider: when it started and when it was repaired (relative ms). */
export interface FaultWindow {
  provider: string
  fault: number
  repair: number
  /** Until when recovery is judged (the next fault, or the end of the load). */
  until: number
  /** Whether the faulty process still counts what it receives (503s, latency) or not (killed, frozen). */
  counts: boolean
}

/**
 * Time from the fault until the provider stopped being sent traffic, ms; undefined when it was still sent
 * traffic until the repair. A provider that counts tells directly; for a killed or frozen one the last request
 * that the fault hurt on the client side (error, non-2xx, slow) is the evidence, and a hurt request still
 * waiting at the repair means it was not detected (the clients' connections may all have been stuck on it,
 * so nothing newer could show it).
 */
export function detectionTime(w: FaultWindow, providers: ProviderRecorder, clients: ClientRecorder): number | undefined {
  let last = w.fault
  if (w.counts) {
    for (let key = Math.floor(w.fault / BUCKET); key * BUCKET < w.repair; key++) if (providers.at(w.provider, key) > 0) last = Math.max(last, (key + 1) * BUCKET)
  }
  // A request sent to a frozen provider shortly before the repair is answered fast enough not to look hurt.
  const blind = w.counts ? BUCKET : BUCKET + HURT
  for (const h of clients.hurt) {
    if (h.sent < w.fault || h.sent >= w.repair) continue
    if (h.done >= w.repair - blind) return undefined
    last = Math.max(last, h.sent)
  }
  return last >= w.repair - blind ? undefined : last - w.fault
}

/**
 * Time from the repair until the provider receives traffic again for good: the start of the first run of
 * traffic after which it never goes `gap` ms without traffic until `until`. A burst right at the repair
 * (requests queued in the kernel while it was frozen) followed by a gap does not count. Undefined: never.
 */
export function recoveryTime(w: FaultWindow, providers: ProviderRecorder, gap = GAP): number | undefined {
  const first = Math.floor(w.repair / BUCKET)
  const last = Math.floor(w.until / BUCKET)
  const limit = Math.min(gap, w.until - w.repair) / BUCKET
  let start: number | undefined
  let quiet = 0
  for (let key = first; key < last; key++) {
    if (providers.at(w.provider, key) > 0) {
      start ??= key
      quiet = 0
    } else if (start !== undefined && ++quiet >= limit) {
      start = undefined
      quiet = 0
    }
  }
  return start === undefined ? undefined : Math.max(0, start * BUCKET - w.repair)
}

/**
 * Healthy providers that went `gap` ms without traffic while another provider got traffic in the same span:
 * each such span counts once. Spans where no provider got traffic (the load or the proxy stalled) do not count.
 */
export function falseEjections(healthy: readonly string[], all: readonly string[], providers: ProviderRecorder, from: number, to: number, gap = GAP): number {
  const span = gap / BUCKET
  let count = 0
  for (const name of healthy) {
    let quiet = 0
    let othersBusy = false
    for (let key = Math.floor(from / BUCKET); key < Math.floor(to / BUCKET); key++) {
      if (providers.at(name, key) > 0) {
        quiet = 0
        othersBusy = false
        continue
      }
      quiet++
      if (all.some((o) => o !== name && providers.at(o, key) > 0)) othersBusy = true
      if (quiet === span && othersBusy) count++
    }
  }
  return count
}

export interface ClientFigures {
  requests: number
  errors: number
  non2xx: number
  slow: number
  p50: number
  p99: number
}

export function clientFigures(clients: ClientRecorder): ClientFigures {
  let errors = 0
  let non2xx = 0
  let slow = 0
  let ok = 0
  for (const b of clients.buckets.values()) {
    errors += b.errors
    non2xx += b.non2xx
    slow += b.slow
    ok += b.ok
  }
  return { requests: ok + non2xx + errors, errors, non2xx, slow, p50: quantile(clients.latencies, 0.5), p99: quantile(clients.latencies, 0.99) }
}
