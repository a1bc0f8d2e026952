// WebSocket and other Upgrade requests: routed and balanced like any request, then tunnelled by http-proxy.
// The upgrade request itself counts in passive health like any attempt: the provider's answer (switching
// protocols, or a refusal) or its failure to answer; what happens later inside an open tunnel does not.
import { Agent as HttpsAgent } from 'node:https'
import type { ClientRequest, IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import httpProxy from 'http-proxy'
import type { Peer } from '../upstream/peer.js'
import type { Upstream } from '../upstream/upstream.js'
import { classifyError, type Failure } from '../health/outcome.js'
import { Role } from '../health/ejection.js'
import type { WaitList, Waiting } from '../health/stall.js'
import type { Attempted } from '../health/monitor.js'
import { tlsConnectOptions } from '../upstream/tls.js'
import type { Router } from './router.js'
import { parseTarget, type ForwardHooks } from './forward.js'
import { requestHeaders } from './headers.js'
import { sendRawError } from './respond.js'
import { AccessRecord } from './access-log.js'

const NO_PEERS: readonly Peer[] = []

/**
 * One upgrade: its client socket, its peer, and the provider's socket once the provider switched protocols.
 * Until the provider answers it is also a request waiting on the peer, for passive health (stall detection).
 */
class Tunnel implements Attempted {
  upstreamSocket: Duplex | undefined = undefined
  switched = false
  closed = false
  /** Its outcome went to passive health (once: answered, failed, or the client left first). */
  settled = false
  readonly started = Date.now()
  readonly sentAt = performance.now()
  headersAt = 0
  status = 0
  role = Role.Normal
  prevWaiting: Waiting | undefined = undefined
  nextWaiting: Waiting | undefined = undefined
  waitingOn: WaitList | undefined = undefined
  /** Why it failed, for the access log. */
  error: string | undefined = undefined

  constructor(
    readonly client: Duplex,
    readonly peer: Peer,
    readonly upstream: Upstream,
    readonly req: IncomingMessage,
    /** Set while the access log is on; its line is written when the tunnel closes. */
    readonly access: AccessRecord | undefined,
  ) {}

  /** An upgrade is not replayable on another server: it waits for its own answer. */
  stalled(): void {}
}

export class UpgradeProxy {
  private readonly proxy = httpProxy.createProxyServer({ ws: true, xfwd: false, changeOrigin: false })
  /** Open tunnels by client socket. */
  private readonly tunnels = new Map<Duplex, Tunnel>()
  private readonly agents = new WeakMap<Peer, HttpsAgent>()

  constructor(
    /** Replaced when a reload changes the listener's routes (ProxyListener.reroute). */
    public router: Router,
    private readonly hooks: ForwardHooks,
  ) {
    // http-proxy throws from an 'error' without a listener; every call below also passes its own callback.
    this.proxy.on('error', (err) => this.hooks.log.warn({ err: err.message }, 'upgrade proxy error'))
    this.proxy.on('proxyReqWs', (proxyReq, _req, socket) => this.onProxyRequest(proxyReq, this.tunnels.get(socket) as Tunnel))
  }

  /** The listener's 'upgrade' handler. */
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', onSocketError)
    const access = this.hooks.access.enabled ? new AccessRecord(this.hooks.access) : undefined
    const target = parseTarget(req.url ?? '/', req.headers.host)
    const upstream = target === undefined ? undefined : this.router.match(target.host, target.path)
    if (target === undefined) {
      sendRawError(socket, 400, 'bad_request_target', 'request target must be a path or an absolute URL')
      if (access !== undefined) this.hooks.access.upgrade(req, access, 400, 'bad_request_target')
      return
    }
    if (upstream === undefined) {
      sendRawError(socket, 404, 'no_route', 'no route matches this host and path')
      if (access !== undefined) this.hooks.access.upgrade(req, access, 404, 'no_route')
      return
    }
    if (access !== undefined) access.upstream = upstream.name
    // The request takes part in the pick, so hash policies keep a client's tunnels on its peer.
    const peer = upstream.select(NO_PEERS, req)
    if (peer === undefined) {
      const refusal = upstream.refusal()
      sendRawError(socket, 503, refusal.code, refusal.detail)
      if (access !== undefined) this.hooks.access.upgrade(req, access, 503, refusal.code)
      return
    }
    // An open tunnel is load on its peer, for least-connection policies, until either side closes.
    const tunnel = new Tunnel(socket, peer, upstream, req, access)
    upstream.monitor.dispatched(tunnel, tunnel.started)
    this.tunnels.set(socket, tunnel)
    socket.once('close', () => this.closed(tunnel))
    req.url = target.path
    req.headers = upgradeHeaders(req, {
      clientAddress: req.socket.remoteAddress ?? '',
      proto: this.hooks.tls === true ? 'https' : 'http',
      trusted: this.hooks.trust?.has(req.socket.remoteAddress) === true,
      host: upstream.hostHeader ?? target.host,
      originalHost: target.host,
      addHop: this.hooks.forwardedHeaders,
    })
    this.proxy.ws(
      req,
      socket,
      head,
      {
        target: { protocol: peer.tls === undefined ? 'http:' : 'https:', host: peer.host, port: peer.port },
        agent: this.agent(peer),
        secure: peer.tls?.rejectUnauthorized ?? true,
      },
      (err: Error) => this.failed(tunnel, err),
    )
  }

  private onProxyRequest(proxyReq: ClientRequest, tunnel: Tunnel): void {
    // A provider that accepts the connection but never answers the upgrade gets the upstream's response timeout.
    proxyReq.setTimeout(tunnel.upstream.timeouts.response, () => proxyReq.destroy(Object.assign(new Error('upgrade response timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' })))
    // A refusal (any status but 101): http-proxy passes it on to the client.
    proxyReq.on('response', (res: IncomingMessage) => this.answered(tunnel, res.statusCode ?? 0))
    proxyReq.on('upgrade', (_res, upstreamSocket: Socket) => {
      this.answered(tunnel, 101)
      upstreamSocket.setTimeout(0)
      tunnel.switched = true
      tunnel.upstreamSocket = upstreamSocket
      // Whichever side hangs up, the other is closed once what was in flight is written: no half-open leftovers.
      upstreamSocket.once('finish', () => upstreamSocket.destroy())
      upstreamSocket.once('close', () => tunnel.client.end())
      tunnel.client.once('finish', () => tunnel.client.destroy())
      if (tunnel.closed) upstreamSocket.destroy()
    })
  }

  /** The provider answered the upgrade: a success, or a failure when passive.failOn lists the status. */
  private answered(tunnel: Tunnel, status: number): void {
    const now = Date.now()
    tunnel.status = status
    tunnel.access?.attempt(tunnel.peer.address, status, now - tunnel.started)
    this.settle(tunnel, tunnel.upstream.monitor.responded(tunnel, status, now), true, now)
  }

  /** Report the upgrade attempt exactly once to the monitor; the tunnel stays load on its peer until it closes. */
  private settle(tunnel: Tunnel, failure: Failure | undefined, conclusive: boolean, now: number): void {
    if (tunnel.settled) return
    tunnel.settled = true
    tunnel.upstream.monitor.settled(tunnel, failure, conclusive, now)
  }

  private failed(tunnel: Tunnel, err: Error): void {
    const failure = classifyError(err)
    if (!tunnel.switched) {
      tunnel.access?.attempt(tunnel.peer.address, failure.code, Date.now() - tunnel.started)
      tunnel.status = failure.status
      tunnel.error = failure.code
    }
    // After the switch the upgrade was already counted as answered; a tunnel cut later is not a failed request.
    this.settle(tunnel, failure, true, Date.now())
    this.hooks.log.warn({ upstream: tunnel.upstream.name, peer: tunnel.peer.address, reason: failure.code, err: err.message, switched: tunnel.switched }, 'upgrade failed')
    if (tunnel.switched) tunnel.client.destroy()
    else sendRawError(tunnel.client, failure.status, failure.code, `upstream "${tunnel.upstream.name}" failed the upgrade (${failure.code})`)
  }

  private closed(tunnel: Tunnel): void {
    tunnel.closed = true
    // The client left before the provider answered: that says nothing about the provider.
    this.settle(tunnel, undefined, false, Date.now())
    tunnel.upstreamSocket?.destroy()
    this.tunnels.delete(tunnel.client)
    // A closed tunnel frees a maxConns slot like a finished request.
    tunnel.upstream.monitor.released(tunnel.peer)
    if (tunnel.access !== undefined) this.hooks.access.upgrade(tunnel.req, tunnel.access, tunnel.status, tunnel.error)
  }

  private agent(peer: Peer): HttpsAgent | false {
    if (peer.tls === undefined) return false
    let agent = this.agents.get(peer)
    if (agent === undefined) {
      // An empty servername stops Node from taking the SNI from the client's Host header (IP-addressed peers).
      agent = new HttpsAgent({ ...tlsConnectOptions(peer.tls), servername: tlsConnectOptions(peer.tls).servername ?? '', keepAlive: false })
      this.agents.set(peer, agent)
    }
    return agent
  }

  /** Shutdown: cut every tunnel (they are not HTTP connections the server could close). */
  closeAll(): void {
    for (const t of this.tunnels.values()) {
      t.client.destroy()
      t.upstreamSocket?.destroy()
    }
  }
}

function onSocketError(this: Duplex): void {
  this.destroy()
}

/** The forwarding rules of every request, plus the two hop-by-hop headers an upgrade needs, as http-proxy's object. */
function upgradeHeaders(req: IncomingMessage, fwd: Parameters<typeof requestHeaders>[2]): IncomingMessage['headers'] {
  const list = requestHeaders(req.rawHeaders, req.headers.connection, fwd)
  const out: IncomingMessage['headers'] = { connection: 'Upgrade', upgrade: req.headers.upgrade }
  for (let i = 0; i < list.length; i += 2) {
    const name = (list[i] as string).toLowerCase()
    const value = list[i + 1] as string
    const seen = out[name]
    out[name] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value]
  }
  return out
}
