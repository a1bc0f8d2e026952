// How the admin listener answers: every body has a content type and length and is never cached; every error is
// one JSON shape, `{"error": "what went wrong, in words", "code": "a stable name", ...details}`.
import type { ServerResponse } from 'node:http'

/** Stable names of admin errors, for scripts that branch on them. */
export type ErrorCode =
  | 'unauthorized'
  | 'bad_path'
  | 'not_found'
  | 'method_not_allowed'
  | 'bad_request'
  | 'invalid_body'
  | 'body_too_large'
  | 'conflict'
  | 'reload_rejected'
  | 'internal'

export function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra })
  res.end(body)
}

export function sendJson(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  send(res, status, 'application/json', `${JSON.stringify(body)}\n`, extra)
}

export function sendError(res: ServerResponse, status: number, code: ErrorCode, message: string, details: Record<string, unknown> = {}, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: message, code, ...details }, headers)
}
