// A listener accepts client connections on one address and hands each request to its router.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { SecureContextOptions } from 'node:tls'
import type { Listener as ListenerConfig } from '../config/schema.js'
import type { Upstream } from '../upstream/upstream.js'
import { Router } from './router.js'
import { forward, parseTarget, VigilRequest, VigilResponse, type ForwardHooks } from './forward.js'
import { sendError, sendRawError } from './respond.js'
import { applyServerLimits, onClientError, onConnectMethod, rejectRequest, resolveLimits, serverOptions, type Limits } from './limits.js'
import { TrustedProxies } from './trust.js'
import { readRequestHead } from './headers.js'
import { UpgradeProxy } from './upgrade.js'
import { serveWithoutUpgrade, triageUpgrade } from './upgrade-triage.js'
import { listenOn } from '../net.js'
import { readCertificate } from './certificate.js'
import { constants, type Http2Session } from 'node:http2'
import { abandoned, createHttp2Server, guardSession, resolveHttp2Limits, VigilH2Request } from './http2.js'

export class ProxyListener {
  readonly server: Server<typeof VigilRequest, typeof VigilResponse>
  private router: Router
  private readonly hooks: ForwardHooks
  private readonly limits: Limits
  readonly upgrades: UpgradeProxy
  /** Set once shutdown starts: every response from then on closes its connection. */
  private closing = false
  /** Open HTTP/2 client sessions (listener `http2`), sent GOAWAY at shutdown. */
  private readonly sessions = new Set<Http2Session>()

  constructor(
    public config: ListenerConfig,
    upstreams: ReadonlyMap<string, Upstream>,
    hooks: ForwardHooks,
  ) {
    this.router = new Router(config, upstreams)
    this.hooks = { ...hooks, tls: config.tls !== undefined, trust: TrustedProxies.from(config.trustedProxies), forwardedHeaders: config.forwardedHeaders !== false }
    const limits = resolveLimits(config.limits)
    this.limits = limits
    const options = { ...serverOptions(limits), IncomingMessage: VigilRequest, ServerResponse: VigilResponse }
    const onRequest = (req: VigilRequest, res: VigilResponse): void => this.onRequest(req, res)
    if (config.http2 === true) this.server = this.createHttp2(limits, onRequest)
    else
      this.server =
        config.tls === undefined
          ? createServer(options, onRequest)
          : (createHttpsServer({ ...options, ...readCertificate(config.tls) }, onRequest) as unknown as Server<
              typeof VigilRequest,
              typeof VigilResponse
            >)
    applyServerLimits(this.server, limits)
    const access = this.hooks.access
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const answer = onClientError(err, socket)
      if (answer !== undefined) access.rejected(socket, answer.status, answer.code)
    })
    this.server.on('connect', (req: IncomingMessage, socket: Duplex) => {
      const answer = onConnectMethod(req, socket)
      access.rejected(socket, answer.status, answer.code)
    })
    this.upgrades = new UpgradeProxy(this.router, this.hooks)
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head))
  }

  /**
   * Node's HTTP/2 server; with TLS its HTTP/1.1 half is Node's own HTTP/1.1 machinery, which reads its limits from
   * the server object, so the same options are set on it. HTTP/2 streams arrive as VigilH2Request/Response, which
   * forward() takes like their HTTP/1.1 counterparts (the typing says so: see http2.ts).
   */
  private createHttp2(limits: Limits, onRequest: (req: VigilRequest, res: VigilResponse) => void): Server<typeof VigilRequest, typeof VigilResponse> {
    const h2Limits = resolveHttp2Limits(this.config.limits?.http2)
    const tls = this.config.tls === undefined ? undefined : readCertificate(this.config.tls)
    const h2 = createHttp2Server(limits, h2Limits, tls, { IncomingMessage: VigilRequest, ServerResponse: VigilResponse })
    Object.assign(h2, serverOptions(limits))
    h2.on('request', onRequest as never)
    h2.on('session', (session: Http2Session) => {
      this.sessions.add(session)
      session.once('close', () => this.sessions.delete(session))
      guardSession(session, h2Limits, limits.idleTimeout, this.hooks.log)
      if (this.closing) session.close()
    })
    return h2 as unknown as Server<typeof VigilRequest, typeof VigilResponse>
  }

  private onRequest(req: VigilRequest, res: VigilResponse): void {
    this.hooks.arrived()
    // An HTTP/2 stream the client already reset (rapid reset sends HEADERS and RST_STREAM together), or one of a
    // session over its limits: no work for it, not even a provider's.
    if (req instanceof VigilH2Request && abandoned(req.stream)) {
      req.stream.close(constants.NGHTTP2_CANCEL)
      return this.hooks.done()
    }
    if (this.hooks.access.enabled) this.hooks.access.begin(res)
    // One pass over the raw headers serves the limits, the route and the forwarded headers (see headers.ts).
    const head = (req.head = readRequestHead(req.rawHeaders))
    const rejected = rejectRequest(req, this.limits, head)
    if (rejected !== undefined) {
      res.shouldKeepAlive = false
      sendError(res, rejected.status, rejected.code, rejected.detail)
      this.hooks.done()
      return
    }
    // An HTTP/2 request has a body unless its HEADERS frame ended the stream; Content-Length is optional there.
    if (req instanceof VigilH2Request) head.streamed = !req.stream.endAfterHeaders
    // Keep-alive clients would otherwise keep a closing server busy forever.
    if (this.closing) res.shouldKeepAlive = false
    const target = parseTarget(req.url ?? '/', head.host)
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
    if (res.access !== undefined) res.access.upstream = upstream.name
    forward(req, res, upstream, target, this.hooks)
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const rejected = rejectRequest(req, this.limits)
    if (rejected !== undefined) return this.refuseUpgrade(socket, rejected.status, rejected.code, rejected.detail)
    switch (triageUpgrade(req)) {
      case 'tunnel':
        return this.upgrades.handle(req, socket, head)
      case 'refuse':
        return this.refuseUpgrade(socket, 400, 'bad_websocket_upgrade', 'a WebSocket upgrade is a GET without a body')
      case 'plain':
        // An https server adopts decrypted sockets through 'secureConnection', a plain one through 'connection'.
        return serveWithoutUpgrade(req, socket, head, (s) => this.server.emit(this.hooks.tls === true ? 'secureConnection' : 'connection', s))
    }
  }

  private refuseUpgrade(socket: Duplex, status: number, code: string, detail: string): void {
    sendRawError(socket, status, code, detail)
    this.hooks.access.rejected(socket, status, code)
  }

  /**
   * On reload: the same socket, new routes (and the new upstream instances), swapped in one assignment.
   * Only routes change here (and the certificate, below); limits, trusted proxies and turning TLS on or off for
   * a kept address wait for a restart.
   */
  reroute(config: ListenerConfig, upstreams: ReadonlyMap<string, Upstream>): void {
    this.config = config
    this.router = new Router(config, upstreams)
    this.upgrades.router = this.router
  }

  /** On reload: new handshakes use the re-read certificate; connections already open keep theirs. */
  renewCertificate(certificate: SecureContextOptions): void {
    ;(this.server as unknown as HttpsServer).setSecureContext(certificate)
  }

  listen(): Promise<AddressInfo> {
    return listenOn(this.server, this.config.address)
  }

  /** Stop accepting; idle keep-alive connections close now, busy ones after their response. */
  stopAccepting(): Promise<void> {
    this.closing = true
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    // GOAWAY: an HTTP/2 client finishes its open streams and opens new ones elsewhere.
    for (const s of this.sessions) s.close()
    // An h2c server has no HTTP/1.1 connections to close.
    this.server.closeIdleConnections?.()
    return closed
  }

  closeAll(): void {
    for (const s of this.sessions) s.destroy()
    this.server.closeAllConnections?.()
    this.upgrades.closeAll()
  }
}
