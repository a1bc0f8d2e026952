import type { Server } from 'node:net'
import type { AddressInfo } from 'node:net'

/** "host:port" or "[v6]:port" into its parts; addresses are validated by the config schema first. */
export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':')
  return { host: address.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(colon + 1)) }
}

/** Listen on a config address; port 0 picks a free port, which the returned address tells. */
export function listenOn(server: Server, address: string): Promise<AddressInfo> {
  const { host, port } = splitAddress(address)
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve(server.address() as AddressInfo)
    })
  })
}
