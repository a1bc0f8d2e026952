// gRPC check: the standard health checking protocol (grpc.health.v1.Health/Check, grpc/doc/health-checking.md)
// on one HTTP/2 session per checked address, cleartext (prior knowledge) or over TLS by ALPN. SERVING passes;
// any other serving status fails under its own name, and a gRPC error (UNIMPLEMENTED: the server has no health
// service) fails as `grpc_NAME` with the server's message.
//
// On node:http2, not undici: undici 7's HTTP/2 client hands its handlers the trailers as an object where they
// expect a raw header list, so `grpc-status` in trailers (where every non-error reply carries it) never arrives.
// The request and reply messages are encoded here by hand: each is one field (a string, an enum), so a protobuf
// library (protobufjs, @bufbuild/protobuf with generated code) would be a runtime dependency for 30 lines, and
// @grpc/grpc-js as a client would bring its own reconnect backoff (up to two minutes) between vigil's checks
// and the provider, delaying the `rise` checks that let a restarted provider back.
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2'
import { GRPC_CODES } from '../../config/schema.js'
import { classifyError } from '../outcome.js'
import { PASSED, TIMED_OUT, type Probe, type ProbeResult } from './probe.js'
import type { ProbeTls } from './tls.js'

const PATH = '/grpc.health.v1.Health/Check'
/** A reply larger than this is not a HealthCheckResponse (which is 2 bytes). */
const MAX_REPLY = 64 * 1024

/** grpc.health.v1.HealthCheckResponse.ServingStatus, by number. */
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN']
/** A varint as protobuf writes it (lengths here; a service name is rarely over 127 bytes). */
function varint(n: number): number[] {
  const out: number[] = []
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return out
}

/** HealthCheckRequest { string service = 1 } in a gRPC length-prefixed frame (1 byte uncompressed, 4 bytes length). */
export function healthRequest(service: string): Buffer {
  const name = Buffer.from(service)
  // proto3 leaves a default (empty) string out.
  const message = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, ...varint(name.length)]), name])
  const frame = Buffer.alloc(5 + message.length)
  frame.writeUInt32BE(message.length, 1)
  message.copy(frame, 5)
  return frame
}

/**
 * The serving status in a HealthCheckResponse frame, or a string saying what is wrong with it. Fields other than
 * `status = 1` are skipped, as protobuf readers do; a missing status is its default, UNKNOWN.
 */
export function servingStatus(reply: Buffer): number | string {
  if (reply.length < 5) return 'no reply message'
  if (reply[0] !== 0) return 'a compressed reply (none was accepted)'
  const end = 5 + reply.readUInt32BE(1)
  if (reply.length < end) return 'a truncated reply message'
  let status = 0
  let i = 5
  const read = (): number => {
    let value = 0
    for (let shift = 0; i < end && shift < 35; shift += 7) {
      const byte = reply[i++] as number
      value += (byte & 0x7f) * 2 ** shift
      if (byte < 0x80) return value
    }
    throw new Error('a malformed varint')
  }
  try {
    while (i < end) {
      const tag = read()
      const wire = tag & 7
      if (wire === 0) {
        const value = read()
        if (tag >>> 3 === 1) status = value
      } else if (wire === 2) {
        // Not `i += read()`: that would add the length to i as it was before the length's own bytes.
        const length = read()
        i += length
      } else if (wire === 1) i += 8
      else if (wire === 5) i += 4
      else return `an unknown wire type ${wire}`
    }
  } catch (err) {
    return (err as Error).message
  }
  return i === end ? status : 'a truncated field'
}

/** What a finished Check call says: its HTTP status, headers, trailers and reply bytes. */
export function verdict(headers: IncomingHttpHeaders, trailers: IncomingHttpHeaders | undefined, reply: Buffer, service: string): ProbeResult {
  const status = Number(headers[':status'])
  if (status !== 200) return { ok: false, reason: `status_${status}` }
  // A trailers-only reply (an immediate error) carries grpc-status in its headers.
  const grpcStatus = trailers?.['grpc-status'] ?? headers['grpc-status']
  if (grpcStatus === undefined) return { ok: false, reason: 'invalid_response', detail: 'no grpc-status in the reply' }
  const code = Number(grpcStatus)
  if (code !== 0) {
    const name = GRPC_CODES[code] ?? String(code)
    const message = grpcMessage(trailers?.['grpc-message'] ?? headers['grpc-message'])
    const detail = code === 12 ? `the server does not implement grpc.health.v1.Health (UNIMPLEMENTED): ${message}` : message
    return { ok: false, reason: `grpc_${name}`, detail }
  }
  const serving = servingStatus(reply)
  if (typeof serving === 'string') return { ok: false, reason: 'invalid_response', detail: serving }
  if (serving === 1) return PASSED
  const name = SERVING_STATUS[serving] ?? `serving_status_${serving}`
  return { ok: false, reason: name, detail: `${service === '' ? 'the server' : `service "${service}"`} is ${name}` }
}

/** grpc-message is percent-encoded. */
function grpcMessage(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value.join(', ') : (value ?? '')
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

export class GrpcProbe implements Probe {
  private session: ClientHttp2Session | undefined = undefined
  private readonly request: Buffer
  private readonly headers: Record<string, string>

  constructor(
    private readonly origin: string,
    authority: string,
    private readonly service: string,
    timeout: number,
    private readonly tls: ProbeTls | undefined,
  ) {
    this.request = healthRequest(service)
    this.headers = {
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: PATH,
      [constants.HTTP2_HEADER_AUTHORITY]: authority,
      'content-type': 'application/grpc',
      te: 'trailers',
      // The server may give up when vigil does.
      'grpc-timeout': `${timeout}m`,
      'user-agent': 'vigil-check',
    }
  }

  /** The session checks share; a new one after the last one closed, failed or was told to go away. */
  private connect(): ClientHttp2Session {
    const current = this.session
    if (current !== undefined && !current.closed && !current.destroyed) return current
    const session = connect(this.origin, this.tls === undefined ? {} : { ...this.tls, ALPNProtocols: ['h2'] })
    // Its errors reach the stream in flight, which reports them; nothing else listens.
    session.on('error', () => {})
    session.once('goaway', () => this.drop(session))
    session.once('close', () => this.drop(session))
    // An idle session between checks must not keep the process alive.
    session.unref()
    this.session = session
    return session
  }

  private drop(session: ClientHttp2Session): void {
    if (this.session === session) this.session = undefined
    session.close()
  }

  check(signal: AbortSignal): Promise<ProbeResult> {
    return new Promise((resolve) => {
      const session = this.connect()
      let stream: ClientHttp2Stream
      try {
        stream = session.request(this.headers)
      } catch (err) {
        this.drop(session)
        resolve({ ok: false, reason: classifyError(err).code, detail: (err as Error).message })
        return
      }
      let headers: IncomingHttpHeaders | undefined
      let trailers: IncomingHttpHeaders | undefined
      const chunks: Buffer[] = []
      let size = 0
      let settled = false
      const done = (result: ProbeResult, keep: boolean): void => {
        if (settled) return
        settled = true
        signal.removeEventListener('abort', aborted)
        if (!stream.closed) stream.close(constants.NGHTTP2_CANCEL)
        // A session that timed out or failed is not trusted again (Envoy closes it too): the next check connects
        // afresh, so a frozen or half-dead connection is never reused and at most one session exists per address.
        if (!keep) {
          this.drop(session)
          session.destroy()
        }
        resolve(result)
      }
      const aborted = (): void => done(TIMED_OUT, false)
      signal.addEventListener('abort', aborted)
      stream.once('response', (h) => (headers = h))
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > MAX_REPLY) done({ ok: false, reason: 'invalid_response', detail: `a reply over ${MAX_REPLY} bytes` }, true)
        else chunks.push(chunk)
      })
      stream.once('trailers', (t) => (trailers = t))
      // A failed connect cancels the pending stream with the socket's error as its cause (ECONNREFUSED...).
      stream.once('error', (err) => done({ ok: false, reason: classifyError(err.cause ?? err).code, detail: err.message }, false))
      stream.once('close', () => {
        if (headers === undefined) {
          done({ ok: false, reason: 'upstream_reset', detail: `the stream closed before a reply (code ${stream.rstCode})` }, false)
        } else done(verdict(headers, trailers, Buffer.concat(chunks), this.service), true)
      })
      stream.end(this.request)
    })
  }

  async close(): Promise<void> {
    this.session?.destroy()
    this.session = undefined
  }
}
