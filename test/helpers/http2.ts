// An HTTP/2 request from a node:http2 client session, collected whole: status, headers, trailers and body.
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2'

export interface H2Reply {
  status: number
  headers: IncomingHttpHeaders
  trailers: IncomingHttpHeaders | undefined
  body: string
}

/** One stream on `session` with `headers` (and `body`, ending the stream after it). */
export function h2Request(session: ClientHttp2Session, headers: Record<string, string>, body?: string): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined })
    let trailers: IncomingHttpHeaders | undefined
    let head: IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    req.on('response', (h) => (head = h))
    req.on('trailers', (tr) => (trailers = tr))
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('error', reject)
    req.on('end', () => resolve({ status: Number(head[':status']), headers: head, trailers, body: Buffer.concat(chunks).toString() }))
    if (body !== undefined) req.end(body)
  })
}
