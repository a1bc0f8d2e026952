// A listener accepts client connections on one address and hands each request to its router.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Listener as ListenerConfig } from '../config/schema.js'
import type { Upstream } from '../upstream/upstream.js'
import { Router } from './router.js'
import { forward, parseTarget, VigilRequest, VigilResponse, type ForwardHooks } from './forward.js'
import { sendError } from './respond.js'
import { listenOn } from '../net.js'

export class ProxyListener {
  readonly server: Server<typeof VigilRequest, typeof VigilResponse>
  private readonly router: Router
  /** Set once shutdown starts: every response from then on closes its connection. */
  private closing = false

  constructor(
    readonly config: ListenerConfig,
    upstreams: ReadonlyMap<string, Upstream>,
    private readonly hooks: ForwardHooks,
  ) {
    this.router = new Router(config, upstreams)
    this.server = createServer({ IncomingMessage: VigilRequest, ServerResponse: VigilResponse, keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => this.onRequest(req, res))
  }

  private onRequest(req: VigilRequest, res: VigilResponse): void {
    // Keep-alive clients would otherwise keep a closing server busy forever.
    if (this.closing) res.shouldKeepAlive = false
    const target = parseTarget(req.url ?? '/', req.headers.host)
    if (target === undefined) {
      sendError(res, 400, 'bad_request_target', 'request target must be a path or an absolute URL')
      this.hooks.done()
      return
    }
    const upstream = this.router.match(target.host, target.path)
    if (upstream === undefined) {
      sendError(res, 404, 'no_route', 'no route matches this host and path')
      this.hooks.done()
      return
    }
    forward(req, res, upstream, target, this.hooks)
  }

  listen(): Promise<AddressInfo> {
    return listenOn(this.server, this.config.address)
  }

  /** Stop accepting; idle keep-alive connections close now, busy ones after their response. */
  stopAccepting(): Promise<void> {
    this.closing = true
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeIdleConnections()
    return closed
  }

  closeAll(): void {
    this.server.closeAllConnections()
  }
}
