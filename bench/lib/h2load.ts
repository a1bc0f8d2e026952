// HTTP/2 load from h2load (Debian's nghttp2-client), run as a child process and read from its summary. An
// http:// URL is cleartext HTTP/2 with prior knowledge (h2c). With `data`, every request is a POST of that
// file: a gRPC unary call when the file is one length-prefixed message and the headers say application/grpc.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface H2LoadOptions {
  url: string
  /** Connections. */
  clients: number
  /** Concurrent streams per connection. */
  streams: number
  /** Seconds. */
  duration: number
  /** A file sent as every request's body (POST). */
  data?: string
  headers?: readonly string[]
}

export interface H2LoadSummary {
  requests: number
  rps: number
  /** Requests that got a 2xx answer. */
  ok: number
  /** Requests h2load counts as failed or errored (no answer, a reset stream), and non-2xx answers. */
  failed: number
  /** Mean time for a request, ms (h2load reports no percentiles). */
  meanMs: number
}

/** h2load's time units ("523us", "1.25ms", "2.00s") in ms. */
function toMs(text: string): number {
  const m = /^([0-9.]+)(us|ms|s)$/.exec(text)
  if (m === null) return Number.NaN
  const n = Number(m[1])
  return m[2] === 'us' ? n / 1_000 : m[2] === 'ms' ? n : n * 1_000
}

export function parseH2load(out: string): H2LoadSummary {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? Number.NaN)
  const unanswered = num(/(\d+) errored/) + num(/(\d+) timeout/)
  const [, , x3, x4, x5] = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out)?.map(Number) ?? []
  const meanMs = toMs(/time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out)?.[1] ?? '')
  return {
    requests: num(/(\d+) done/),
    rps: num(/finished in [^,]+, ([0-9.]+) req\/s/),
    ok: num(/status codes: (\d+) 2xx/),
    failed: unanswered + (x3 ?? 0) + (x4 ?? 0) + (x5 ?? 0),
    meanMs,
  }
}

export async function runH2load(options: H2LoadOptions): Promise<H2LoadSummary> {
  const args = ['-c', String(options.clients), '-m', String(options.streams), '-D', String(options.duration), '-t', '1']
  if (options.data !== undefined) args.push('-d', options.data)
  for (const h of options.headers ?? []) args.push('-H', h)
  args.push(options.url)
  const { stdout } = await run('h2load', args, { maxBuffer: 16 * 1024 * 1024 })
  return parseH2load(stdout)
}
