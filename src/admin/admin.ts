// The admin listener: the bearer token, the route table, and the manners every route shares (JSON errors of one
// shape, 405 with Allow, OPTIONS, HEAD). Loopback by default; when a token is set, every route needs it.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { listenOn } from '../net.js'
import { authorized, safeAdminPath } from './guard.js'
import { resolveLimits, serverOptions } from '../proxy/limits.js'
import type { HealthEvents } from '../health/events.js'
import { FORMATS, renderCsv, renderJson, renderPrometheus, statusRows, subsetRows, stallRows, type Format, type StatusSource } from './status.js'
import { renderHtml } from './status-page.js'
import type { SourceStatus } from '../discovery/registries.js'
import type { StatusHistory } from './history.js'
import { applyAction, type Action } from './actions.js'
import type { VigilMetrics } from './metrics.js'
import type { WorkersStatus } from '../workers/primary.js'
import { deleteServer, postReload, putServer, reloadStatus, type MembershipActions } from './membership.js'
import { ReadyProbe, type ReadySource } from './ready.js'
import { redactConfig } from './config-dump.js'
import { send, sendError, sendJson } from './reply.js'
import type { Config } from '../config/schema.js'
import { LOG_LEVELS, type LogLevel } from '../log.js'

export { send } from './reply.js'

export const DEFAULT_ADMIN_ADDRESS = '127.0.0.1:9901'
/** Seconds between reloads of the html status page, unless ?refresh= says otherwise. */
const DEFAULT_REFRESH = 5
/** A PUT /log body is one small JSON object. */
const MAX_LOG_BODY = 1024

export interface AdminOptions extends StatusSource, ReadySource {
  address: string
  token: string | undefined
  events: HealthEvents
  metrics: VigilMetrics
  /** The running config, for GET /config. */
  config(): Config
  /** The main logger: GET /log shows its level, PUT /log changes it until the next reload. */
  log: Logger
  /** Recent transitions and per-server traffic for the html status page. */
  history: StatusHistory
  /** Registry sources, for the status page. */
  discovery?: () => SourceStatus[]
  /** POST /reload and runtime server changes (src/admin/membership.ts). */
  membership?: MembershipActions
  /** A cluster's workers: the generation and state version each serves (src/workers/primary.ts). */
  workers?: () => WorkersStatus | undefined
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE'
type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, params: string[]) => void | Promise<void>
interface Route {
  /** As listed by GET /. */
  path: string
  pattern: RegExp
  methods: Partial<Record<Method, { description: string; handle: Handler }>>
}

const NAME = '([^/]+)'

export class AdminServer {
  readonly server: Server
  private readonly routes: Route[]
  private readonly ready: ReadyProbe

  constructor(private readonly options: AdminOptions) {
    this.ready = new ReadyProbe(options)
    this.routes = this.table()
    // The same parser strictness and timeouts as a listener with default limits.
    this.server = createServer(serverOptions(resolveLimits(undefined)), (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) sendError(res, 500, 'internal', (err as Error).message)
        else res.destroy()
      })
    })
  }

  private table(): Route[] {
    const o = this.options
    const routes: Route[] = [
      { path: '/', pattern: /^\/$/, methods: { GET: { description: 'this list of routes', handle: (_q, res) => sendJson(res, 200, { routes: this.list() }) } } },
      {
        path: '/status',
        pattern: /^\/status$/,
        methods: { GET: { description: 'every server: ?format=html|json|csv|prometheus, ?status=up|down (Tengine check_status)', handle: (req, res, url) => this.status(req, res, url.searchParams) } },
      },
      { path: '/metrics', pattern: /^\/metrics$/, methods: { GET: { description: 'Prometheus metrics', handle: async (_q, res) => send(res, 200, o.metrics.contentType, await o.metrics.text()) } } },
      {
        path: '/ready',
        pattern: /^\/ready$/,
        methods: {
          GET: {
            description: 'readiness: 200 once listeners are bound and first checks ran, 503 before and while draining',
            handle: (_q, res) => {
              const r = this.ready.get()
              sendJson(res, r.ready ? 200 : 503, r)
            },
          },
        },
      },
      { path: '/config', pattern: /^\/config$/, methods: { GET: { description: 'the running config, secrets redacted', handle: (_q, res) => sendJson(res, 200, redactConfig(o.config())) } } },
      {
        path: '/log',
        pattern: /^\/log$/,
        methods: {
          GET: { description: 'the log level', handle: (_q, res) => sendJson(res, 200, { level: o.log.level, levels: LOG_LEVELS }) },
          PUT: { description: 'set the log level until the next reload: {"level": "debug"}', handle: (req, res) => this.setLevel(req, res) },
        },
      },
      {
        path: '/upstreams/NAME/servers/ADDRESS/drain|disable|enable',
        pattern: new RegExp(`^/upstreams/${NAME}/servers/${NAME}/(drain|disable|enable)$`),
        methods: {
          POST: {
            description: 'operator state of one server: drain (in-flight requests finish), disable, enable',
            handle: (_q, res, _u, [upstream, address, action]) => {
              const r = applyAction(o.upstreams(), o.events, upstream as string, address as string, action as Action)
              if (r.status === 200) sendJson(res, 200, r.body)
              else sendError(res, r.status, 'not_found', r.error)
            },
          },
        },
      },
    ]
    const m = o.membership
    if (m !== undefined) {
      routes.push(
        {
          path: '/reload',
          pattern: /^\/reload$/,
          methods: {
            GET: { description: 'the last reload: ok, source, time, generation, issues', handle: (_q, res) => reloadStatus(res, m) },
            POST: { description: 'reload the config file: 200 applied, 422 rejected with every issue', handle: (_q, res) => postReload(res, m) },
          },
        },
        {
          path: '/upstreams/NAME/servers/ADDRESS',
          pattern: new RegExp(`^/upstreams/${NAME}/servers/${NAME}$`),
          methods: {
            PUT: { description: 'add (201) or change (200) a server until the next file reload; body: {weight, backup, down, maxConns}', handle: (req, res, _u, [u, a]) => putServer(req, res, u as string, a as string, m) },
            DELETE: { description: 'remove a server until the next file reload', handle: (_q, res, _u, [u, a]) => deleteServer(res, u as string, a as string, m) },
          },
        },
      )
    }
    return routes
  }

  private list(): { method: string; path: string; description: string }[] {
    return this.routes.flatMap((r) => Object.entries(r.methods).map(([method, h]) => ({ method, path: r.path, description: h.description })))
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!authorized(req.headers.authorization, this.options.token)) {
      sendError(res, 401, 'unauthorized', 'missing or wrong bearer token', {}, { 'www-authenticate': 'Bearer' })
      return
    }
    if (!safeAdminPath(req.url)) {
      sendError(res, 400, 'bad_path', 'malformed path: dot segments, encoded slashes, control characters or broken escapes')
      return
    }
    const url = new URL(req.url ?? '/', 'http://admin')
    for (const route of this.routes) {
      const match = route.pattern.exec(url.pathname)
      if (match === null) continue
      // Node leaves out the body of an answer to HEAD.
      const method = (req.method === 'HEAD' ? 'GET' : req.method) as Method
      const handler = route.methods[method]
      if (handler !== undefined) return handler.handle(req, res, url, match.slice(1).map((s) => decodeURIComponent(s)))
      const allow = Object.keys(route.methods)
      if (allow.includes('GET')) allow.push('HEAD')
      allow.push('OPTIONS')
      if (req.method === 'OPTIONS') res.writeHead(204, { allow: allow.join(', '), 'cache-control': 'no-store' }).end()
      else sendError(res, 405, 'method_not_allowed', `${req.method ?? ''} ${route.path}: use ${allow.join(', ')}`, { allow }, { allow: allow.join(', ') })
      return
    }
    sendError(res, 404, 'not_found', `no admin route ${url.pathname}; GET / lists them`)
  }

  private status(req: IncomingMessage, res: ServerResponse, q: URLSearchParams): void {
    // Like Tengine, a browser gets the html page by default; tools get json.
    const format = q.get('format') ?? (req.headers.accept?.includes('text/html') === true ? 'html' : 'json')
    const filter = q.get('status')
    if (!(FORMATS as readonly string[]).includes(format) || (filter !== null && filter !== 'up' && filter !== 'down')) {
      sendError(res, 400, 'bad_request', `expected ?format=${FORMATS.join('|')} and ?status=up|down`)
      return
    }
    const rows = statusRows(this.options).filter((r) => filter === null || r.status === filter)
    const generation = this.options.generation()
    const reload = this.options.membership?.status.last
    const discovery = this.options.discovery?.() ?? []
    const workers = this.options.workers?.()
    const fleet = this.options.fleet?.()
    switch (format as Format) {
      case 'html': {
        const refresh = Number(q.get('refresh') ?? DEFAULT_REFRESH)
        const o = this.options
        const page = { rows, generation, refresh: Number.isInteger(refresh) && refresh > 0 ? refresh : DEFAULT_REFRESH, reload, history: o.history, upstreams: o.upstreams(), config: o.config(), now: Date.now(), discovery, fleet, workers }
        send(res, 200, 'text/html; charset=utf-8', renderHtml(page))
        return
      }
      case 'csv':
        send(res, 200, 'text/csv; charset=utf-8', renderCsv(rows))
        return
      case 'prometheus':
        send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', renderPrometheus(rows, generation))
        return
      case 'json':
        send(res, 200, 'application/json', renderJson(rows, generation, reload, discovery, subsetRows(this.options.upstreams()), fleet, workers, stallRows(this.options.upstreams())))
    }
  }

  private async setLevel(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let text = ''
    for await (const chunk of req as AsyncIterable<Buffer>) {
      text += chunk.toString('utf8')
      if (text.length > MAX_LOG_BODY) return sendError(res, 413, 'body_too_large', `body larger than ${MAX_LOG_BODY} bytes`)
    }
    let level: unknown
    try {
      level = (JSON.parse(text) as { level?: unknown }).level
    } catch (err) {
      return sendError(res, 400, 'invalid_body', `body: not JSON (${(err as Error).message}); expected {"level": "debug"}`)
    }
    if (typeof level !== 'string' || !(LOG_LEVELS as readonly string[]).includes(level)) {
      return sendError(res, 400, 'invalid_body', `level: found ${JSON.stringify(level) ?? 'nothing'}, expected one of ${LOG_LEVELS.join(', ')}`)
    }
    const previous = this.options.log.level
    // Said at the old level, so the change shows in the log it silences.
    if (previous !== level) this.options.log.warn({ from: previous, to: level }, 'log level set by the admin API')
    this.options.log.level = level as LogLevel
    sendJson(res, 200, { level, previous })
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
