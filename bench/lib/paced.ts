// An even load at a fixed rate, for "the latency a hop adds when nothing queues": requests sent at rate/1000
// per millisecond, each on a keep-alive connection that is free, each timed from its own send to its last byte.
// autocannon cannot do this: with a rate, every connection sends its share of the second back to back, as fast as
// it is answered, then waits for the next second (load.ts's `spread` only shortens the cycle to 1/spread s), so
// what it times at "2,000 req/s" is a burst at full speed, where requests queue behind each other.
import { Client, type Dispatcher } from 'undici'
import { quantile } from './results.js'
import type { LoadOptions, LoadSummary } from './load.js'

/** How often the pacer wakes; each wake sends what the rate says is due by then. */
const TICK_MS = 1

/** load.ts's options, with the rate required (`spread` does not apply: the load is even already). */
export type PacedOptions = LoadOptions & { rate: number }

export interface PacedSummary extends LoadSummary {
  /** Requests that found every connection busy and waited for one (time not counted in their latency). */
  waited: number
}

class Timed implements Dispatcher.DispatchHandler {
  private status = 0
  private readonly sent = performance.now()

  constructor(
    private readonly run: PacedRun,
    private readonly client: Client,
  ) {}

  onConnect(): void {}
  onHeaders(status: number): boolean {
    this.status = status
    return true
  }
  onData(): boolean {
    return true
  }
  onComplete(): void {
    this.run.answered(this.client, this.status, performance.now() - this.sent)
  }
  onError(err: Error): void {
    this.run.failed(this.client, err)
  }
}

class PacedRun {
  private readonly idle: Client[]
  private readonly latencies: number[] = []
  private due = 0
  private sent = 0
  private inFlight = 0
  waited = 0
  non2xx = 0
  errors = 0
  timeouts = 0
  private ended: (() => void) | undefined

  constructor(
    private readonly options: PacedOptions,
    private readonly path: string,
    clients: Client[],
  ) {
    this.idle = [...clients]
  }

  /** Sends until `seconds` have passed, then waits for the last answers. */
  async run(seconds: number): Promise<void> {
    const start = performance.now()
    const rate = this.options.rate
    const total = Math.round(rate * seconds)
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        this.due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1_000))
        this.send()
        if (this.sent === total) {
          clearInterval(timer)
          resolve()
        }
      }, TICK_MS)
    })
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.ended = resolve))
  }

  /** Sends what is due on the free connections; how many it sent. */
  private send(): number {
    let n = 0
    while (this.sent < this.due && this.idle.length > 0) {
      const client = this.idle.pop() as Client
      this.sent++
      this.inFlight++
      n++
      client.dispatch({ path: this.path, method: 'GET' }, new Timed(this, client))
    }
    return n
  }

  answered(client: Client, status: number, ms: number): void {
    if (status < 200 || status > 299) this.non2xx++
    this.latencies.push(ms)
    this.options.onResponse?.(status, ms)
    this.release(client)
  }

  failed(client: Client, err: Error): void {
    if ((err as NodeJS.ErrnoException).code === 'UND_ERR_HEADERS_TIMEOUT' || (err as NodeJS.ErrnoException).code === 'UND_ERR_BODY_TIMEOUT') this.timeouts++
    else this.errors++
    this.options.onError?.(err)
    this.release(client)
  }

  private release(client: Client): void {
    this.idle.push(client)
    this.inFlight--
    // A request that came due while every connection was busy goes now, not at the next tick.
    this.waited += this.send()
    if (this.inFlight === 0 && this.sent === this.due) this.ended?.()
  }

  summary(seconds: number): PacedSummary {
    const answered = this.latencies.length
    return {
      requests: answered,
      rps: answered / seconds,
      p50: quantile(this.latencies, 0.5),
      p99: quantile(this.latencies, 0.99),
      non2xx: this.non2xx,
      errors: this.errors,
      timeouts: this.timeouts,
      waited: this.waited,
    }
  }
}

/** `options.rate` requests per second, evenly, over `options.connections` keep-alive connections. */
export async function runPaced(options: PacedOptions): Promise<PacedSummary> {
  const timeout = (options.timeout ?? 10) * 1_000
  const url = new URL(options.url)
  const path = url.pathname + url.search
  const clients = Array.from({ length: options.connections }, () => new Client(url.origin, { pipelining: 1, headersTimeout: timeout, bodyTimeout: timeout }))
  const run = new PacedRun(options, path, clients)
  try {
    // Every connection open before the clock starts: a first use would time a TCP handshake, not the hop.
    await Promise.all(clients.map((c) => c.request({ path, method: 'GET' }).then((r) => r.body.dump())))
    await run.run(options.duration)
  } finally {
    await Promise.all(clients.map((c) => c.close()))
  }
  return run.summary(options.duration)
}
