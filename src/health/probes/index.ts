// The probe for a check spec and an address.
import type { CheckSpec } from '../check-spec.js'
import { GrpcProbe } from './grpc.js'
import { HttpProbe } from './http.js'
import { SendExpectProbe } from './send-expect.js'
import { TcpProbe } from './tcp.js'
import { probeTls } from './tls.js'
import type { Probe } from './probe.js'

export type { Probe, ProbeResult } from './probe.js'

/** host:port, with an IPv6 host in brackets. */
export function authority(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`
}

export function createProbe(spec: CheckSpec, host: string, port: number): Probe {
  const address = authority(host, port)
  const tls = spec.tls === undefined ? undefined : probeTls(host, spec.tls)
  const origin = `${tls === undefined ? 'http' : 'https'}://${address}`
  if (spec.grpc !== undefined) return new GrpcProbe(origin, address, spec.grpc.service, spec.timeout, tls)
  if (spec.http !== undefined) return new HttpProbe(origin, address, spec.http, tls, spec.h2)
  if (spec.tcp !== undefined) return new SendExpectProbe(host, port, spec.tcp.send, spec.tcp.expect)
  return new TcpProbe(host, port)
}
