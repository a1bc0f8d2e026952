// TLS for checks: SNI and an option to accept any certificate.
import { isIP } from 'node:net'
import type { CheckSpec } from '../check-spec.js'

export interface ProbeTls {
  servername: string | undefined
  rejectUnauthorized: boolean
}

export function probeTls(host: string, tls: NonNullable<CheckSpec['tls']>): ProbeTls {
  // SNI carries names only; an IP address is never sent as a server name.
  return { servername: tls.serverName ?? (isIP(host) === 0 ? host : undefined), rejectUnauthorized: !tls.skipVerify }
}
