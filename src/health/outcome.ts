// The one place that decides what an attempt's error means: for the client's status and for health accounting.

/** nginx's failure classes (`proxy_next_upstream` / `max_fails`); http_NNN classes come from status codes. */
export type FailureKind = 'error' | 'timeout' | 'invalid_header'

export interface Failure {
  kind: FailureKind
  /** Status vigil answers with when nothing was sent to the client yet. */
  status: 502 | 504
  /** Stable machine-readable reason, sent as `x-vigil-error`. */
  code: string
  /** True when the request may not have reached the provider at all (safe to retry even if not idempotent). */
  beforeSend: boolean
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

/** Classify an error from undici or the socket below it. Never throws. */
export function classifyError(err: unknown): Failure {
  const code = (err as { code?: unknown } | null)?.code
  switch (code) {
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
