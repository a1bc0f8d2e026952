// The admin listener: routing and the bearer token. Loopback by default; when a token is set, every route needs it.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { listenOn } from '../net.js'
import { authorized, safeAdminPath } from './guard.js'
import { resolveLimits, serverOptions } from '../proxy/limits.js'
import type { HealthEvents } from '../health/events.js'
import type { SourceStatus } from '../discovery/registries.js'
import { FORMATS, renderCsv, renderHtml, renderJson, renderPrometheus, statusRows, type Format, type StatusSource } from './status.js'
import { applyAction, type Action } from './actions.js'
import type { VigilMetrics } from './metrics.js'
import { handleMembership, type MembershipActions } from './membership.js'

export const DEFAULT_ADMIN_ADDRESS = '127.0.0.1:9901'
/** Seconds between reloads of the html status page, unless ?refresh= says otherwise. */
const DEFAULT_REFRESH = 5

export interface AdminOptions extends StatusSource {
  address: string
  token: string | undefined
  events: HealthEvents
  metrics: VigilMetrics
  /** POST /reload and runtime server changes (src/admin/membership.ts). */
  membership?: MembershipActions
  /** Registry sources, for the status page. */
  discovery?: () => SourceStatus[]
}

const ACTION = /^\/upstreams\/([^/]+)\/servers\/([^/]+)\/(drain|disable|enable)$/

export class AdminServer {
  readonly server: Server

  constructor(private readonly options: AdminOptions) {
    // The same parser strictness and timeouts as a listener with default limits.
    this.server = createServer(serverOptions(resolveLimits(undefined)), (req, res) => {
      this.handle(req, res).catch((err: unknown) => send(res, 500, 'text/plain', `${(err as Error).message}\n`))
    })
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!authorized(req.headers.authorization, this.options.token)) {
      send(res, 401, 'text/plain', 'missing or wrong bearer token\n', { 'www-authenticate': 'Bearer' })
      return
    }
    if (!safeAdminPath(req.url)) {
      send(res, 400, 'text/plain', 'malformed path\n')
      return
    }
    const url = new URL(req.url ?? '/', 'http://admin')
    if (req.method === 'GET' && url.pathname === '/status') {
      this.status(req, res, url.searchParams)
      return
    }
    if (req.method === 'GET' && url.pathname === '/metrics') {
      send(res, 200, this.options.metrics.contentType, await this.options.metrics.text())
      return
    }
    const action = ACTION.exec(url.pathname)
    if (req.method === 'POST' && action !== null) {
      const r = applyAction(this.options.upstreams(), this.options.events, decodeURIComponent(action[1] as string), decodeURIComponent(action[2] as string), action[3] as Action)
      send(res, r.status, 'application/json', `${JSON.stringify(r.body)}\n`)
      return
    }
    if (this.options.membership !== undefined && handleMembership(req, res, url.pathname, this.options.membership)) return
    send(res, 404, 'text/plain', 'not found\n')
  }

  private status(req: IncomingMessage, res: ServerResponse, q: URLSearchParams): void {
    // Like Tengine, a browser gets the html page by default; tools get json.
    const format = q.get('format') ?? (req.headers.accept?.includes('text/html') === true ? 'html' : 'json')
    const filter = q.get('status')
    if (!(FORMATS as readonly string[]).includes(format) || (filter !== null && filter !== 'up' && filter !== 'down')) {
      send(res, 400, 'text/plain', `expected ?format=${FORMATS.join('|')} and ?status=up|down\n`)
      return
    }
    const rows = statusRows(this.options).filter((r) => filter === null || r.status === filter)
    const generation = this.options.generation()
    const reload = this.options.membership?.status.last
    const discovery = this.options.discovery?.() ?? []
    switch (format as Format) {
      case 'html': {
        const refresh = Number(q.get('refresh') ?? DEFAULT_REFRESH)
        send(res, 200, 'text/html; charset=utf-8', renderHtml(rows, generation, Number.isInteger(refresh) && refresh > 0 ? refresh : DEFAULT_REFRESH, reload, discovery))
        return
      }
      case 'csv':
        send(res, 200, 'text/csv; charset=utf-8', renderCsv(rows))
        return
      case 'prometheus':
        send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', renderPrometheus(rows, generation))
        return
      case 'json':
        send(res, 200, 'application/json', renderJson(rows, generation, reload, discovery))
    }
  }

  listen(): Promise<AddressInfo> {
    return listenOn(this.server, this.options.address)
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }
}

export function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra })
  res.end(body)
}
