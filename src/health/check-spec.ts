// An upstream's `active` block resolved once into a complete check description, defaults filled in.
import type { Active } from '../config/schema.js'
import type { UpstreamProtocol } from '../upstream/peer.js'
import { ms } from '../config/duration.js'
import { createHash } from 'node:crypto'
import type { ClientTls } from '../upstream/tls.js'

/** Tengine's defaults (`check interval=30000 rise=2 fall=5 timeout=1000`), except that servers start up. */
export const ACTIVE_DEFAULTS = {
  interval: 30_000,
  timeout: 1_000,
  rise: 2,
  fall: 5,
  defaultDown: false,
  jitter: 0.1,
  maxInFlight: 64,
  unejectOnPass: true,
  expectStatus: ['2xx', '3xx'],
} as const

export type CheckType = 'tcp' | 'http' | 'https' | 'grpc'

export interface HttpCheck {
  method: string
  path: string
  /** Host header; undefined sends the checked address. */
  host: string | undefined
  headers: Record<string, string>
  expectStatus: readonly string[]
  expectBody: string | undefined
}

export interface CheckSpec {
  type: CheckType
  /** 0 checks the server's own port. */
  port: number
  timeout: number
  interval: number
  /** HAProxy's `fastinter`: used while a server is changing state (some rise or fall counted, not yet flipped). */
  fastInterval: number
  /** HAProxy's `downinter`: used while a server is down and not recovering. */
  downInterval: number
  /**
   * Envoy's no_traffic_interval turned around: while an up server answered real requests within this time, passive
   * evidence covers it and it is probed only this often; undefined probes every server at `interval`.
   */
  trafficInterval: number | undefined
  jitter: number
  rise: number
  fall: number
  defaultDown: boolean
  maxInFlight: number
  unejectOnPass: boolean
  http: HttpCheck | undefined
  /** The check speaks HTTP/2 (over TLS by ALPN when `tls` is set, else cleartext with prior knowledge). */
  h2: boolean
  /** `grpc.health.v1.Health/Check` for this service name ("" asks about the whole server). */
  grpc: { service: string } | undefined
  tls: CheckTls | undefined
  tcp: { send: string | undefined; expect: string | undefined } | undefined
}

export interface CheckTls {
  /** `active.tls`: SNI and the name checked; skip verification. Each overrides what the group's `tls` says. */
  serverName: string | undefined
  skipVerify: boolean
  /** The group's own `tls` (its CA, client certificate, servername, verify), when it has one. */
  group: GroupTls | undefined
}

/**
 * A group's loaded TLS material as its checks use it. The checker keys check targets by their spec's JSON: this
 * one's is a digest of the material, so a new CA or certificate makes a new target and the PEM bytes never
 * become part of a key.
 */
export class GroupTls {
  private readonly digest: string

  constructor(readonly material: Omit<ClientTls, 'servername'> & { servername?: string | undefined }) {
    this.digest = createHash('sha256').update(JSON.stringify(material)).digest('base64')
  }

  toJSON(): string {
    return this.digest
  }
}

/**
 * `upstreamHost` is the upstream's `host` setting, the default Host header of HTTP checks. `protocol` is how the
 * group's traffic reaches its servers, and checks speak it too, so an HTTP/2-only provider is checked over
 * HTTP/2: under `h2c` an `http` check is cleartext HTTP/2 (an `https` one HTTP/2 over TLS), under `h2` both are
 * HTTP/2 over TLS (ALPN), as the traffic is. A gRPC check is always HTTP/2: over TLS when the group is `h2`,
 * else cleartext. A check over TLS uses the group's own `tls` (`groupTls`: CA, client certificate, servername,
 * verify), as Envoy's health checks use the cluster's transport socket, so a provider that requires a client
 * certificate or has a private CA is checked as its traffic reaches it; `active.tls` overrides the name and
 * verification.
 */
export function resolveCheck(active: Active, upstreamHost: string | undefined, protocol: UpstreamProtocol = 'http1', groupTls?: GroupTls): CheckSpec {
  const type = active.type ?? 'tcp'
  const interval = ms(active.interval ?? ACTIVE_DEFAULTS.interval)
  const web = type === 'http' || type === 'https'
  const tls = type === 'https' || (protocol === 'h2' && (web || type === 'grpc'))
  return {
    type,
    port: active.port ?? 0,
    timeout: ms(active.timeout ?? ACTIVE_DEFAULTS.timeout),
    interval,
    fastInterval: ms(active.fastInterval ?? interval),
    downInterval: ms(active.downInterval ?? interval),
    trafficInterval: active.trafficInterval === undefined ? undefined : ms(active.trafficInterval),
    jitter: active.jitter ?? ACTIVE_DEFAULTS.jitter,
    rise: active.rise ?? ACTIVE_DEFAULTS.rise,
    fall: active.fall ?? ACTIVE_DEFAULTS.fall,
    defaultDown: active.defaultDown ?? ACTIVE_DEFAULTS.defaultDown,
    maxInFlight: active.maxInFlight ?? ACTIVE_DEFAULTS.maxInFlight,
    unejectOnPass: active.unejectOnPass ?? ACTIVE_DEFAULTS.unejectOnPass,
    http: web
      ? {
          method: active.http?.method ?? 'GET',
          path: active.http?.path ?? '/',
          host: active.http?.host ?? upstreamHost,
          headers: active.http?.headers ?? {},
          expectStatus: active.http?.expectStatus ?? ACTIVE_DEFAULTS.expectStatus,
          expectBody: active.http?.expectBody,
        }
      : undefined,
    h2: type === 'grpc' || (web && protocol !== 'http1'),
    grpc: type === 'grpc' ? { service: active.grpc?.service ?? '' } : undefined,
    tls: tls ? { serverName: active.tls?.serverName, skipVerify: active.tls?.skipVerify ?? false, group: groupTls } : undefined,
    tcp: type === 'tcp' && active.tcp !== undefined ? { send: active.tcp.send, expect: active.tcp.expect } : undefined,
  }
}

/**
 * Which passive failure classes (nginx's `error`, `timeout`, `invalid_header`, `http_NNN`, `grpc_NAME`) a
 * passing check disproves. A TCP connect only shows the port accepts; an exchange also shows it answers; an
 * HTTP check shows it answers HTTP with an expected status; a gRPC check that its health service says SERVING.
 * None disproves a call's gRPC status: that is the application's answer to its own methods (a dependency down,
 * load shed), which no check calls, and health services rarely leave SERVING; only a real call (the trial) can.
 */
export function checkCovers(spec: CheckSpec, failureClass: string): boolean {
  if (failureClass.startsWith('grpc_')) return false
  if (spec.type !== 'tcp') return true
  if (spec.tcp?.expect !== undefined) return !failureClass.startsWith('http_')
  return failureClass === 'error'
}
