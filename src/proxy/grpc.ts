// gRPC over the same data path: how a call is recognised, its deadline (grpc-timeout), the status it ended with
// (grpc-status, in trailers or in a trailers-only head), and the errors vigil answers itself, as a gRPC client
// reads them (HTTP 200, grpc-status, grpc-message), never as a text 502 it cannot parse.
import type { ServerResponse } from 'node:http'
import { GRPC_CODES } from '../config/schema.js'

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
 * vigil's own error for a gRPC call, as a trailers-only response: HTTP 200 with grpc-status and grpc-message in
 * its head, and x-vigil-error with the same stable code as the HTTP form.
 */
export function sendGrpcError(res: ServerResponse, status: number, code: string, detail: string, attempts?: number): void {
  res.setHeader('x-vigil-error', code)
  const head = ['content-type', 'application/grpc', 'grpc-status', String(grpcStatusOfHttp(status)), 'grpc-message', percentEncoded(detail)]
  if (attempts !== undefined) head.push('x-vigil-attempts', String(attempts))
  // A flat list: an HTTP/2 response holds it until end(), which sends it as one HEADERS frame with END_STREAM.
  res.writeHead(200, head)
  res.end()
}
