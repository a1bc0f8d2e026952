// Admin routes for live membership: POST /reload (GET /reload for the last result), and
// PUT / DELETE /upstreams/NAME/servers/ADDRESS, all through the same queued update path as file reloads.
// The routing itself is in admin.ts.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Type } from '@sinclair/typebox'
import { Counter, Gauge, type Registry } from 'prom-client'
import { Address, Server } from '../config/schema.js'
import { schemaIssues } from '../config/load.js'
import { formatIssues } from '../config/errors.js'
import { serverSpec, type ServerSpec } from '../config/diff.js'
import { RuntimeUpdateError, type MembershipChange } from '../upstream/membership.js'
import type { ChangeSource, ReloadResult, ReloadStatus } from '../update/reloader.js'
import { sendError, sendJson } from './reply.js'

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

/** GET /reload: the last reload's result and the counts. */
export function reloadStatus(res: ServerResponse, actions: MembershipActions): void {
  sendJson(res, 200, actions.status)
}

/** POST /reload: 200 with the result when applied, 422 with the reason and every issue when rejected. */
export async function postReload(res: ServerResponse, actions: MembershipActions): Promise<void> {
  const r = await actions.reload('admin')
  if (r?.ok === true) sendJson(res, 200, r)
  else sendError(res, 422, 'reload_rejected', r?.error ?? 'reload rejected', { ...r })
}

/** DELETE /upstreams/NAME/servers/ADDRESS */
export async function deleteServer(res: ServerResponse, upstream: string, address: string, actions: MembershipActions): Promise<void> {
  await changed(res, upstream, address, actions.removeServer(upstream, address))
}

/** PUT /upstreams/NAME/servers/ADDRESS, with an optional body of server settings. */
export async function putServer(req: IncomingMessage, res: ServerResponse, upstream: string, address: string, actions: MembershipActions): Promise<void> {
  const body = await readBody(req)
  if (body === undefined) return sendError(res, 413, 'body_too_large', `body larger than ${MAX_BODY} bytes`)
  let settings: unknown
  try {
    settings = body.trim() === '' ? {} : JSON.parse(body)
  } catch (err) {
    return sendError(res, 400, 'invalid_body', `body: not JSON (${(err as Error).message})`)
  }
  // The address comes from the path; one in the body must agree with it.
  const server = typeof settings === 'object' && settings !== null && !Array.isArray(settings) ? { address, ...settings } : settings
  const issues = schemaIssues(server, RuntimeServer)
  if ((server as { address?: unknown }).address !== address) issues.push({ path: 'address', pointer: ['address'], found: JSON.stringify((server as { address?: unknown }).address), expected: `the address in the path, ${JSON.stringify(address)}` })
  if (issues.length > 0) return sendError(res, 400, 'invalid_body', formatIssues('body', issues), { issues: issues.map(({ pointer: _, ...i }) => i) })
  await changed(res, upstream, address, actions.putServer(upstream, serverSpec(server as ServerSpec)))
}

async function changed(res: ServerResponse, upstream: string, address: string, change: Promise<MembershipChange>): Promise<void> {
  try {
    const c = await change
    sendJson(res, c.added.length > 0 ? 201 : 200, { upstream, server: address, generation: c.generation, change: c })
  } catch (err) {
    if (!(err instanceof RuntimeUpdateError)) throw err
    sendError(res, err.status, err.status === 404 ? 'not_found' : 'conflict', err.message)
  }
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
