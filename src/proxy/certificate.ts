// A TLS listener's certificate and key: read from their files and proven to be a pair before anything uses them,
// so a bad pair is a config error (at check, start and reload) rather than a failed handshake later.
import { readFileSync } from 'node:fs'
import { createSecureContext, type SecureContextOptions } from 'node:tls'

export interface CertificateFiles {
  cert: string
  key: string
}

/** The files' contents; throws when either is not PEM or the key does not belong to the certificate. */
export function readCertificate(files: CertificateFiles): SecureContextOptions {
  const options = { cert: readFileSync(files.cert), key: readFileSync(files.key) }
  createSecureContext(options)
  return options
}
