// Admin routes for live membership: POST /reload (GET /reload for the last result), and
// PUT / DELETE /upstreams/NAME/servers/ADDRESS, all through the same queued update path as file reloads.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Type } from '@sinclair/typebox'
import { Counter, Gauge, type Registry } from 'prom-client'
import { Address, Server } from '../config/schema.js'
import { schemaIssues } from '../config/load.js'
import { formatIssues } from '../config/errors.js'
import { serverSpec, type ServerSpec } from '../config/diff.js'
import { RuntimeUpdateError, type MembershipChange } from '../upstream/membership.js'
import type { ChangeSource, ReloadResult, ReloadStatus } from '../update/reloader.js'
import { send } from './admin.js'

export interface MembershipActions {
  readonly status: ReloadStatus
  reload(source: ChangeSource): Promise<ReloadResult | undefined>
  putServer(upstream: string, spec: ServerSpec): Promise<MembershipChange>
  removeServer(upstream: string, address: string): Promise<MembershipChange>
}

/** A server added at run time: a literal host:port (no DNS entries), with the same settings as in the file. */
const RuntimeServer = Type.Object(
  { address: Address, weight: Server.properties.weight, backup: Server.properties.backup, down: Server.properties.down, maxConns: Server.properties.maxConns },
  { additionalProperties: false },
)

const MAX_BODY = 64 * 1024
const SERVER_PATH = /^\/upstreams\/([^/]+)\/servers\/([^/]+)$/

const json = (res: ServerResponse, status: number, body: unknown): void => send(res, status, 'application/json', `${JSON.stringify(body)}\n`)

/** Handles the request and returns true when the path is one of these routes. */
export function handleMembership(req: IncomingMessage, res: ServerResponse, path: string, actions: MembershipActions): boolean {
  if (path === '/reload') {
    if (req.method === 'GET') json(res, 200, actions.status)
    else if (req.method === 'POST') void actions.reload('admin').then((r) => json(res, r?.ok === true ? 200 : 422, r))
    else send(res, 405, 'text/plain', 'use GET or POST\n', { allow: 'GET, POST' })
    return true
  }
  const m = SERVER_PATH.exec(path)
  if (m === null || (req.method !== 'PUT' && req.method !== 'DELETE')) return false
  const upstream = decodeURIComponent(m[1] as string)
  const address = decodeURIComponent(m[2] as string)
  const done = (p: Promise<MembershipChange>): void => {
    p.then(
      (change) => json(res, change.added.length > 0 ? 201 : 200, { upstream, server: address, generation: change.generation, change }),
      (err: unknown) => send(res, err instanceof RuntimeUpdateError ? err.status : 500, 'text/plain', `${(err as Error).message}\n`),
    )
  }
  if (req.method === 'DELETE') {
    done(actions.removeServer(upstream, address))
    return true
  }
  void readBody(req).then((body) => {
    if (body === undefined) {
      send(res, 413, 'text/plain', `body larger than ${MAX_BODY} bytes\n`)
      return
    }
    let settings: unknown
    try {
      settings = body.trim() === '' ? {} : JSON.parse(body)
    } catch (err) {
      send(res, 400, 'text/plain', `body: not JSON (${(err as Error).message})\n`)
      return
    }
    // The address comes from the path; one in the body must agree with it.
    const server = typeof settings === 'object' && settings !== null && !Array.isArray(settings) ? { address, ...settings } : settings
    const issues = schemaIssues(server, RuntimeServer)
    if ((server as { address?: unknown }).address !== address) issues.push({ path: 'address', pointer: ['address'], found: JSON.stringify((server as { address?: unknown }).address), expected: `the address in the path, ${JSON.stringify(address)}` })
    if (issues.length > 0) {
      send(res, 400, 'text/plain', `${formatIssues('body', issues)}\n`)
      return
    }
    done(actions.putServer(upstream, serverSpec(server as ServerSpec)))
  })
  return true
}

/** Reload series for GET /metrics, read from the live status when scraped. */
export function registerReloadMetrics(registry: Registry, status: () => ReloadStatus): void {
  const registers = [registry]
  new Gauge({
    name: 'vigil_config_generation',
    help: 'generation of the live membership: bumped by every applied reload, admin server change and DNS change',
    registers,
    collect() {
      this.set(status().generation)
    },
  })
  new Gauge({
    name: 'vigil_config_last_reload_success',
    help: '1 when the last reload applied, 0 when it was rejected (absent before the first)',
    registers,
    collect() {
      // remove(), not reset(): a gauge without labels that was reset still shows 0, and an `== 0` alert would fire.
      this.remove()
      const last = status().last
      if (last !== undefined) this.set(last.ok ? 1 : 0)
    },
  })
  new Gauge({
    name: 'vigil_config_last_reload_timestamp_seconds',
    help: 'when the last reload finished, in Unix seconds',
    registers,
    collect() {
      this.remove()
      const last = status().last
      if (last !== undefined) this.set(Date.parse(last.at) / 1000)
    },
  })
  new Counter({
    name: 'vigil_config_reloads_total',
    help: 'reloads by result',
    labelNames: ['result'],
    registers,
    collect() {
      this.reset()
      const s = status()
      this.inc({ result: 'ok' }, s.reloads - s.failures)
      this.inc({ result: 'failed' }, s.failures)
    },
  })
}

/** The request body as text, or undefined when it is larger than MAX_BODY. */
async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY) return undefined
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
