// Answers vigil gives itself: short text, a stable x-vigil-error code, never a stack trace.
import type { ServerResponse } from 'node:http'

const REASON: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
}

/** `attempts`, when given, is how many providers were tried: it goes in the text and in `x-vigil-attempts`. */
export function sendError(res: ServerResponse, status: number, code: string, detail: string, attempts?: number): void {
  if (res.headersSent || res.destroyed) {
    res.destroy()
    return
  }
  const tries = attempts === undefined ? '' : ` (${attempts} attempt${attempts === 1 ? '' : 's'})`
  const body = `${status} ${REASON[status] ?? ''}: ${detail}${tries}\n`
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-vigil-error': code,
    'cache-control': 'no-store',
    ...(attempts === undefined ? undefined : { 'x-vigil-attempts': attempts }),
  })
  res.end(body)
}
