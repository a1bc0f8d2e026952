// The access log: one line per client request, written when its response closes, including the answers vigil
// gives itself (no route, no live upstream, hostile input). Lines are buffered and written asynchronously
// (sonic-boom, pino's destination), flushed at least every FLUSH_INTERVAL ms so `tail -f` sees them at once
// even at one request a minute; the hot path never waits on a write.
import { mkdir, open } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { dirname } from 'node:path'
import type { Duplex } from 'node:stream'
import pino from 'pino'
import type { Logger } from 'pino'
import type { AccessLog as AccessLogConfig } from '../config/schema.js'

/** A line waits at most this long in the buffer. */
export const FLUSH_INTERVAL = 250
/** Lines are joined here and handed to the destination in batches of about this many characters (or by the timer). */
const BATCH = 32 * 1024

export type AccessFormat = 'json' | 'combined'

interface AccessSettings {
  /** A file, reopened by reopen() (SIGUSR1); undefined for stdout. */
  path: string | undefined
  format: AccessFormat
}

/** What `log.access` asks for; undefined when it is off. */
export function accessSettings(c: AccessLogConfig | undefined): AccessSettings | undefined {
  if (c === undefined || c === false) return undefined
  if (c === true) return { path: undefined, format: 'json' }
  return { path: c.path, format: c.format ?? 'json' }
}

type Destination = ReturnType<typeof pino.destination>

/** Bytes already counted for earlier requests on a keep-alive connection. */
interface CountedSocket extends Socket {
  vigilRead?: number
  vigilWritten?: number
}

/** The times and outcome of one request, kept on its response while it runs. */
export class AccessRecord {
  /** The upstream group the request was routed to, when it was. */
  upstream: string | undefined = undefined
  /** Per attempt: address, status (or the failure code when the provider gave none), milliseconds. */
  tries: (string | number)[] | undefined = undefined
  readonly startedAt = performance.now()
  readonly time = Date.now()

  constructor(readonly log: AccessLog) {}

  attempt(address: string, status: number | string, ms: number): void {
    ;(this.tries ??= []).push(address, status, ms)
  }
}

/** The response class's view of its record (see VigilResponse in forward.ts). */
interface Recorded {
  access: AccessRecord | undefined
}

/**
 * The access log of one vigil. It outlives configurations: listeners keep this object, and a reload that changes
 * `log.access` only swaps its destination.
 */
export class AccessLog {
  private dest: Destination | undefined = undefined
  private format: AccessFormat = 'json'
  private settings: AccessSettings | undefined = undefined
  private timer: NodeJS.Timeout | undefined = undefined
  /** Lines not yet handed to the destination: one string append per request, one destination write per batch. */
  private batch = ''

  constructor(private readonly log: Logger) {}

  get enabled(): boolean {
    return this.dest !== undefined
  }

  /**
   * Apply `log.access` (at start and on every reload); a changed destination is opened before the old one is
   * closed. Resolves once a file is open; rejects with the cause when it cannot be.
   */
  async configure(c: AccessLogConfig | undefined): Promise<void> {
    const next = accessSettings(c)
    if (next?.path === this.settings?.path && next?.format === this.settings?.format) return
    const old = this.dest
    let dest: Destination | undefined
    if (next !== undefined) {
      // Proven writable first: a destination that fails to open cannot be closed again (pino flushes it at exit).
      if (next.path !== undefined) await writable(next.path)
      dest = pino.destination({ dest: next.path ?? 1, sync: false })
      dest.on('error', (err: Error) => this.log.error({ err: err.message, path: next.path }, 'access log write failed'))
    }
    this.settings = next
    this.format = next?.format ?? 'json'
    this.dest = dest
    this.flush()
    clearInterval(this.timer)
    this.timer = dest === undefined ? undefined : setInterval(flushPending, FLUSH_INTERVAL, this).unref()
    if (old !== undefined) close(old)
  }

  /** Start the record of a request; its line is written when the response closes. */
  begin(res: Recorded & { on(event: 'close', fn: () => void): unknown }): void {
    res.access = new AccessRecord(this)
    res.on('close', onResponseClose)
  }

  /** A request that has no response object: Node's parser rejected it, or a CONNECT, or a refused upgrade. */
  rejected(socket: Duplex, status: number, code: string): void {
    if (this.dest === undefined) return
    const s = socket as CountedSocket
    const line =
      this.format === 'json'
        ? `{"time":"${new Date().toISOString()}","client":${str(s.remoteAddress)},"status":${status},"bytesIn":${s.bytesRead ?? 0},"bytesOut":${s.bytesWritten ?? 0},"error":"${code}"}\n`
        : `${s.remoteAddress ?? '-'} - - [${new Date().toISOString()}] "-" ${status} ${s.bytesWritten ?? 0} "-" "-" in=${s.bytesRead ?? 0} error=${code}\n`
    this.write(line)
  }

  /**
   * An Upgrade request has no response object: its line is written when vigil refused it, when the provider
   * refused it, or when its tunnel closed (status 101, time = how long the tunnel was open).
   */
  upgrade(req: ResponseView['req'], r: AccessRecord, status: number, error: string | undefined): void {
    if (this.dest === undefined) return
    const view: ResponseView = { req, access: r, headersSent: status !== 0, statusCode: status, writableFinished: status !== 0, getHeader: () => error }
    this.write(this.line(view, r))
  }

  write(line: string): void {
    this.batch += line
    if (this.batch.length >= BATCH) this.flush()
  }

  /** Hand what is buffered to the destination, which writes it asynchronously. */
  flush(): void {
    if (this.batch === '' || this.dest === undefined) return
    this.dest.write(this.batch)
    this.batch = ''
  }

  /** Reopen the file (after logrotate moved it: SIGUSR1, like nginx); stdout has nothing to reopen. */
  reopen(): void {
    if (this.settings?.path === undefined || this.dest === undefined) return
    this.flush()
    this.dest.reopen()
    this.log.info({ path: this.settings.path }, 'access log reopened')
  }

  /** Write what is left and close the file. */
  async close(): Promise<void> {
    this.flush()
    clearInterval(this.timer)
    const dest = this.dest
    this.dest = undefined
    this.settings = undefined
    if (dest !== undefined) await close(dest)
  }

  /** The line of one finished (or abandoned) request. */
  line(res: ResponseView, r: AccessRecord): string {
    const req = res.req
    const socket = req.socket as CountedSocket
    // Bytes on the connection since the previous request on it ended: request line, headers and body in; all out.
    const read = socket.bytesRead ?? 0
    const written = socket.bytesWritten ?? 0
    const bytesIn = read - (socket.vigilRead ?? 0)
    const bytesOut = written - (socket.vigilWritten ?? 0)
    socket.vigilRead = read
    socket.vigilWritten = written
    // nginx's 499: the client closed the connection before it got an answer.
    const status = res.headersSent ? res.statusCode : 499
    const ms = Math.round((performance.now() - r.startedAt) * 10) / 10
    const time = isoTime(r.time)
    const error = res.getHeader('x-vigil-error') as string | undefined
    const aborted = !res.writableFinished
    const tries = r.tries
    const attempts = tries === undefined ? 0 : tries.length / 3
    if (this.format === 'json') {
      let t = ''
      if (tries !== undefined) {
        for (let i = 0; i < tries.length; i += 3) {
          const st = tries[i + 1] as string | number
          t += `${i === 0 ? '' : ','}{"address":"${tries[i] as string}","status":${typeof st === 'number' ? st : `"${st}"`},"ms":${tries[i + 2] as number}}`
        }
      }
      return (
        `{"time":"${time}","client":${str(socket.remoteAddress)},"method":${str(req.method)},"host":${str(req.headers.host)},` +
        `"path":${str(req.url)},"protocol":"HTTP/${req.httpVersion}","status":${status},"bytesIn":${bytesIn},"bytesOut":${bytesOut},"ms":${ms},` +
        `"upstream":${str(r.upstream)},"attempts":${attempts},"tries":[${t}],"error":${str(error)},"aborted":${aborted},` +
        `"userAgent":${str(req.headers['user-agent'])},"referer":${str(req.headers.referer)}}\n`
      )
    }
    let addresses = '-'
    let statuses = '-'
    let times = '-'
    if (tries !== undefined) {
      addresses = tries[0] as string
      statuses = String(tries[1])
      times = seconds(tries[2] as number)
      for (let i = 3; i < tries.length; i += 3) {
        addresses += `,${tries[i] as string}`
        statuses += `,${tries[i + 1] as string | number}`
        times += `,${seconds(tries[i + 2] as number)}`
      }
    }
    // nginx's "combined" first, then the proxy's own fields as key=value (upstream_addr, upstream_status, ...).
    return (
      `${socket.remoteAddress ?? '-'} - - [${time}] ${quote(`${req.method ?? '-'} ${req.url ?? '-'} HTTP/${req.httpVersion}`)} ${status} ${bytesOut} ` +
      `${quote(req.headers.referer)} ${quote(req.headers['user-agent'])} host=${quote(req.headers.host)} in=${bytesIn} time=${seconds(ms)} ` +
      `upstream=${r.upstream ?? '-'} addr=${addresses} ustatus=${statuses} utime=${times} attempts=${attempts} error=${error ?? '-'}${aborted ? ' aborted' : ''}\n`
    )
  }
}

interface ResponseView extends Recorded {
  req: { method?: string | undefined; url?: string | undefined; httpVersion: string; headers: Record<string, string | string[] | undefined> & { host?: string; referer?: string; 'user-agent'?: string }; socket: Socket }
  headersSent: boolean
  statusCode: number
  writableFinished: boolean
  getHeader(name: string): unknown
}

function onResponseClose(this: ResponseView): void {
  const r = this.access as AccessRecord
  this.access = undefined
  if (r.log.enabled) r.log.write(r.log.line(this, r))
}

function flushPending(log: AccessLog): void {
  log.flush()
}

/** A JSON string, or null; client input may hold anything. */
function str(s: string | undefined): string {
  return s === undefined ? 'null' : JSON.stringify(s)
}

/** A combined-format quoted field: quotes and control characters escaped, like nginx's escape=default. */
function quote(s: string | undefined): string {
  if (s === undefined) return '"-"'
  // eslint-disable-next-line no-control-regex
  return `"${s.replace(/["\\\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}"`
}

const seconds = (ms: number): string => (ms / 1000).toFixed(3)

let lastMs = 0
let lastIso = ''

/** ISO 8601 of a millisecond time, made once per millisecond: at thousands of requests a second most share one. */
function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms
    lastIso = new Date(ms).toISOString()
  }
  return lastIso
}

async function writable(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await (await open(path, 'a')).close()
}

function close(dest: Destination): Promise<void> {
  return new Promise((resolve) => {
    dest.once('close', () => resolve())
    dest.once('error', () => resolve())
    dest.end()
  })
}
