// HTTP/2 written frame by frame on a raw socket, for the hostile-client tests: exactly the frames an attacker sends
// (a stream opened and reset in a loop, floods of SETTINGS or PING), which no well-behaved client library writes.
import { connect as tcp, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'

type Tap = { teardown(fn: () => unknown): void }

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
export const DATA = 0
export const HEADERS = 1
export const RST_STREAM = 3
export const SETTINGS = 4
export const PING = 6
export const GOAWAY = 7

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream, 5)
  return Buffer.concat([head, payload])
}

/** GET `path` as an HPACK block of static-table entries and one literal (:authority), ending the stream. */
export function get(stream: number, path = '/'): Buffer {
  const authority = Buffer.from('vigil.test')
  const p = Buffer.from(path)
  const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x04, p.length]), p, Buffer.from([0x01, authority.length]), authority])
  return frame(HEADERS, 0x5, stream, block)
}

export const rst = (stream: number, code: number): Buffer => frame(RST_STREAM, 0, stream, Buffer.from([0, 0, 0, code]))

export interface Frame {
  type: number
  flags: number
  stream: number
  payload: Buffer
}

export interface RawClient {
  socket: Socket
  /** Every frame from the server, in order. */
  frames: Frame[]
  closed: Promise<void>
  /** The first frame of `type` from the server (already received, or when it comes). */
  seen(type: number): Promise<Frame>
}

/**
 * A raw HTTP/2 client: preface and `settings` sent, every frame from the server collected, its SETTINGS
 * acknowledged; destroyed at teardown. Over TLS (ALPN h2, trusting `tls.ca`) when `tls` is given, else h2c.
 */
export function rawClient(t: Tap, port: number, settings: Buffer = Buffer.alloc(0), tls?: { ca: Buffer }): RawClient {
  const socket = tls === undefined ? tcp(port, '127.0.0.1') : tlsConnect({ port, host: '127.0.0.1', ca: tls.ca, servername: 'localhost', ALPNProtocols: ['h2'] })
  socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, settings)]))
  const frames: Frame[] = []
  const waiters: { type: number; resolve: (f: Frame) => void }[] = []
  let buf = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk])
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3)
      if (buf.length < 9 + len) break
      const f = { type: buf[3] as number, flags: buf[4] as number, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) }
      buf = buf.subarray(9 + len)
      frames.push(f)
      // ACK the server's SETTINGS like a real client would.
      if (f.type === SETTINGS && (f.flags & 1) === 0) socket.write(frame(SETTINGS, 1, 0))
      for (const w of waiters.splice(0)) if (w.type === f.type) w.resolve(f)
      else waiters.push(w)
    }
  })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  t.teardown(() => socket.destroy())
  return {
    socket,
    frames,
    closed,
    seen: (type) => {
      const found = frames.find((f) => f.type === type)
      return found !== undefined ? Promise.resolve(found) : new Promise((resolve) => waiters.push({ type, resolve }))
    },
  }
}

export const goawayCode = (f: Frame): number => f.payload.readUInt32BE(4)

/** `count` streams each opened (GET /) and at once cancelled: the rapid-reset attack (CVE-2023-44487). */
export function rapidResets(count: number, cancel: number): Buffer {
  const burst: Buffer[] = []
  for (let i = 0; i < count; i++) burst.push(get(2 * i + 1), rst(2 * i + 1, cancel))
  return Buffer.concat(burst)
}

/** `count` frames of `type` (SETTINGS, empty, or PING) in one write: a frame flood. */
export function flood(type: typeof SETTINGS | typeof PING, count: number): Buffer {
  return Buffer.concat(Array.from({ length: count }, () => (type === PING ? frame(PING, 0, 0, Buffer.alloc(8)) : frame(SETTINGS, 0, 0))))
}
