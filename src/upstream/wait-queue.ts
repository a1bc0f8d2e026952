// The bounded queue of requests waiting for a peer with room under its maxConns limit (nginx `queue`): FIFO, a
// fixed size, and a timeout per waiter kept by the waiter itself.

/** Something waiting for a peer to have room: a queued request, in the proxy. */
export interface Waiter {
  /** A peer has room now: go and take it. */
  admit(): void
  /** There will never be room (the group was removed): answer 503 with this code now. */
  refuse(code: string, detail: string): void
}

export const DEFAULT_QUEUE_TIMEOUT = 60_000

export class WaitQueue {
  private readonly waiters: Waiter[] = []

  constructor(
    readonly size: number,
    readonly timeout: number,
  ) {}

  get length(): number {
    return this.waiters.length
  }

  /** Join the tail; false when the queue is full. */
  offer(w: Waiter): boolean {
    if (this.waiters.length >= this.size) return false
    this.waiters.push(w)
    return true
  }

  shift(): Waiter | undefined {
    return this.waiters.shift()
  }

  /** Empty the queue, refusing every waiter (in arrival order). */
  refuseAll(code: string, detail: string): void {
    for (const w of this.waiters.splice(0)) w.refuse(code, detail)
  }

  /** Leave the queue early (timed out, or the client went away). */
  remove(w: Waiter): void {
    const i = this.waiters.indexOf(w)
    if (i !== -1) this.waiters.splice(i, 1)
  }
}
