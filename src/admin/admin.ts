// The admin listener: status of every server and operator actions. Loopback by default; bearer token when set.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Upstream } from '../upstream/upstream.js'
import type { Peer } from '../upstream/peer.js'
import { listenOn } from '../net.js'
import { authorized, safeAdminPath } from './guard.js'
import { resolveLimits, serverOptions } from '../proxy/limits.js'

export const DEFAULT_ADMIN_ADDRESS = '127.0.0.1:9901'

export interface AdminOptions {
  address: string
  token: string | undefined
  upstreams: () => ReadonlyMap<string, Upstream>
  generation: () => number
}

export interface ServerStatus {
  index: number
  upstream: string
  name: string
  status: 'up' | 'down'
  rise: number
  fall: number
  type: string
  port: number
  weight: number
  backup: boolean
  operator: Peer['operator']
  eligible: boolean
  inflight: number
  requests: number
  failures: number
}

export function statusRows(upstreams: ReadonlyMap<string, Upstream>): ServerStatus[] {
  const rows: ServerStatus[] = []
  for (const u of upstreams.values()) {
    for (const p of u.peers) {
      rows.push({
        index: rows.length,
        upstream: u.name,
        name: p.address,
        status: p.eligible ? 'up' : 'down',
        rise: 0,
        fall: 0,
        type: 'none',
        port: 0,
        weight: p.weight,
        backup: p.backup,
        operator: p.operator,
        eligible: p.eligible,
        inflight: p.inflight,
        requests: p.requests,
        failures: p.failures,
      })
    }
  }
  return rows
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function renderHtml(rows: readonly ServerStatus[], generation: number): string {
  const head = ['index', 'upstream', 'name', 'status', 'weight', 'operator', 'inflight', 'requests', 'failures']
  const body = rows
    .map((r) => `<tr class="${r.status}">${head.map((k) => `<td>${escapeHtml(String(r[k as keyof ServerStatus]))}</td>`).join('')}</tr>`)
    .join('\n')
  return `<!doctype html><html><head><meta charset="utf-8"><title>vigil status</title>
<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}tr.down{background:#f88}</style>
</head><body><h1>vigil status</h1><p>generation ${generation}, ${rows.length} servers</p>
<table><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>
${body}
</tbody></table></body></html>\n`
}

export class AdminServer {
  readonly server: Server

  constructor(private readonly options: AdminOptions) {
    // The same parser strictness and timeouts as a listener with default limits.
    this.server = createServer(serverOptions(resolveLimits(undefined)), (req, res) => this.handle(req, res))
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
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
      const filter = url.searchParams.get('status')
      const rows = statusRows(this.options.upstreams()).filter((r) => filter === null || r.status === filter)
      if (url.searchParams.get('format') === 'html') send(res, 200, 'text/html; charset=utf-8', renderHtml(rows, this.options.generation()))
      else send(res, 200, 'application/json', `${JSON.stringify({ servers: { total: rows.length, generation: this.options.generation(), server: rows } })}\n`)
      return
    }
    const action = /^\/upstreams\/([^/]+)\/servers\/([^/]+)\/(drain|disable|enable)$/.exec(url.pathname)
    if (req.method === 'POST' && action !== null) {
      const upstream = this.options.upstreams().get(decodeURIComponent(action[1] as string))
      const peer = upstream?.find(decodeURIComponent(action[2] as string))
      if (upstream === undefined || peer === undefined) {
        send(res, 404, 'text/plain', 'no such upstream or server\n')
        return
      }
      const verb = action[3] as 'drain' | 'disable' | 'enable'
      peer.operator = verb === 'drain' ? 'draining' : verb === 'disable' ? 'disabled' : 'enabled'
      upstream.refresh()
      send(res, 200, 'application/json', `${JSON.stringify({ upstream: upstream.name, server: peer.address, operator: peer.operator })}\n`)
      return
    }
    send(res, 404, 'text/plain', 'not found\n')
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

function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra })
  res.end(body)
}
