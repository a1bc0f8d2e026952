// TCP send/expect check for providers that do not speak HTTP: write `send`, pass when the reply contains
// `expect` (a Redis `PING\r\n` / `+PONG` exchange, an SMTP banner...).
import type { Socket } from 'node:net'
import { tcpExchange } from './tcp.js'
import { PASSED, type Probe, type ProbeResult } from './probe.js'

/** Replies are searched in their first 64 KiB. */
const MAX_REPLY = 64 * 1024

export class SendExpectProbe implements Probe {
  private readonly expect: Buffer | undefined

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly send: string | undefined,
    expect: string | undefined,
  ) {
    this.expect = expect === undefined ? undefined : Buffer.from(expect)
  }

  check(signal: AbortSignal): Promise<ProbeResult> {
    return tcpExchange(this.host, this.port, signal, (socket, done) => this.exchange(socket, done))
  }

  private exchange(socket: Socket, done: (result: ProbeResult) => void): void {
    if (this.send !== undefined) socket.write(this.send)
    const expect = this.expect
    if (expect === undefined) {
      done(PASSED)
      return
    }
    let reply = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      reply = Buffer.concat([reply, chunk])
      if (reply.includes(expect)) done(PASSED)
      else if (reply.length >= MAX_REPLY) done({ ok: false, reason: 'unexpected_reply', detail: reply.subarray(0, 80).toString() })
    })
    socket.once('end', () => done({ ok: false, reason: 'unexpected_reply', detail: reply.subarray(0, 80).toString() }))
  }

  async close(): Promise<void> {}
}
