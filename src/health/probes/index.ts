// The probe for a check spec and an address.
import type { CheckSpec } from '../check-spec.js'
import { HttpProbe } from './http.js'
import { httpsProbe } from './https.js'
import { SendExpectProbe } from './send-expect.js'
import { TcpProbe } from './tcp.js'
import type { Probe } from './probe.js'

export type { Probe, ProbeResult } from './probe.js'

export function createProbe(spec: CheckSpec, host: string, port: number): Probe {
  const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`
  if (spec.http !== undefined) {
    return spec.tls !== undefined ? httpsProbe(host, authority, spec.http, spec.tls) : new HttpProbe(`http://${authority}`, authority, spec.http)
  }
  if (spec.tcp !== undefined) return new SendExpectProbe(host, port, spec.tcp.send, spec.tcp.expect)
  return new TcpProbe(host, port)
}
