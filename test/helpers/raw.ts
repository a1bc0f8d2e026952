// Raw-socket clients and providers for the hostile-input tests: exact bytes in, exact bytes (or a closed socket) out.
import { connect, createServer, type Socket, type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { echo, httpServer } from './index.js'

type Tap = { teardown(fn: () => unknown): void }

export interface Exchange {
  /** Everything received, as latin1 text. */
  text: string
  /** Status code of the first response, or undefined when nothing parseable came back. */
  status: number | undefined
  /** The server closed the connection (rather than the exchange ending on `until`). */
  closed: boolean
  /** The value of a header of the first response, lowercase name. */
  header(name: string): string | undefined
}

export interface ExchangeOptions {
  /** Bytes to send; an array is sent piece by piece, `gap` ms apart (slow clients). */
  send: string | Buffer | (string | Buffer)[]
  gap?: number
  /** Stop as soon as the received text satisfies this (default: wait for the server to close). */
  until?: (text: string) => boolean
  /** Give up (and report closed: false) after this long; a generous safety net, never a pass/fail timing. */
  limit?: number
  /** Do not read: pause the socket after writing (a client that never reads the response). */
  noRead?: boolean
}

/** One raw TCP conversation with a server on loopback. */
export async function exchange(port: number, options: ExchangeOptions): Promise<Exchange> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  let text = ''
  let closed = false
  const done = new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1')
      if (options.until?.(text) === true) resolve()
    })
    socket.once('close', () => {
      closed = true
      resolve()
    })
  })
  const pieces = Array.isArray(options.send) ? options.send : [options.send]
  const writing = (async () => {
    for (const piece of pieces) {
      if (socket.destroyed) return
      socket.write(piece)
      if (options.gap !== undefined) await sleep(options.gap)
    }
  })()
  if (options.noRead === true) socket.pause()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, options.limit ?? 15_000)))])
  clearTimeout(timer)
  socket.destroy()
  await writing
  return parse(text, closed)
}

function parse(text: string, closed: boolean): Exchange {
  const m = /^HTTP\/1\.[01] ([0-9]{3})/.exec(text)
  const head = text.slice(0, Math.max(0, text.indexOf('\r\n\r\n')))
  return {
    text,
    status: m === null ? undefined : Number(m[1]),
    closed,
    header(name: string) {
      const h = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(head)
      return h === null ? undefined : (h[1] as string).trim()
    },
  }
}

/** A provider that answers every connection with `behave(socket, request)` once a request head has arrived. */
export async function rawProvider(t: Tap, behave: (socket: Socket, head: string) => void): Promise<{ port: number; address: string; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.once('close', () => sockets.delete(socket))
    let head = ''
    const onData = (d: Buffer): void => {
      head += d.toString('latin1')
      if (head.includes('\r\n\r\n')) {
        socket.off('data', onData)
        behave(socket, head)
      }
    }
    socket.on('data', onData)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    return new Promise((resolve) => server.close(resolve))
  })
  const port = (server.address() as AddressInfo).port
  return { port, address: `127.0.0.1:${port}`, sockets }
}

/** A request as a client would write it. */
export const request = (path = '/', extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`

/** What a recording provider saw of one request: enough to tell whether an Upgrade reached it. */
export interface Seen {
  method?: string | undefined
  url?: string | undefined
  upgrade?: string | undefined
  settings?: string | undefined
  body: string
}

/** An echo provider that records every request it gets (for the upgrade tests), closed at teardown. */
export async function recordingProvider(t: Tap): Promise<{ address: string; seen: Seen[] }> {
  const seen: Seen[] = []
  const up = await httpServer(t, (req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => (body += d.toString()))
    req.on('end', () => seen.push({ method: req.method, url: req.url, upgrade: req.headers.upgrade, settings: req.headers['http2-settings'] as string | undefined, body }))
    echo(req, res)
  })
  return { address: up.address, seen }
}
