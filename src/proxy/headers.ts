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

const REQUEST_ONLY_DROP = new Set(['expect', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'host'])

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
}

/** Request headers for the provider, as a flat [name, value, ...] list (undici accepts it as is). */
export function requestHeaders(raw: readonly string[], connection: string | undefined, fwd: ForwardedFor): string[] {
  const named = connectionNamed(connection)
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || REQUEST_ONLY_DROP.has(lower) || (named !== undefined && named.has(lower))) continue
    out.push(name, raw[i + 1] as string)
  }
  if (fwd.host !== undefined) out.push('host', fwd.host)
  out.push('x-forwarded-for', fwd.clientAddress, 'x-forwarded-proto', fwd.proto)
  if (fwd.originalHost !== undefined) out.push('x-forwarded-host', fwd.originalHost)
  return out
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
