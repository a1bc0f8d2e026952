// The one place that decides what an attempt's error means: for the client's status and for health accounting.
import { GRPC_CODES } from '../config/schema.js'

/**
 * nginx's failure classes (`proxy_next_upstream` / `max_fails`); `http` is a listed status code (`http_NNN`),
 * `grpc` a gRPC status a call ended with (`grpc_UNAVAILABLE`).
 */
export type FailureKind = 'error' | 'timeout' | 'invalid_header' | 'http' | 'grpc'

export interface Failure {
  kind: FailureKind
  /** Status vigil answers with when nothing was sent to the client yet (for `http`, the provider's own status). */
  status: number
  /** Stable machine-readable reason, sent as `x-vigil-error`. */
  code: string
  /** True when the request may not have reached the provider at all (safe to retry even if not idempotent). */
  beforeSend: boolean
  /**
   * The provider said it did not process the request (HTTP/2 REFUSED_STREAM, or a stream above its GOAWAY's last):
   * retried on another provider whatever `retry.on` lists, and no evidence against the provider.
   */
  refused?: boolean
}

const CONNECT_REFUSED: Failure = { kind: 'error', status: 502, code: 'connect_refused', beforeSend: true }
const CONNECT_FAILED: Failure = { kind: 'error', status: 502, code: 'connect_failed', beforeSend: true }
const CONNECT_TIMEOUT: Failure = { kind: 'timeout', status: 504, code: 'connect_timeout', beforeSend: true }
const RESPONSE_TIMEOUT: Failure = { kind: 'timeout', status: 504, code: 'response_timeout', beforeSend: false }
const BODY_TIMEOUT: Failure = { kind: 'timeout', status: 504, code: 'idle_timeout', beforeSend: false }
const RESET: Failure = { kind: 'error', status: 502, code: 'upstream_reset', beforeSend: false }
const INVALID: Failure = { kind: 'invalid_header', status: 502, code: 'invalid_response', beforeSend: false }
const TLS_FAILED: Failure = { kind: 'error', status: 502, code: 'tls_failed', beforeSend: true }
const TOO_LARGE: Failure = { kind: 'invalid_header', status: 502, code: 'response_too_large', beforeSend: false }
/** Every connection of the peer's pool stayed busy for timeouts.queue: vigil's own limit, never the provider's failure. */
export const POOL_TIMEOUT: Failure = { kind: 'timeout', status: 503, code: 'pool_timeout', beforeSend: true }
/** An attempt outlived every timeout meant to end it: a vigil bug, ended so it cannot hold the pool. */
export const STUCK: Failure = { kind: 'error', status: 500, code: 'internal_stuck', beforeSend: false }
/** No response headers within retry.perTryTimeout: the attempt is abandoned and counts as a timeout. */
export const PER_TRY_TIMEOUT: Failure = { kind: 'timeout', status: 504, code: 'per_try_timeout', beforeSend: false }

/** See Failure.refused; the HTTP/2 pool's error code for it (src/upstream/h2-pool.ts). */
export const REFUSED_STREAM: Failure = { kind: 'error', status: 502, code: 'refused_stream', beforeSend: true, refused: true }

const BY_CODE = new Map([CONNECT_REFUSED, CONNECT_FAILED, CONNECT_TIMEOUT, RESPONSE_TIMEOUT, BODY_TIMEOUT, RESET, INVALID, TLS_FAILED, TOO_LARGE, POOL_TIMEOUT, STUCK, PER_TRY_TIMEOUT, REFUSED_STREAM].map((f) => [f.code, f]))

/** The failure a stable `code` names (`connect_refused`, `http_503`...), for outcomes reported by another process. */
export function failureOf(code: string): Failure | undefined {
  if (code.startsWith('http_')) {
    const status = Number(code.slice(5))
    return Number.isInteger(status) && status >= 100 && status < 600 ? httpFailure(status) : undefined
  }
  if (code.startsWith('grpc_')) {
    const grpcStatus = (GRPC_CODES as readonly string[]).indexOf(code.slice(5))
    return grpcStatus > 0 ? grpcFailure(grpcStatus) : undefined
  }
  return BY_CODE.get(code)
}

/** Classify an error from undici or the socket below it. Never throws. */
export function classifyError(err: unknown): Failure {
  const code = (err as { code?: unknown } | null)?.code
  switch (code) {
    case 'VIGIL_H2_REFUSED_STREAM':
      return REFUSED_STREAM
    case 'ECONNREFUSED':
      return CONNECT_REFUSED
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return CONNECT_TIMEOUT
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return CONNECT_FAILED
    case 'UND_ERR_HEADERS_TIMEOUT':
      return RESPONSE_TIMEOUT
    case 'UND_ERR_BODY_TIMEOUT':
      return BODY_TIMEOUT
    case 'UND_ERR_HEADERS_OVERFLOW':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_INFO':
    case 'VIGIL_INTERIM_STORM':
      return INVALID
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return TOO_LARGE
  }
  if (typeof code === 'string' && code.startsWith('HPE_')) return INVALID
  // Certificate verification and handshake failures (DEPTH_ZERO_SELF_SIGNED_CERT, ERR_TLS_CERT_ALTNAME_INVALID, ...).
  if (typeof code === 'string' && /^ERR_(TLS|SSL)_|CERT|SIGNATURE|ISSUER/.test(code)) return TLS_FAILED
  // undici's parser errors often carry no code; an unsolicited 100 Continue is a SocketError 'bad response'.
  const e = err as { name?: unknown; message?: unknown } | null
  if (e?.name === 'HTTPParserError' || (code === 'UND_ERR_SOCKET' && e?.message === 'bad response')) return INVALID
  return RESET
}

/** nginx's name for the class of a failure (`error`, `timeout`, `invalid_header`, `http_NNN`, `grpc_NAME`): what a check may disprove. */
export function failureClass(f: Failure): string {
  return f.kind === 'http' || f.kind === 'grpc' ? f.code : f.kind
}

const GRPC_FAILURES: (Failure | undefined)[] = []

/**
 * The failure a gRPC status stands for (only meaningful when a FailureSet lists it): `status` is the HTTP status
 * vigil's own answer would have (502; 504 for DEADLINE_EXCEEDED), `code` its failOn name.
 */
export function grpcFailure(grpcStatus: number): Failure {
  return (GRPC_FAILURES[grpcStatus] ??= {
    kind: 'grpc',
    status: grpcStatus === 4 ? 504 : 502,
    code: `grpc_${GRPC_CODES[grpcStatus] ?? 'UNKNOWN'}`,
    beforeSend: false,
  })
}

const HTTP_FAILURES: (Failure | undefined)[] = []

/** The failure an answered status stands for (only meaningful when a FailureSet lists it). */
export function httpFailure(status: number): Failure {
  return (HTTP_FAILURES[status] ??= { kind: 'http', status, code: `http_${status}`, beforeSend: false })
}

/**
 * A compiled `failOn` / `retry.on` list: which failure kinds and which status codes it names, looked up
 * without allocating. `passive` lists drop 403 and 404: like nginx, they may trigger a retry but never
 * count against a provider (the client asked for something that does not exist or is not allowed).
 */
export class FailureSet {
  private readonly error: boolean
  private readonly timeout: boolean
  private readonly invalid: boolean
  private readonly statuses = new Uint8Array(600)
  private readonly grpc = new Uint8Array(17)

  constructor(list: readonly string[], passive: boolean) {
    this.error = list.includes('error')
    this.timeout = list.includes('timeout')
    this.invalid = list.includes('invalid_header')
    for (const item of list) {
      if (item.startsWith('grpc_')) {
        const code = (GRPC_CODES as readonly string[]).indexOf(item.slice(5))
        if (code > 0) this.grpc[code] = 1
        continue
      }
      if (!item.startsWith('http_')) continue
      const status = Number(item.slice(5))
      if (passive && (status === 403 || status === 404)) continue
      this.statuses[status] = 1
    }
  }

  hasStatus(status: number): boolean {
    return this.statuses[status] === 1
  }

  /** Lists this gRPC status (`grpc_NAME`); -1 (no status) never. */
  hasGrpc(code: number): boolean {
    return this.grpc[code] === 1
  }

  has(f: Failure): boolean {
    switch (f.kind) {
      case 'error':
        return this.error
      case 'timeout':
        return this.timeout
      case 'invalid_header':
        return this.invalid
      case 'http':
        return this.statuses[f.status] === 1
      case 'grpc':
        return this.grpc[(GRPC_CODES as readonly string[]).indexOf(f.code.slice(5))] === 1
    }
  }
}
