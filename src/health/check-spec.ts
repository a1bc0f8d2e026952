// An upstream's `active` block resolved once into a complete check description, defaults filled in.
import type { Active } from '../config/schema.js'
import { ms } from '../config/duration.js'

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

export type CheckType = 'tcp' | 'http' | 'https'

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
  tls: { serverName: string | undefined; skipVerify: boolean } | undefined
  tcp: { send: string | undefined; expect: string | undefined } | undefined
}

/** `upstreamHost` is the upstream's `host` setting, the default Host header of HTTP checks. */
export function resolveCheck(active: Active, upstreamHost: string | undefined): CheckSpec {
  const type = active.type ?? 'tcp'
  const interval = ms(active.interval ?? ACTIVE_DEFAULTS.interval)
  const web = type === 'http' || type === 'https'
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
    tls: type === 'https' ? { serverName: active.tls?.serverName, skipVerify: active.tls?.skipVerify ?? false } : undefined,
    tcp: type === 'tcp' && active.tcp !== undefined ? { send: active.tcp.send, expect: active.tcp.expect } : undefined,
  }
}

/**
 * Which passive failure classes (nginx's `error`, `timeout`, `invalid_header`, `http_NNN`) a passing check
 * disproves. A TCP connect only shows the port accepts; an exchange also shows it answers; an HTTP check
 * shows it answers HTTP with an expected status.
 */
export function checkCovers(spec: CheckSpec, failureClass: string): boolean {
  if (spec.type !== 'tcp') return true
  if (spec.tcp?.expect !== undefined) return !failureClass.startsWith('http_')
  return failureClass === 'error'
}
