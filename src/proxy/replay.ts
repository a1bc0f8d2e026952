// A request body that streams to its attempts while its first bytes are kept, so an attempt that failed before
// its answer can be sent again elsewhere with the same body (Envoy's retry buffer). For HTTP/2 requests, whose
// body has no length up front (every gRPC call): reading it all first would stall a streaming call.
import { PassThrough, type Readable } from 'node:stream'

export class ReplayBody {
  /** What arrived so far, while it fits in the limit; undefined once it did not (no more replays). */
  private kept: Buffer[] | undefined = []
  private size = 0
  private ended = false
  private failed = false
  private readonly sinks = new Set<PassThrough>()
  /** Sinks whose buffer is full: the client body is paused until each drained or left. */
  private readonly full = new Set<PassThrough>()

  constructor(
    private readonly source: Readable,
    private readonly limit: number,
  ) {
    source.on('data', (chunk: Buffer) => this.data(chunk))
    source.on('end', () => this.end())
    source.on('error', () => this.fail())
    // Nothing flows while no attempt takes it: a byte read then would be lost to the attempt that comes.
    source.pause()
  }

  /** Another attempt can get the whole body. */
  get replayable(): boolean {
    return this.kept !== undefined && !this.failed
  }

  /** The body for one attempt: what was kept, then the rest as it comes. */
  open(): PassThrough {
    const sink = new PassThrough()
    for (const chunk of this.kept ?? []) sink.write(chunk)
    if (this.ended) sink.end()
    else {
      this.sinks.add(sink)
      sink.once('close', () => this.leave(sink))
      if (this.full.size === 0) this.source.resume()
    }
    return sink
  }

  private data(chunk: Buffer): void {
    if (this.kept !== undefined) {
      this.size += chunk.length
      if (this.size > this.limit) this.kept = undefined
      else this.kept.push(chunk)
    }
    for (const sink of this.sinks) {
      if (sink.write(chunk)) continue
      if (this.full.size === 0) this.source.pause()
      this.full.add(sink)
      sink.once('drain', () => this.drained(sink))
    }
  }

  private drained(sink: PassThrough): void {
    if (this.full.delete(sink) && this.full.size === 0) this.source.resume()
  }

  private leave(sink: PassThrough): void {
    this.sinks.delete(sink)
    if (this.full.delete(sink) && this.full.size === 0 && this.sinks.size > 0) this.source.resume()
    if (this.sinks.size === 0) this.source.pause()
  }

  private end(): void {
    this.ended = true
    for (const sink of this.sinks) sink.end()
    this.sinks.clear()
  }

  private fail(): void {
    this.failed = true
    for (const sink of this.sinks) sink.destroy()
  }
}
