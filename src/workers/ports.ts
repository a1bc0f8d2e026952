// A fixed listener port a cluster worker is about to listen on, tried by its primary first.
//
// Why: Node 20's cluster keys the socket its workers share by address, port and how many times that worker has
// called listen() on that address, and a listen() that failed (a port another process holds) still counts. After
// one, the worker's next listen() there has another key than its siblings', so the primary binds a second socket
// and gets EADDRINUSE from its own: for the life of that worker, and a replacement (count 0) can never share the
// port with a sibling that counted a failure; it would fail to start forever. (Later Node versions drop the count
// from the key of a fixed port: nodejs/node#60141.) So a worker never tries a port another process holds: the
// primary binds it itself first, and closes it at once.
import { createServer } from 'node:net'
import { canonicalListenAddress, listenTarget } from '../net.js'

export class PortCheck {
  /** Listen addresses the cluster owns: answered free once, and kept while the config listens there. */
  private readonly ours = new Set<string>()
  /** One try at a time per address: a second worker asking meanwhile takes the first one's answer. */
  private readonly trying = new Map<string, Promise<string | undefined>>()

  constructor(
    /** The addresses the workers listen on (as they reported them after binding). */
    private readonly held: () => Iterable<string>,
  ) {}

  /** Undefined when a worker may listen on `address` (a config address); else the errno code why not. */
  check(address: string): Promise<string | undefined> {
    const key = canonicalListenAddress(address)
    if (this.ours.has(key)) return Promise.resolve(undefined)
    let answer = this.trying.get(key)
    if (answer === undefined) {
      answer = this.tryPort(address, key).finally(() => this.trying.delete(key))
      this.trying.set(key, answer)
    }
    return answer
  }

  /** A generation was applied: an address its listeners dropped is no longer the cluster's once its workers let go. */
  retain(addresses: readonly string[]): void {
    const kept = new Set(addresses.map(canonicalListenAddress))
    for (const key of this.ours) if (!kept.has(key)) this.ours.delete(key)
  }

  private async tryPort(address: string, key: string): Promise<string | undefined> {
    const { host, port } = listenTarget(address)
    const err = await tryListen(host, port)
    // In use by a worker of this cluster (one that still serves a generation with this listener): its own.
    const own = err?.code === 'EADDRINUSE' && [...this.held()].some((bound) => takes(bound, host, port))
    if (err !== undefined && !own) return err.code ?? err.message
    this.ours.add(key)
    return undefined
  }
}

const WILDCARDS = new Set(['::', '0.0.0.0'])

/**
 * Whether a socket bound at `bound` (as a worker reports it: "127.0.0.1:8080", ":::8080") is what keeps `host:port`
 * from a new listen: the same port, and the same host or a wildcard on either side. The same port on another
 * address (127.0.0.2 beside 127.0.0.1) is someone else's.
 */
function takes(bound: string, host: string | undefined, port: number): boolean {
  const at = bound.lastIndexOf(':')
  if (Number(bound.slice(at + 1)) !== port) return false
  const boundHost = bound.slice(0, at)
  return host === undefined || WILDCARDS.has(host) || WILDCARDS.has(boundHost) || boundHost === host
}

function tryListen(host: string | undefined, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', resolve)
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)))
  })
}
