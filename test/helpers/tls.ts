// Certificates made at test time with openssl: a CA, a server certificate for 127.0.0.1 / localhost / provider.test,
// and a client certificate, all signed by that CA.
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'

export interface Certs {
  dir: string
  caFile: string
  ca: Buffer
  certFile: string
  keyFile: string
  cert: Buffer
  key: Buffer
  clientCertFile: string
  clientKeyFile: string
}

/** Needs the openssl command (Debian package "openssl", part of the base image). */
export function makeCerts(dir: string): Certs {
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=vigil test CA')
  const sign = (name: string, cn: string, ext: string): void => {
    writeFileSync(`${dir}/${name}.ext`, `${ext}\n`)
    ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`)
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`)
  }
  sign('server', 'provider.test', 'subjectAltName=DNS:provider.test,DNS:localhost,IP:127.0.0.1')
  sign('client', 'vigil client', 'extendedKeyUsage=clientAuth')
  return {
    dir,
    caFile: `${dir}/ca.pem`,
    ca: readFileSync(`${dir}/ca.pem`),
    certFile: `${dir}/server.pem`,
    keyFile: `${dir}/server.key`,
    cert: readFileSync(`${dir}/server.pem`),
    key: readFileSync(`${dir}/server.key`),
    clientCertFile: `${dir}/client.pem`,
    clientKeyFile: `${dir}/client.key`,
  }
}
