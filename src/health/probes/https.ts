// HTTPS check: the HTTP check over TLS, with SNI and an option to accept any certificate.
import { isIP } from 'node:net'
import type { CheckSpec, HttpCheck } from '../check-spec.js'
import { HttpProbe } from './http.js'

export function httpsProbe(host: string, authority: string, http: HttpCheck, tls: NonNullable<CheckSpec['tls']>): HttpProbe {
  // SNI carries names only; an IP address is never sent as a server name.
  const servername = tls.serverName ?? (isIP(host) === 0 ? host : undefined)
  return new HttpProbe(`https://${authority}`, authority, http, { servername, rejectUnauthorized: !tls.skipVerify })
}
