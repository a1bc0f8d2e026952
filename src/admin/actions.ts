// Operator actions on one server: drain (no new requests, in-flight ones finish), disable, enable.
import type { Upstream } from '../upstream/upstream.js'
import type { OperatorState } from '../upstream/peer.js'
import type { HealthEvents } from '../health/events.js'

export type Action = 'drain' | 'disable' | 'enable'

const STATE: Record<Action, OperatorState> = { drain: 'draining', disable: 'disabled', enable: 'enabled' }

export type ActionResult = { status: 200; body: Record<string, unknown> } | { status: 404; error: string }

export function applyAction(upstreams: ReadonlyMap<string, Upstream>, events: HealthEvents, upstreamName: string, address: string, action: Action): ActionResult {
  const upstream = upstreams.get(upstreamName)
  const peer = upstream?.find(address)
  if (upstream === undefined || peer === undefined) {
    return { status: 404, error: `no server ${JSON.stringify(address)} in upstream ${JSON.stringify(upstreamName)}` }
  }
  const previous = peer.operator
  peer.operator = STATE[action]
  if (previous !== peer.operator) {
    upstream.refresh()
    events.report({ upstream: upstream.name, server: peer.address, source: 'operator', event: peer.operator, reason: `admin_${action}`, evidence: { previous, inflight: peer.inflight } })
  }
  // In-flight requests are left alone: a drained server finishes them; `inflight` tells when it is idle.
  return { status: 200, body: { upstream: upstream.name, server: peer.address, operator: peer.operator, previous, inflight: peer.inflight } }
}
