// Routes pick an upstream from the request's host and path; first match wins.
import type { Listener } from '../config/schema.js'
import type { Upstream } from '../upstream/upstream.js'

interface CompiledRoute {
  /** Exact host (lowercase), or a suffix like ".example.com" for "*.example.com", or undefined for any host. */
  host: string | undefined
  wildcard: boolean
  pathPrefix: string
  upstream: Upstream
}

export class Router {
  private readonly routes: readonly CompiledRoute[]

  constructor(listener: Listener, upstreams: ReadonlyMap<string, Upstream>) {
    const get = (name: string): Upstream => {
      const u = upstreams.get(name)
      // Config validation rejects unknown names, so this only fires on a programming error.
      if (u === undefined) throw new Error(`listener ${listener.address}: unknown upstream ${name}`)
      return u
    }
    if (listener.upstream !== undefined) {
      this.routes = [{ host: undefined, wildcard: false, pathPrefix: '/', upstream: get(listener.upstream) }]
    } else {
      this.routes = (listener.routes ?? []).map((r) => {
        const host = r.host?.toLowerCase()
        const wildcard = host?.startsWith('*.') ?? false
        return { host: wildcard ? host?.slice(1) : host, wildcard, pathPrefix: r.pathPrefix ?? '/', upstream: get(r.upstream) }
      })
    }
  }

  /** `host` is the Host header (or absolute-form authority) as received; the port is ignored. */
  match(host: string | undefined, path: string): Upstream | undefined {
    // Lowercased only when a route looks at the host: a listener with one upstream never does.
    let name: string | undefined
    for (const r of this.routes) {
      if (r.host !== undefined) {
        if (host === undefined) continue
        name ??= hostname(host)
        if (r.wildcard ? !name.endsWith(r.host) : name !== r.host) continue
      }
      // A route names a group: the request gets the generation live now (admin and DNS changes publish new ones).
      if (path.startsWith(r.pathPrefix)) return r.upstream.group.live
    }
    return undefined
  }
}

function hostname(host: string): string {
  const end = host.startsWith('[') ? host.indexOf(']') + 1 : host.indexOf(':')
  return (end > 0 ? host.slice(0, end) : host).toLowerCase()
}
