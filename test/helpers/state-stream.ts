// The primary's state stream (src/workers/state-stream.ts) to one worker in one process, for the tests of the
// stream and its replicas.
import type { Upstream } from '../../src/upstream/upstream.js'
import { StateStream } from '../../src/workers/state-stream.js'
import type { Delta } from '../../src/workers/protocol.js'

/** The primary's stream of `primary`'s state to one worker (id 7): what it sent, and the versions measured. */
export function streamOf(primary: Upstream): { sent: Delta[]; measured: number[]; stream: StateStream } {
  const sent: Delta[] = []
  const measured: number[] = []
  const stream = new StateStream(
    () => new Map([['api', primary]]),
    (d) => {
      sent.push(d)
      return [7]
    },
    (p) => measured.push(p.version),
    () => [7],
  )
  return { sent, measured, stream }
}
