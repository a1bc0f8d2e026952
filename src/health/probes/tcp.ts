// TCP check: the connect succeeds. Also the socket plumbing for the send/expect check.
import { connect, type Socket } from 'node:net'
import { classifyError } from '../outcome.js'
import { PASSED, TIMED_OUT, type Probe, type ProbeResult } from './probe.js'

/** Runs once the connection is up; calls `done` with the verdict. */
export type Exchange = (socket: Socket, done: (result: ProbeResult) => void) => void

const connected: Exchange = (_socket, done) => done(PASSED)

/** Connect, run `exchange`, and always destroy the socket; settles at once when `signal` aborts. */
export function tcpExchange(host: string, port: number, signal: AbortSignal, exchange: Exchange): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, noDelay: true })
    let settled = false
    const done = (result: ProbeResult): void => {
      if (settled) return
      settled = true
      signal.removeEventListener('abort', aborted)
      socket.destroy()
      resolve(result)
    }
    const aborted = (): void => done(TIMED_OUT)
    signal.addEventListener('abort', aborted)
    socket.once('connect', () => exchange(socket, done))
    socket.once('error', (err) => done({ ok: false, reason: classifyError(err).code, detail: err.message }))
    socket.once('close', () => done({ ok: false, reason: 'closed', detail: 'the server closed the connection' }))
  })
}

export class TcpProbe implements Probe {
  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  check(signal: AbortSignal): Promise<ProbeResult> {
    return tcpExchange(this.host, this.port, signal, connected)
  }

  async close(): Promise<void> {}
}
