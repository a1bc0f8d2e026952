// Timeline aggregation for the drills: what each provider received (from its own counters) and what the
// clients saw (from autocannon's events), in fixed buckets on one clock, and the figures derived from them.
import { quantile } from '../lib/results.js'

/** Bucket width of the raw recordings, ms: the resolution of detection and recovery times. */
export const BUCKET = 100
/** A provider sent nothing for this long while ELSEWHERE requests went to others is out of rotation. */
export const GAP = 1_000
/**
 * Requests that must go elsewhere during a quiet span for it to mean "out of rotation", not "no load": with
 * round robin over three providers an eligible one cannot miss 10 in a row, and at random the odds are 2%.
 * It also rules out clients whose connections are all stuck on a frozen provider (nothing is sent at all).
 */
export const ELSEWHERE = 10
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
  /** Requests not hurt, bucketed by when they were sent. */
  readonly fine = new Map<number, number>()

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
    else {
      const key = Math.floor((at - latency) / BUCKET)
      this.fine.set(key, (this.fine.get(key) ?? 0) + 1)
    }
  }

  /** Requests sent in [from, to) that were not hurt. */
  fineBetween(from: number, to: number): number {
    let n = 0
    for (let key = Math.ceil(from / BUCKET); key < Math.floor(to / BUCKET); key++) n += this.fine.get(key) ?? 0
    return n
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

/** [start, end) of traffic to a provider, in time order. */
type Busy = readonly (readonly [number, number])[]

/**
 * Every span in [from, to) of at least `gap` ms in which `busy` shows nothing while `elsewhere` counts at least
 * ELSEWHERE requests; the start of each (the end of the last traffic before it).
 */
export function quietSpans(busy: Busy, from: number, to: number, elsewhere: (a: number, b: number) => number, gap: number): number[] {
  const spans: number[] = []
  let last = from
  const check = (next: number): void => {
    if (next - last >= gap && elsewhere(last, next) >= ELSEWHERE) spans.push(last)
  }
  for (const [start, end] of busy) {
    if (end < from) continue
    if (start >= to) break
    check(start)
    last = Math.max(last, end)
  }
  check(to)
  return spans
}

function providerBusy(providers: ProviderRecorder, name: string): [number, number][] {
  return [...(providers.buckets.get(name) ?? [])]
    .filter(([, n]) => n > 0)
    .map(([key]) => [key * BUCKET, (key + 1) * BUCKET] as [number, number])
    .sort((a, b) => a[0] - b[0])
}

function othersBetween(providers: ProviderRecorder, name: string): (a: number, b: number) => number {
  const others = [...providers.buckets.keys()].filter((n) => n !== name)
  return (a, b) => others.reduce((sum, n) => sum + providers.total(n, Math.ceil(a / BUCKET) * BUCKET, Math.floor(b / BUCKET) * BUCKET), 0)
}

export interface Detection {
  /** From the fault until the faulty provider was out of rotation, ms; undefined: not within the fault. */
  after: number | undefined
  /** Requests still sent to it during the fault after that (trial requests, failed re-admissions). */
  leaked: number | undefined
}

/**
 * When the faulty provider went out of rotation: the start of the first quiet span (GAP, or half the fault if
 * shorter) while the load went elsewhere. A provider that counts tells from its own counts; for a killed or
 * frozen one, requests the fault hurt (error, non-2xx, slower than HURT) are its traffic, and requests that
 * were not hurt are the traffic elsewhere.
 */
export function detection(w: FaultWindow, providers: ProviderRecorder, clients: ClientRecorder): Detection {
  const gap = Math.min(GAP, (w.repair - w.fault) / 2)
  // A request sent to a frozen provider shortly before the repair is answered fast enough not to look hurt.
  const end = w.counts ? w.repair : w.repair - HURT
  const busy: Busy = w.counts
    ? providerBusy(providers, w.provider)
    : clients.hurt.map((h) => [h.sent, h.sent] as const).sort((a, b) => a[0] - b[0])
  const elsewhere = w.counts ? othersBetween(providers, w.provider) : (a: number, b: number) => clients.fineBetween(a, b)
  const [out] = quietSpans(busy, w.fault, end, elsewhere, gap)
  if (out === undefined) return { after: undefined, leaked: undefined }
  const leaked = w.counts ? providers.total(w.provider, Math.ceil(out / BUCKET) * BUCKET, w.repair) : clients.hurt.filter((h) => h.sent > out && h.sent < w.repair).length
  return { after: out - w.fault, leaked }
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

/** Quiet spans of healthy providers (GAP without traffic while ELSEWHERE requests went to others): each is a false ejection. */
export function falseEjections(healthy: readonly string[], providers: ProviderRecorder, from: number, to: number): number {
  return healthy.reduce((n, name) => n + quietSpans(providerBusy(providers, name), from, to, othersBetween(providers, name), GAP).length, 0)
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
