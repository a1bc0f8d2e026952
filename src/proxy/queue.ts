// A request parked in its upstream's wait queue because every eligible peer was at its maxConns limit. It leaves
// by admission (forwarded as if it had just arrived), by timeout (503 queue_timeout), by its gRPC deadline
// (DEADLINE_EXCEEDED) or by the client closing.
import type { IncomingMessage } from 'node:http'
import type { Upstream } from '../upstream/upstream.js'
import type { Waiter } from '../upstream/wait-queue.js'
import type { ForwardHooks, Target, VigilResponse } from './forward.js'
import { sendError } from './respond.js'
import { GRPC_DEADLINE_EXCEEDED, sendGrpcStatus } from './grpc.js'

export type ForwardFn = (req: IncomingMessage, res: VigilResponse, upstream: Upstream, target: Target, hooks: ForwardHooks) => void

/**
 * Queue the request if its upstream has a queue with room; false means the caller answers it now. `deadline`:
 * Date.now() at which a gRPC call's grpc-timeout runs out (0 for none), if that comes before the queue's timeout.
 */
export function enqueue(forward: ForwardFn, req: IncomingMessage, res: VigilResponse, upstream: Upstream, target: Target, hooks: ForwardHooks, deadline = 0): boolean {
  const queue = upstream.queue
  if (queue === undefined || queue.length >= queue.size) return false
  queue.offer(new QueuedRequest(forward, req, res, upstream, target, hooks, deadline))
  return true
}

class QueuedRequest implements Waiter {
  private readonly timer: NodeJS.Timeout
  private readonly onClose = (): void => this.leave()
  /** A pipelined request's response gets no 'close' when the client leaves (see forward.ts); its request does. */
  private readonly onRequestClose = (): void => {
    if (this.req.socket.destroyed) this.leave()
  }

  constructor(
    private readonly forward: ForwardFn,
    private readonly req: IncomingMessage,
    private readonly res: VigilResponse,
    private readonly upstream: Upstream,
    private readonly target: Target,
    private readonly hooks: ForwardHooks,
    deadline: number,
  ) {
    const timeout = (upstream.queue as { timeout: number }).timeout
    const left = deadline === 0 ? timeout : deadline - Date.now()
    this.timer = left < timeout ? setTimeout(() => this.deadlineExceeded(), Math.max(0, left)) : setTimeout(() => this.expire(), timeout)
    res.once('close', this.onClose)
    req.once('close', this.onRequestClose)
  }

  private unlisten(): void {
    this.res.off('close', this.onClose)
    this.req.off('close', this.onRequestClose)
  }

  admit(): void {
    clearTimeout(this.timer)
    this.unlisten()
    this.forward(this.req, this.res, this.upstream, this.target, this.hooks)
  }

  refuse(code: string, detail: string): void {
    clearTimeout(this.timer)
    this.unlisten()
    sendError(this.res, 503, code, detail)
    this.hooks.done()
  }

  private expire(): void {
    this.upstream.queue?.remove(this)
    this.refuse('queue_timeout', `no server in "${this.upstream.name}" had room under maxConns in time`)
  }

  private deadlineExceeded(): void {
    clearTimeout(this.timer)
    this.unlisten()
    this.upstream.queue?.remove(this)
    sendGrpcStatus(this.res, GRPC_DEADLINE_EXCEEDED, 'deadline_exceeded', `deadline exceeded: the call waited in the queue of "${this.upstream.name}" for its whole grpc-timeout`)
    this.hooks.done()
  }

  /** The client went away while waiting. */
  private leave(): void {
    clearTimeout(this.timer)
    this.unlisten()
    this.upstream.queue?.remove(this)
    this.hooks.done()
  }
}
