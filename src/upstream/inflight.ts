// Every attempt in flight to one peer, oldest first: what the watchdog (src/proxy/watchdog.ts) walks to find
// requests waiting too long for a pool connection and attempts that outlived all their timeouts. Intrusive
// links, so joining and leaving cost a few pointer writes and no allocation.

export interface InFlightEntry {
  prevInPeer: InFlightEntry | undefined
  nextInPeer: InFlightEntry | undefined
}

export class InFlightList {
  head: InFlightEntry | undefined = undefined
  tail: InFlightEntry | undefined = undefined

  add(e: InFlightEntry): void {
    e.prevInPeer = this.tail
    if (this.tail === undefined) this.head = e
    else this.tail.nextInPeer = e
    this.tail = e
  }

  remove(e: InFlightEntry): void {
    const prev = e.prevInPeer
    const next = e.nextInPeer
    if (prev === undefined) {
      if (this.head !== e) return
      this.head = next
    } else prev.nextInPeer = next
    if (next === undefined) this.tail = prev
    else next.prevInPeer = prev
    e.prevInPeer = undefined
    e.nextInPeer = undefined
  }
}
