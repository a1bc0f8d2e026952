// HTTP check: a request on the check's own undici Client (never the proxied traffic's pool, so a check is
// never queued behind requests), passing on an expected status and, optionally, a body matching a regex.
// Over HTTP/1.1 or, for HTTP/2-only providers, HTTP/2: cleartext with prior knowledge (undici's H2CClient) or
// over TLS by ALPN (`allowH2`); either way one connection, which the check's close() destroys. Over HTTP/2 an
// aborted request only resets its stream, so a check that timed out replaces the client: as with the gRPC
// check, a frozen or half-dead session is never reused (over HTTP/1.1 undici closes the socket itself).
import { Client, H2CClient, type Dispatcher } from 'undici'
import type { HttpCheck } from '../check-spec.js'
import { classifyError } from '../outcome.js'
import { PASSED, TIMED_OUT, type Probe, type ProbeResult } from './probe.js'
import type { ProbeTls } from './tls.js'

/** Bodies are matched on their first 64 KiB. */
const MAX_BODY = 64 * 1024

/** Which status codes pass: "2xx" is a class, "204" one code. */
export function statusTable(expect: readonly string[]): boolean[] {
  const table = new Array<boolean>(600).fill(false)
  for (const e of expect) {
    if (e.endsWith('xx')) table.fill(true, Number(e[0]) * 100, Number(e[0]) * 100 + 100)
    else table[Number(e)] = true
  }
  return table
}

export class HttpProbe implements Probe {
  private client: Dispatcher
  private readonly connect: () => Dispatcher
  private readonly h2: boolean
  private readonly passes: boolean[]
  private readonly body: RegExp | undefined
  private readonly headers: Record<string, string>

  constructor(
    origin: string,
    hostHeader: string,
    private readonly spec: HttpCheck,
    tls: ProbeTls | undefined,
    h2: boolean,
  ) {
    this.h2 = h2
    this.connect = () => (h2 && tls === undefined ? new H2CClient(origin, { pipelining: 1 }) : new Client(origin, { pipelining: 1, connect: tls, allowH2: h2 }))
    this.client = this.connect()
    this.passes = statusTable(spec.expectStatus)
    this.body = spec.expectBody === undefined ? undefined : new RegExp(spec.expectBody)
    this.headers = { 'user-agent': 'vigil-check', ...spec.headers, host: spec.host ?? hostHeader }
  }

  async check(signal: AbortSignal): Promise<ProbeResult> {
    try {
      const res = await this.client.request({ method: this.spec.method, path: this.spec.path, headers: this.headers, signal })
      if (this.passes[res.statusCode] !== true) {
        await res.body.dump()
        return { ok: false, reason: `status_${res.statusCode}` }
      }
      if (this.body === undefined) {
        await res.body.dump()
        return PASSED
      }
      let text = ''
      res.body.setEncoding('utf8')
      for await (const chunk of res.body) {
        text += chunk as string
        if (text.length >= MAX_BODY) break
      }
      return this.body.test(text) ? PASSED : { ok: false, reason: 'body_mismatch', detail: text.slice(0, 80) }
    } catch (err) {
      if (signal.aborted) {
        if (this.h2) {
          void this.client.destroy()
          this.client = this.connect()
        }
        return TIMED_OUT
      }
      return { ok: false, reason: classifyError(err).code, detail: (err as Error).message }
    }
  }

  close(): Promise<void> {
    return this.client.destroy()
  }
}
