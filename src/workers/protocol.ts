// The messages between a cluster's primary and its workers (Node's cluster IPC channel, JSON), and their timing.
// Up: a worker's outcomes (batched, and urgent ones at once), its acknowledgements and its generation. Down: the
// config every worker serves, and the health state the primary decided, as versioned changes and full snapshots.
import type { Config } from '../config/schema.js'
import type { ConsumerView } from '../fleet/consumers.js'
import type { ServerSpec } from '../config/diff.js'
import type { OperatorState } from '../upstream/peer.js'
import type { PassiveState } from '../health/ejection.js'
import type { FailureKind } from '../health/outcome.js'
import type { RegistryJson } from '../admin/metrics.js'

/** How often a worker reports its counters (also its heartbeat). */
export const BATCH_INTERVAL = 500
/** The least time between two urgent reports about one server from one worker. */
export const URGENT_INTERVAL = 100
/** How often the primary sends every worker the whole state, so no lost change outlives one period. */
export const SNAPSHOT_INTERVAL = 3_000
/** A worker silent this long (no batch, no answer) is killed and replaced. */
export const UNRESPONSIVE_AFTER = 5_000

/** Wall-clock ms with sub-ms precision, comparable across the processes of one machine. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now()
}

/** How long a worker holds the trial of an ejected server without sending it before another worker gets it (ms). */
export const TRIAL_GRANT = 1_000

/**
 * One server's health as the primary decided it. `trialWorker`: while its trial request is due, the one worker
 * (cluster worker id) that may send it, as one process sends one; the others hold it ejected. While it is suspect
 * of a stall (with re-dispatch), the one worker that may let its stall trials through. 0 otherwise.
 * `weightShare`: the share of its weight the fleet's suspicion leaves it (1: none).
 */
export type ServerState = [upstream: string, address: string, checkUp: boolean, passive: PassiveState, suspect: boolean, operator: OperatorState, trialWorker: number, weightShare: number]

/** One counted failure, as a worker saw it: enough to rebuild the Failure the primary's detectors count. */
export interface ReportedFailure {
  kind: FailureKind
  status: number
  code: string
}

/**
 * A worker's conclusive outcomes on one server since its last report, in the order that matters to the detectors:
 * a fail-open success, a trial's outcome, then the other requests' successes and failures in the order they came.
 */
export interface Outcomes {
  upstream: string
  address: string
  /**
   * Successes and failures as runs, alternately, successes first (a run may be 0): [2, 1, 1] is S S F S. The order
   * is the consecutive mode's count: coalesced into one report, F S F S is not S S F F.
   */
  runs: number[]
  /**
   * Per run, when its last outcome came (Date.now() in the worker): the primary judges the run at that time, as one
   * process judges an outcome when it comes (nginx's fail_timeout is measured between them), not when it arrived.
   */
  times: number[]
  /** Successes of requests sent while failing open (they prove the server answers). */
  rescued: number
  /** The trial request's outcome: 0 none, 1 succeeded, 2 failed (`trialFailure`). */
  trial: 0 | 1 | 2
  trialFailure: ReportedFailure | undefined
  /** The last of the failures (the coalesced ones count as it). */
  failure: ReportedFailure | undefined
}

/**
 * A worker's live numbers for one server (for the primary's status page): the primary adds up its workers'.
 * `lastAnswered`: when a real request last succeeded there (Date.now()), for the primary's traffic-aware checks.
 * HTTP/2 providers also: the streams open, the GOAWAYs sent and the gRPC calls by status (17 counts; empty for
 * HTTP/1.1, which carries no gRPC).
 */
export type Traffic = [
  upstream: string,
  address: string,
  requests: number,
  failures: number,
  inflight: number,
  waiting: number,
  oldestWait: number,
  poolTimeouts: number,
  stuck: number,
  latency: number,
  lastAnswered: number,
  streams: number,
  goaways: number,
  grpc: number[],
]

/** A group's p99 response time (ms) over the proxy's last LATENCY_SAMPLES responses (stall.ts). */
export type GroupLatency = [upstream: string, p99: number]

/**
 * One generation as a worker applies it: the primary's config (its file's settings, checks left out: they run in
 * the primary) and, beside it, each group's live servers as the primary's membership built them (from the file,
 * discovery and admin changes; a list may be empty, as it may be there). `consumer`: the primary's place in its
 * fleet, which places the workers' subsets (the fleet is the primary's).
 */
export interface Generation {
  generation: number
  source: string
  config: Config
  servers: [upstream: string, servers: ServerSpec[]][]
  consumer: ConsumerView | undefined
}

export type ToWorker =
  | ({ t: 'init'; snapshot: Snapshot } & Generation)
  | ({ t: 'config' } & Generation)
  | ({ t: 'state' } & Delta)
  | ({ t: 'snapshot' } & Snapshot)
  /** The state of servers a worker just reported on (it may have skipped one on its own evidence). */
  | { t: 'verdict'; servers: ServerState[] }
  | { t: 'metrics'; id: number }
  | { t: 'stop'; grace: number }
  | { t: 'reopen' }
  /** The primary's log level changed by PUT /log (a reload's level goes down in its config message). */
  | { t: 'level'; level: string }
  /** The answer to a 'port' question: undefined, listen; else the errno code of the primary's try (ports.ts). */
  | { t: 'port'; id: number; error: string | undefined }

export interface Delta {
  version: number
  /** The version this change applies on: a worker at another one asks for a snapshot. */
  base: number
  /** wallNow() when the primary decided the first change of this version. */
  decided: number
  servers: ServerState[]
  /** The groups whose p99 changed: the yardstick of every worker's stall watch. */
  latency: GroupLatency[]
}

export interface Snapshot {
  version: number
  servers: ServerState[]
  latency: GroupLatency[]
}

export type ToPrimary =
  | { t: 'hello' }
  | { t: 'serving'; listeners: string[] }
  | { t: 'failed'; error: string }
  /**
   * `ok`: successes per server since the last report, and when the last one came; `traffic`: the live numbers of every server; `latency`: per
   * group with stall detection, its response times since the last report (ms to response headers).
   */
  | { t: 'batch'; generation: number; version: number; ok: [upstream: string, address: string, count: number, at: number][]; traffic: Traffic[]; latency: [upstream: string, ms: number[]][] }
  | ({ t: 'outcome' } & Outcomes)
  | { t: 'stall'; upstream: string; address: string; suspect: boolean; evidence: Record<string, unknown> | undefined }
  /** This worker just sent the trial request it was granted (`sent`; its outcome follows), or it was abandoned. */
  | { t: 'trial'; upstream: string; address: string; sent: boolean }
  /** The state version held after a change or a snapshot: when its message was read and when applied (wallNow()). */
  | { t: 'ack'; version: number; received: number; at: number }
  | { t: 'resync' }
  | { t: 'generation'; generation: number; ok: boolean; error: string | undefined; listeners: string[] }
  | { t: 'metrics'; id: number; metrics: RegistryJson }
  /** May this worker listen on this fixed-port config address? (src/workers/ports.ts) */
  | { t: 'port'; id: number; address: string }

export function isMessage<T extends { t: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
}
