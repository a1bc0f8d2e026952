// The probe for a check spec and an address.
import type { CheckSpec } from '../check-spec.js'
import { HttpProbe } from './http.js'
import { httpsProbe } from './https.js'
import { SendExpectProbe } from './send-expect.js'
import { TcpProbe } from './tcp.js'
import type { Probe } from './probe.js'

export type { Probe, ProbeResult } from './probe.js'

/** host:port, with an IPv6 host in brackets. */
export function authority(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`
}

export function createProbe(spec: CheckSpec, host: string, port: number): Probe {
  const address = authority(host, port)
  if (spec.http !== undefined) {
    return spec.tls !== undefined ? httpsProbe(host, address, spec.http, spec.tls) : new HttpProbe(`http://${address}`, address, spec.http)
  }
  if (spec.tcp !== undefined) return new SendExpectProbe(host, port, spec.tcp.send, spec.tcp.expect)
  return new TcpProbe(host, port)
}
