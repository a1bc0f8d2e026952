// Answers vigil gives itself: short text, a stable x-vigil-error code, never a stack trace.
import type { ServerResponse } from 'node:http'

const REASON: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
}

export function sendError(res: ServerResponse, status: number, code: string, detail: string): void {
  if (res.headersSent || res.destroyed) {
    res.destroy()
    return
  }
  const body = `${status} ${REASON[status] ?? ''}: ${detail}\n`
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-vigil-error': code,
    'cache-control': 'no-store',
  })
  res.end(body)
}
