// Which clients may tell vigil who the original client was (Forwarded / X-Forwarded-*): the trustedProxies CIDRs.
import { BlockList, isIP } from 'node:net'

export interface Cidr {
  address: string
  prefix: number
  family: 'ipv4' | 'ipv6'
}

/** "10.0.0.0/8", "::1", "fd00::/8" into its parts; undefined when it is not an address or the prefix is too long. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/')
  const address = slash === -1 ? text : text.slice(0, slash)
  const version = isIP(address)
  if (version === 0) return undefined
  const max = version === 4 ? 32 : 128
  const prefix = slash === -1 ? max : Number(text.slice(slash + 1))
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (slash !== -1 && !/^[0-9]{1,3}$/.test(text.slice(slash + 1)))) return undefined
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' }
}

const MAPPED_V4 = /^::ffff:([0-9.]+)$/i

export class TrustedProxies {
  private readonly list = new BlockList()

  /** `cidrs` were validated with the config (see parseCidr in config/load.ts). */
  constructor(cidrs: readonly string[]) {
    for (const text of cidrs) {
      const c = parseCidr(text) as Cidr
      this.list.addSubnet(c.address, c.prefix, c.family)
    }
  }

  /** Whether the peer at `address` (a socket's remoteAddress) is one of the trusted proxies. */
  has(address: string | undefined): boolean {
    if (address === undefined) return false
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; match them against IPv4 blocks too.
    const v4 = MAPPED_V4.exec(address)
    if (v4 !== null) return this.list.check(v4[1] as string, 'ipv4') || this.list.check(address, 'ipv6')
    return this.list.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')
  }

  static from(cidrs: readonly string[] | undefined): TrustedProxies | undefined {
    return cidrs === undefined || cidrs.length === 0 ? undefined : new TrustedProxies(cidrs)
  }
}
