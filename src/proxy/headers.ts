// Header rules for both directions: hop-by-hop headers stay on their hop; forwarding headers describe the client.
import { isGrpc } from './grpc.js'

/** RFC 9110 7.6.1 plus the de-facto ones; `expect` is answered by vigil itself (Node sends 100 Continue). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** What the request side does with a header beyond hop-by-hop removal. */
const enum Rule {
  Drop = 1,
  ForwardedFor,
  ForwardedProto,
  ForwardedHost,
  Forwarded,
}

const REQUEST_RULES = new Map<string, Rule>([
  ['expect', Rule.Drop],
  ['host', Rule.Drop],
  ['x-forwarded-for', Rule.ForwardedFor],
  ['x-forwarded-proto', Rule.ForwardedProto],
  ['x-forwarded-host', Rule.ForwardedHost],
  ['forwarded', Rule.Forwarded],
])
for (const name of HOP_BY_HOP) REQUEST_RULES.set(name, Rule.Drop)

const COMMON_CONNECTION = new Set(['keep-alive', 'Keep-Alive', 'close', 'Close', 'upgrade', 'Upgrade'])

/** Extra header names listed in Connection, beyond the ones already dropped; undefined when there are none. */
function connectionNamed(value: string | undefined): Set<string> | undefined {
  // The usual values (every keep-alive response from nginx says one of them) name nothing else: no split.
  if (value === undefined || COMMON_CONNECTION.has(value)) return undefined
  let named: Set<string> | undefined
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase()
    if (name === '' || name === 'close' || HOP_BY_HOP.has(name)) continue
    ;(named ??= new Set()).add(name)
  }
  return named
}

export interface ForwardedFor {
  clientAddress: string
  proto: 'http' | 'https'
  /** Host to send upstream (the client's, unless the upstream overrides it). */
  host: string | undefined
  /** The client's original Host, for X-Forwarded-Host. */
  originalHost: string | undefined
  /**
   * The client is a trusted proxy (listener `trustedProxies`): its Forwarded / X-Forwarded-* headers are kept
   * and this hop is appended. Otherwise they are replaced, so a client cannot claim another address.
   */
  trusted?: boolean
  /** Forward `TE: trailers` when the client sent it: HTTP/2 providers only (gRPC needs it; HTTP/1.1 ones never see TE). */
  te?: boolean
  /**
   * false (listener `forwardedHeaders: false`): this hop adds no forwarding headers and the client's own go on as
   * it sent them, as nginx and HAProxy forward unless told to add them.
   */
  addHop?: boolean
}

const join = (a: string | undefined, b: string): string => (a === undefined ? b : `${a}, ${b}`)

/** Lengths of every name REQUEST_RULES and readRequestHead look at: a header of another length is kept without lowercasing it. */
const NOTED_LENGTHS = new Uint8Array(32)
for (const name of [...REQUEST_RULES.keys(), 'content-length', 'content-type', 'grpc-timeout']) NOTED_LENGTHS[name.length] = 1

/**
 * What one pass over a request's raw headers learns: the routing Host, the limits' Host count, the body framing,
 * the Connection header, the client's forwarding headers, and the end-to-end headers to send on. Read once per
 * request (the listener), so nothing on the path builds Node's `req.headers` object.
 */
export class RequestHead {
  /** End-to-end headers in order: no Host, no hop-by-hop, no forwarding headers (forwardHeaders adds this hop's). */
  readonly list: string[] = []
  /** The first Host value, and how many Host headers there were (more than one is rejected). */
  host: string | undefined = undefined
  hosts = 0
  /** Every Connection value, joined as Node joins them. */
  connection: string | undefined = undefined
  /** The client asked for trailers (`TE: trailers`, which gRPC requires): forwarded to HTTP/2 providers. */
  trailers = false
  contentLength: string | undefined = undefined
  /** A Transfer-Encoding header was sent. */
  chunked = false
  /** HTTP/2: a body framed by its stream's end, not by a header (set by the listener from the HEADERS frame). */
  streamed = false
  /** A gRPC call (content-type application/grpc...), and its grpc-timeout header. */
  grpc = false
  grpcTimeout: string | undefined = undefined
  /** The client's X-Forwarded-For, -Proto, -Host and Forwarded values, used only when the client is trusted. */
  xff: string | undefined = undefined
  xfp: string | undefined = undefined
  xfh: string | undefined = undefined
  forwarded: string | undefined = undefined

  constructor(readonly raw: readonly string[]) {}
}

export function readRequestHead(raw: readonly string[]): RequestHead {
  const head = new RequestHead(raw)
  const list = head.list
  let authority: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    // HTTP/2 pseudo-headers: :authority is the Host; :method, :path and :scheme are the request line's.
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority') authority = value
      continue
    }
    if (name.length >= 32 || NOTED_LENGTHS[name.length] === 0) {
      list.push(name, value)
      continue
    }
    const lower = name.toLowerCase()
    const rule = REQUEST_RULES.get(lower)
    if (rule === undefined) {
      if (lower === 'content-length') head.contentLength ??= value
      else if (lower === 'content-type') head.grpc ||= isGrpc(value)
      else if (lower === 'grpc-timeout') head.grpcTimeout ??= value
      list.push(name, value)
    } else if (rule === Rule.Drop) {
      if (lower === 'host') {
        if (head.hosts++ === 0) head.host = value
      } else if (lower === 'connection') head.connection = join(head.connection, value)
      else if (lower === 'transfer-encoding') head.chunked = true
      else if (lower === 'te') head.trailers ||= /(^|,)\s*trailers\s*(;|,|$)/i.test(value)
    } else if (rule === Rule.ForwardedFor) head.xff = join(head.xff, value)
    else if (rule === Rule.Forwarded) head.forwarded = join(head.forwarded, value)
    else if (rule === Rule.ForwardedProto) head.xfp ??= value
    else head.xfh ??= value
  }
  // RFC 9113 8.3.1: a Host beside :authority must name the same; a different one is a second Host (400).
  if (authority !== undefined && head.host !== authority && head.hosts++ === 0) head.host = authority
  return head
}

/**
 * Request headers for the provider, as a flat [name, value, ...] list (undici accepts it as is): the head's list
 * (consumed: one request, one list) plus this hop's forwarding headers. `element` is this hop's Forwarded element
 * when the caller has it already (it is the same for every request of a connection and Host).
 */
export function forwardHeaders(head: RequestHead, fwd: ForwardedFor, connection = head.connection, element?: string): string[] {
  const named = connectionNamed(connection)
  // Headers the client named in Connection are hop-by-hop too; rare enough to take the long way, with the
  // forwarding headers it named left out as well.
  if (named !== undefined) head = exceptNamed(head.raw, named)
  const out = head.list
  const trusted = fwd.trusted === true
  if (fwd.host !== undefined) out.push('host', fwd.host)
  if (fwd.te === true && head.trailers) out.push('te', 'trailers')
  if (fwd.addHop === false) return passedOn(head, out)
  out.push('x-forwarded-for', trusted ? join(head.xff, fwd.clientAddress) : fwd.clientAddress, 'x-forwarded-proto', (trusted ? head.xfp : undefined) ?? fwd.proto)
  const originalHost = (trusted ? head.xfh : undefined) ?? fwd.originalHost
  if (originalHost !== undefined) out.push('x-forwarded-host', originalHost)
  element ??= forwardedElement(fwd)
  out.push('forwarded', trusted ? join(head.forwarded, element) : element)
  return out
}

/** The client's own forwarding headers, unchanged (joined as Node joins repeated ones), for a hop that adds none. */
function passedOn(head: RequestHead, out: string[]): string[] {
  if (head.xff !== undefined) out.push('x-forwarded-for', head.xff)
  if (head.xfp !== undefined) out.push('x-forwarded-proto', head.xfp)
  if (head.xfh !== undefined) out.push('x-forwarded-host', head.xfh)
  if (head.forwarded !== undefined) out.push('forwarded', head.forwarded)
  return out
}

/** The head of `raw` as if the headers in `named` had not been sent. */
function exceptNamed(raw: readonly string[], named: ReadonlySet<string>): RequestHead {
  const kept: string[] = []
  for (let i = 0; i < raw.length; i += 2) if (!named.has((raw[i] as string).toLowerCase())) kept.push(raw[i] as string, raw[i + 1] as string)
  return readRequestHead(kept)
}

/** Request headers for the provider from raw headers in one call (upgrades, tests). */
export function requestHeaders(raw: readonly string[], connection: string | undefined, fwd: ForwardedFor): string[] {
  return forwardHeaders(readRequestHead(raw), fwd, connection)
}

/** This hop's RFC 7239 element: `for=...;proto=...;host=...`, quoting where the grammar needs it. */
export function forwardedElement(fwd: ForwardedFor): string {
  const node = fwd.clientAddress.includes(':') ? `"[${fwd.clientAddress}]"` : fwd.clientAddress === '' ? 'unknown' : fwd.clientAddress
  const host = fwd.originalHost === undefined ? '' : `;host=${quoted(fwd.originalHost)}`
  return `for=${node};proto=${fwd.proto}${host}`
}

/**
 * This hop as one client connection sees it: its address, scheme and trust, and its Forwarded element for the
 * last Host it sent (the same for every request of a keep-alive connection, so it is quoted once).
 */
export class ClientHop {
  private host: string | undefined = undefined
  private element: string | undefined = undefined

  constructor(
    readonly clientAddress: string,
    readonly proto: 'http' | 'https',
    readonly trusted: boolean,
    /** The listener adds forwarding headers (its `forwardedHeaders`). */
    readonly addHop = true,
  ) {}

  elementFor(originalHost: string | undefined): string {
    if (this.element === undefined || originalHost !== this.host) {
      this.host = originalHost
      this.element = forwardedElement({ clientAddress: this.clientAddress, proto: this.proto, host: undefined, originalHost })
    }
    return this.element
  }
}

function quoted(value: string): string {
  return /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`
}

/** Lengths of the hop-by-hop names: a response header of another length is passed on without lowercasing it. */
const HOP_LENGTHS = new Uint8Array(32)
for (const name of HOP_BY_HOP) HOP_LENGTHS[name.length] = 1

/**
 * Response headers for the client, from undici's raw header buffers, as a flat list for writeHead: one pass that
 * lowercases only names as long as a hop-by-hop one, and a second only when Connection names further headers.
 */
export function responseHeaders(raw: readonly (Buffer | string)[]): string[] {
  let connection: string | undefined
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = text(raw[i] as Buffer | string)
    if (name.length < 32 && HOP_LENGTHS[name.length] === 1) {
      const lower = name.toLowerCase()
      if (HOP_BY_HOP.has(lower)) {
        if (lower === 'connection') connection = join(connection, text(raw[i + 1] as Buffer | string))
        continue
      }
    }
    out.push(name, text(raw[i + 1] as Buffer | string))
  }
  const named = connectionNamed(connection)
  if (named === undefined) return out
  const kept: string[] = []
  for (let i = 0; i < out.length; i += 2) if (!named.has((out[i] as string).toLowerCase())) kept.push(out[i] as string, out[i + 1] as string)
  return kept
}

/** undici hands header buffers; the HTTP/2 pool (src/upstream/h2-pool.ts) hands strings. */
const text = (b: Buffer | string): string => (typeof b === 'string' ? b : b.toString('latin1'))

/** Trailers arrive as a flat list of strings from undici; drop hop-by-hop names (none should be there). */
export function trailerPairs(raw: readonly (string | Buffer)[]): [string, string][] {
  const out: [string, string][] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = String(raw[i])
    if (!HOP_BY_HOP.has(name.toLowerCase())) out.push([name, String(raw[i + 1])])
  }
  return out
}
