// TLS for checks: the group's own settings (CA, client certificate, servername, verify) when it has them, SNI, and
// `active.tls` to name the server or accept any certificate.
import { isIP } from 'node:net'
import type { CheckSpec } from '../check-spec.js'

export interface ProbeTls {
  servername: string | undefined
  rejectUnauthorized: boolean
  ca?: Buffer | undefined
  cert?: Buffer | undefined
  key?: Buffer | undefined
}

export function probeTls(host: string, tls: NonNullable<CheckSpec['tls']>): ProbeTls {
  const group = tls.group?.material
  const name = tls.serverName ?? group?.servername ?? host
  // SNI carries names only; an IP address is never sent as a server name.
  const out: ProbeTls = { servername: isIP(name) === 0 ? name : undefined, rejectUnauthorized: !tls.skipVerify && (group?.rejectUnauthorized ?? true) }
  if (group !== undefined) {
    out.ca = group.ca
    out.cert = group.cert
    out.key = group.key
  }
  return out
}
