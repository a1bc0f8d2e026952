// Header rules for both directions: hop-by-hop headers stay on their hop; forwarding headers describe the client.

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

/** Extra header names listed in Connection, beyond the ones already dropped; undefined when there are none. */
function connectionNamed(value: string | undefined): Set<string> | undefined {
  if (value === undefined) return undefined
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
}

const join = (a: string | undefined, b: string): string => (a === undefined ? b : `${a}, ${b}`)

/** Request headers for the provider, as a flat [name, value, ...] list (undici accepts it as is). */
export function requestHeaders(raw: readonly string[], connection: string | undefined, fwd: ForwardedFor): string[] {
  const named = connectionNamed(connection)
  const trusted = fwd.trusted === true
  const out: string[] = []
  let xff: string | undefined
  let xfp: string | undefined
  let xfh: string | undefined
  let forwarded: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const lower = name.toLowerCase()
    if (named !== undefined && named.has(lower)) continue
    const rule = REQUEST_RULES.get(lower)
    const value = raw[i + 1] as string
    if (rule === undefined) {
      out.push(name, value)
      continue
    }
    if (!trusted || rule === Rule.Drop) continue
    if (rule === Rule.ForwardedFor) xff = join(xff, value)
    else if (rule === Rule.Forwarded) forwarded = join(forwarded, value)
    else if (rule === Rule.ForwardedProto) xfp ??= value
    else xfh ??= value
  }
  if (fwd.host !== undefined) out.push('host', fwd.host)
  out.push('x-forwarded-for', join(xff, fwd.clientAddress), 'x-forwarded-proto', xfp ?? fwd.proto)
  const originalHost = xfh ?? fwd.originalHost
  if (originalHost !== undefined) out.push('x-forwarded-host', originalHost)
  out.push('forwarded', join(forwarded, forwardedElement(fwd)))
  return out
}

/** This hop's RFC 7239 element: `for=...;proto=...;host=...`, quoting where the grammar needs it. */
export function forwardedElement(fwd: ForwardedFor): string {
  const node = fwd.clientAddress.includes(':') ? `"[${fwd.clientAddress}]"` : fwd.clientAddress === '' ? 'unknown' : fwd.clientAddress
  const host = fwd.originalHost === undefined ? '' : `;host=${quoted(fwd.originalHost)}`
  return `for=${node};proto=${fwd.proto}${host}`
}

function quoted(value: string): string {
  return /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`
}

/** Response headers for the client, from undici's raw header buffers, as a flat list for writeHead. */
export function responseHeaders(raw: readonly Buffer[]): string[] {
  let connection: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as Buffer
    if (name.length === 10 && name.toString('latin1').toLowerCase() === 'connection') {
      connection = connection === undefined ? (raw[i + 1] as Buffer).toString('latin1') : `${connection},${(raw[i + 1] as Buffer).toString('latin1')}`
    }
  }
  const named = connectionNamed(connection)
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as Buffer).toString('latin1')
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || (named !== undefined && named.has(lower))) continue
    out.push(name, (raw[i + 1] as Buffer).toString('latin1'))
  }
  return out
}

/** Trailers arrive as a flat list of strings from undici; drop hop-by-hop names (none should be there). */
export function trailerPairs(raw: readonly (string | Buffer)[]): [string, string][] {
  const out: [string, string][] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = String(raw[i])
    if (!HOP_BY_HOP.has(name.toLowerCase())) out.push([name, String(raw[i + 1])])
  }
  return out
}
