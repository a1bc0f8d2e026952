// Recovery probes for passive ejections: while a server is out on passive evidence, vigil learns when it is back
// without spending a client's request. Only connection-level evidence (refused, reset, connect timeout) is
// probed: with the group's active check (at its fast interval) when it has one, else with a TCP connect.
// HTTP-status and response-timeout ejections get no probe: only a real request shows them (a frozen process
// still accepts connections), so they wait for their trial as before.
// While a probe keeps failing, the ejection's end does not let a trial through: the server is known to be down.
import type { Peer } from '../upstream/peer.js'
import type { CheckSpec } from './check-spec.js'
import { checkCovers } from './check-spec.js'
import { failureClass, type Failure } from './outcome.js'
import { createProbe, type Probe, type ProbeResult } from './probes/index.js'
import { TcpProbe } from './probes/tcp.js'

export interface RecoverySettings {
  /** First wait after the first probe, doubled after every failed probe up to maxInterval. */
  interval: number
  maxInterval: number
}

// A 500 ms ceiling bounds a restarted server's wait for its probe to 600 ms (the "back within 1 s" target) for two cheap
// connects a second while it stays down.
export const RECOVERY_DEFAULTS: RecoverySettings = { interval: 250, maxInterval: 500 }
/** Each wait varies by up to this share either way, so many vigils do not probe a restarting server in lockstep. */
export const RECOVERY_JITTER = 0.2

/** Failures a successful TCP connect disproves: the server did not accept (or dropped) the connection. */
const CONNECTION_LEVEL = new Set(['connect_refused', 'connect_failed', 'connect_timeout', 'upstream_reset'])

export type RecoveryKind = 'check' | 'tcp'

/** Which probe can show that the evidence behind an ejection no longer holds; undefined: only a real trial can. */
export function recoveryKind(failure: Failure | undefined, check: CheckSpec | undefined): RecoveryKind | undefined {
  if (failure === undefined || !CONNECTION_LEVEL.has(failure.code)) return undefined
  return check !== undefined && checkCovers(check, failureClass(failure)) ? 'check' : 'tcp'
}

/** The wait before probe number `n + 1` (n ≥ 1 failed so far): interval × 2^(n-1), capped, jittered. `random` in [0, 1). */
export function probeDelay(failed: number, s: RecoverySettings, random: number): number {
  const base = Math.min(s.interval * 2 ** Math.max(0, failed - 1), s.maxInterval)
  return Math.round(base * (1 + RECOVERY_JITTER * (2 * random - 1)))
}

/** What a recovery probe reports to (the server's ejection state machine). */
export interface RecoveryHost {
  recoveryPassed(kind: RecoveryKind, result: ProbeResult, probes: number): void
}

function fire(r: RecoveryProbe): void {
  void r.run()
}

/** The probes of one ejection: the first at once, then backing off; stopped when the ejection ends. */
export class RecoveryProbe {
  /** True until a probe passes: the ejection's end lets no trial through meanwhile. */
  failing = true
  probes = 0
  private timer: NodeJS.Timeout | undefined = undefined
  private stopped = false
  private readonly probe: Probe
  private readonly timeout: number
  private readonly settings: RecoverySettings

  constructor(
    private readonly host: RecoveryHost,
    readonly kind: RecoveryKind,
    peer: Peer,
    check: CheckSpec | undefined,
    connectTimeout: number,
    settings: RecoverySettings,
  ) {
    if (kind === 'check') {
      // The group's own check, at its fast interval (HAProxy's fastinter: the server is changing state).
      const spec = check as CheckSpec
      this.probe = createProbe(spec, peer.host, spec.port === 0 ? peer.port : spec.port)
      this.timeout = spec.timeout
      this.settings = { interval: spec.fastInterval, maxInterval: spec.fastInterval }
    } else {
      this.settings = settings
      this.probe = new TcpProbe(peer.host, peer.port)
      this.timeout = connectTimeout
    }
    this.timer = setTimeout(fire, 0, this)
    this.timer.unref()
  }

  async run(): Promise<void> {
    this.timer = undefined
    if (this.stopped) return
    const controller = new AbortController()
    const timer = setTimeout(abort, this.timeout, controller)
    const result = await this.probe.check(controller.signal)
    clearTimeout(timer)
    if (this.stopped) return
    this.probes++
    if (result.ok) {
      this.failing = false
      this.stop()
      this.host.recoveryPassed(this.kind, result, this.probes)
      return
    }
    this.timer = setTimeout(fire, probeDelay(this.probes, this.settings, Math.random()), this)
    this.timer.unref()
  }

  stop(): void {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.timer)
    void this.probe.close()
  }
}

function abort(c: AbortController): void {
  c.abort()
}
