// How vigil talks TLS to HTTPS providers: SNI, CA bundle, optional client certificate, verification on by default.
import { readFileSync } from 'node:fs'
import { createSecureContext } from 'node:tls'
import { isIP } from 'node:net'
import { Pool, buildConnector, type Dispatcher } from 'undici'
import type { UpstreamTls } from '../config/schema.js'

export interface ClientTls {
  /** SNI and the name the certificate must match; an IP literal means no SNI (RFC 6066) and an IP match. */
  servername: string
  ca: Buffer | undefined
  cert: Buffer | undefined
  key: Buffer | undefined
  rejectUnauthorized: boolean
}

/**
 * An upstream's TLS settings with the PEM files read and proven to parse; `servername` is left undefined when each
 * server's own host is the name. Undefined when the upstream is plain HTTP. Throws an error naming the setting
 * (`tls.ca "/etc/ca": EISDIR`): a reload prepares with this, so a file that broke after validation fails the
 * reload instead of its swap.
 */
export function loadClientTls(config: boolean | UpstreamTls | undefined, upstreamHost: string | undefined): Partial<ClientTls> & Omit<ClientTls, 'servername'> | undefined {
  if (config === undefined || config === false) return undefined
  const c = config === true ? {} : config
  const read = (key: 'ca' | 'cert' | 'key'): Buffer | undefined => {
    const file = c[key]
    if (file === undefined) return undefined
    try {
      return readFileSync(file)
    } catch (err) {
      throw new Error(`tls.${key} ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  const tls = { servername: c.servername ?? hostOnly(upstreamHost), ca: read('ca'), cert: read('cert'), key: read('key'), rejectUnauthorized: c.verify ?? true }
  try {
    createSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key })
  } catch (err) {
    throw new Error(`tls: ${(err as Error).message}`)
  }
  return tls
}

function hostOnly(host: string | undefined): string | undefined {
  if (host === undefined) return undefined
  const end = host.startsWith('[') ? host.indexOf(']') + 1 : host.indexOf(':')
  return end > 0 ? host.slice(0, end).replace(/^\[(.*)\]$/, '$1') : host
}

/** Options for tls.connect / https.Agent: no SNI for an IP address, as RFC 6066 requires. */
export function tlsConnectOptions(tls: ClientTls): { servername: string | undefined; ca: Buffer | undefined; cert: Buffer | undefined; key: Buffer | undefined; rejectUnauthorized: boolean } {
  return { servername: isIP(tls.servername) === 0 ? tls.servername : undefined, ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: tls.rejectUnauthorized }
}

/**
 * A Pool to an https:// origin whose SNI is fixed by the config. undici otherwise derives each request's SNI from
 * its Host header, which here is the client's: a client could choose the certificate name vigil checks, and every
 * change of Host would tear down the pool's connections.
 */
export class TlsPool extends Pool {
  private readonly servername: string

  constructor(origin: string, options: Pool.Options, tls: ClientTls, connectTimeout: number) {
    const connector = buildConnector({ ...tlsConnectOptions(tls), timeout: connectTimeout })
    const sni = tlsConnectOptions(tls).servername
    super(origin, {
      ...options,
      // undici passes the request's servername to the connector; replace it by the configured one (none for an IP).
      connect: (opts, callback) => connector({ ...opts, servername: sni }, callback),
    })
    this.servername = tls.servername
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    ;(options as { servername?: string }).servername = this.servername
    return super.dispatch(options, handler)
  }
}
