// Answers vigil gives itself: short text, a stable x-vigil-error code, never a stack trace.
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { isGrpc, sendGrpcError } from './grpc.js'

const REASON: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  414: 'URI Too Long',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
}

const errorBody = (status: number, detail: string, attempts?: number): string =>
  `${status} ${REASON[status] ?? ''}: ${detail}${attempts === undefined ? '' : ` (${attempts} attempt${attempts === 1 ? '' : 's'})`}\n`

/** `attempts`, when given, is how many providers were tried: it goes in the text and in `x-vigil-attempts`. */
export function sendError(res: ServerResponse, status: number, code: string, detail: string, attempts?: number): void {
  if (res.headersSent || res.destroyed) {
    res.destroy()
    return
  }
  // A gRPC client reads only grpc-status: it gets its own form of the same answer.
  if (isGrpc(res.req?.headers['content-type'])) return sendGrpcError(res, status, code, detail, attempts)
  const body = errorBody(status, detail, attempts)
  // Set apart so the access log can read it back (headers given to writeHead are not).
  res.setHeader('x-vigil-error', code)
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...(attempts === undefined ? undefined : { 'x-vigil-attempts': attempts }),
  })
  res.end(body)
}

/**
 * The same answer written straight to a socket that has no ServerResponse (a request Node's parser rejected, an
 * upgrade that could not be proxied), then the connection is closed once the answer is flushed.
 */
export function sendRawError(socket: Duplex, status: number, code: string, detail: string): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const body = errorBody(status, detail)
  socket.end(
    `HTTP/1.1 ${status} ${REASON[status] ?? ''}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-vigil-error: ${code}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`,
  )
  // A client that does not read must not keep the socket open: end() alone waits for it.
  socket.once('finish', () => socket.destroy())
  ;(socket as Partial<Pick<Socket, 'setTimeout'>>).setTimeout?.(5_000, () => socket.destroy())
}
