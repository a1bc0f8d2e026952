import type { Server } from 'node:net'
import type { AddressInfo } from 'node:net'

/** "host:port" or "[v6]:port" into its parts; addresses are validated by the config schema first. */
export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':')
  return { host: address.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(colon + 1)) }
}

/** The host a bare "8080" listens on: loopback, so a sidecar is never exposed by a short form. */
export const LOOPBACK = '127.0.0.1'

/**
 * A listen address (schema `ListenAddress`) into its parts: "8080" is loopback, ":8080" every interface
 * (host undefined: Node binds `::` with IPv4 mapped, or 0.0.0.0 without IPv6), anything else host:port.
 */
export function listenTarget(address: string): { host: string | undefined; port: number } {
  if (!address.includes(':')) return { host: LOOPBACK, port: Number(address) }
  const { host, port } = splitAddress(address)
  return { host: host === '' ? undefined : host, port }
}

/** One spelling per listen address, so "8080" and "127.0.0.1:8080" are seen as the same. */
export function canonicalListenAddress(address: string): string {
  const { host, port } = listenTarget(address)
  return host === undefined ? `:${port}` : `${host.includes(':') ? `[${host}]` : host}:${port}`
}

/** Listen on a config address; port 0 picks a free port, which the returned address tells. */
export function listenOn(server: Server, address: string): Promise<AddressInfo> {
  const { host, port } = listenTarget(address)
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    const bound = (): void => {
      server.off('error', reject)
      resolve(server.address() as AddressInfo)
    }
    if (host === undefined) server.listen(port, bound)
    else server.listen(port, host, bound)
  })
}
