// gRPC over the same data path: how a call is recognised, its deadline (grpc-timeout), the status it ended with
// (grpc-status, in trailers or in a trailers-only head), and the errors vigil answers itself, as a gRPC client
// reads them (HTTP 200, grpc-status, grpc-message), never as a text 502 it cannot parse.
import type { ServerResponse } from 'node:http'
import { constants, type Http2ServerResponse } from 'node:http2'
import { GRPC_CODES } from '../config/schema.js'

export const GRPC_DEADLINE_EXCEEDED = 4
export const GRPC_UNAVAILABLE = 14

/** A request is a gRPC call when its content type is application/grpc (or application/grpc+proto, ...). */
export function isGrpc(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.length >= 16 && contentType.slice(0, 16).toLowerCase() === 'application/grpc'
}

const UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 }

/** `grpc-timeout: 250m` as milliseconds (at least 1), or undefined when absent or malformed (the spec's grammar: 1-8 digits and a unit). */
export function grpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const m = /^([0-9]{1,8})([HMSmun])$/.exec(value.trim())
  if (m === null) return undefined
  return Math.max(1, Math.ceil(Number(m[1]) * (UNITS[m[2] as string] as number)))
}

/** Milliseconds as a grpc-timeout value: at most 8 digits, so milliseconds up to about 27 hours, seconds beyond. */
export function grpcTimeoutValue(ms: number): string {
  return ms < 100_000_000 ? `${ms}m` : `${Math.min(99_999_999, Math.ceil(ms / 1000))}S`
}

/** Where the value of the grpc-timeout header sits in a flat [name, value, ...] list; -1 when it is not there. */
export function grpcTimeoutIndex(list: readonly string[]): number {
  for (let i = 0; i < list.length; i += 2) if ((list[i] as string).length === 12 && (list[i] as string).toLowerCase() === 'grpc-timeout') return i + 1
  return -1
}

/** The grpc-status in a flat [name, value, ...] header or trailer list; -1 when there is none. */
export function grpcStatusIn(list: readonly (string | Buffer)[] | null): number {
  if (list === null) return -1
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i] as string | Buffer
    if (name.length !== 11) continue
    if (String(name).toLowerCase() === 'grpc-status') {
      const code = Number(String(list[i + 1]))
      return Number.isInteger(code) && code >= 0 && code <= 16 ? code : 2
    }
  }
  return -1
}

/** gRPC's name of a status code (`UNAVAILABLE`), as failOn and the metrics name it. */
export function grpcCodeName(code: number): string {
  return GRPC_CODES[code] ?? 'UNKNOWN'
}

/** grpc/doc/http-grpc-status-mapping.md: the status a gRPC client makes of an HTTP error status. */
export function grpcStatusOfHttp(status: number): number {
  switch (status) {
    case 400:
      return 13
    case 401:
      return 16
    case 403:
      return 7
    case 404:
      return 12
    case 429:
    case 502:
    case 503:
    case 504:
      return GRPC_UNAVAILABLE
    default:
      return 2
  }
}

/** grpc-message is percent-encoded UTF-8 (PROTOCOL-HTTP2.md): everything outside printable ASCII, and '%'. */
function percentEncoded(text: string): string {
  return Array.from(Buffer.from(text, 'utf8'), (b) => (b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('')
}

/**
 * vigil's own error for a gRPC call, as a trailers-only response: HTTP 200 with grpc-status (gRPC's form of the
 * HTTP `status` vigil would answer) and grpc-message in its head, and x-vigil-error with the same stable code as
 * the HTTP form.
 */
export function sendGrpcError(res: ServerResponse, status: number, code: string, detail: string, attempts?: number): void {
  sendGrpcStatus(res, grpcStatusOfHttp(status), code, detail, attempts)
}

/** A trailers-only answer with `grpcStatus` itself; nothing may have been written to `res` yet. */
export function sendGrpcStatus(res: ServerResponse, grpcStatus: number, code: string, detail: string, attempts?: number): void {
  res.setHeader('x-vigil-error', code)
  const head = ['content-type', 'application/grpc', 'grpc-status', String(grpcStatus), 'grpc-message', percentEncoded(detail)]
  if (attempts !== undefined) head.push('x-vigil-attempts', String(attempts))
  // A flat list: an HTTP/2 response holds it until end(), which sends it as one HEADERS frame with END_STREAM.
  res.writeHead(200, head)
  res.end()
}

/**
 * End a call whose response has started (the provider's head was written to `res`) with `grpcStatus`, as its
 * trailers. A response that cannot carry them (a content-length, an HTTP/1.1 response that is not chunked) is
 * reset instead: RST_STREAM(CANCEL) on HTTP/2, a closed connection on HTTP/1.1.
 */
export function endStartedCall(res: ServerResponse, grpcStatus: number, code: string, detail: string): void {
  // An HTTP/2 stream's response (the listener's VigilH2Response) reaches forward() typed as an HTTP/1.1 one.
  const stream = (res as unknown as Partial<Http2ServerResponse>).stream
  const trailers = stream !== undefined ? !res.hasHeader('content-length') : (res as ServerResponse & { chunkedEncoding: boolean }).chunkedEncoding
  if (!trailers || res.writableEnded) {
    if (stream !== undefined) stream.close(constants.NGHTTP2_CANCEL)
    else res.destroy()
    return
  }
  // VigilH2Response folds them into a head it still holds (no body byte written yet): trailers-only.
  res.addTrailers([
    ['grpc-status', String(grpcStatus)],
    ['grpc-message', percentEncoded(detail)],
    ['x-vigil-error', code],
  ])
  res.end()
}
