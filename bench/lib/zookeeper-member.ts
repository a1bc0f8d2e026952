// A provider's own registry agent, in its own process: `node dist/bench/lib/zookeeper-member.js CONNECT NODE
// SESSION_MS` opens a ZooKeeper session and prints {"connected":true}; SIGUSR2 makes it create NODE as an
// ephemeral node and print {"registered":NODE} (so the registration is one request, not a process start).
// SIGKILLed, it closes nothing: its node stays until the server expires the session, as with a crashed provider.
// Like vigil's own source, it opens a new client after an expiry, and after being disconnected for longer than the
// session timeout (src/discovery/zookeeper-client.ts: a handshake the server never answers would hold it forever).
import zookeeper, { type Client, type Exception } from 'node-zookeeper-client'
import { discard, reopenWhenStuck } from '../../src/discovery/zookeeper-client.js'

const [connectString, node, sessionMs] = process.argv.slice(2)
if (connectString === undefined || node === undefined) throw new Error('usage: zookeeper-member CONNECT NODE [SESSION_MS]')
const SESSION_MS = Number(sessionMs ?? 4_000)
const say = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`)
/** Asked to register: it registers again on a new session (after an expiry or a reopen) too. */
let wanted = false
/** {"connected":true} is the start-up line only: a later client must not answer a registration's wait with it. */
let announced = false

const code = (err: Error | Exception | null): number | undefined => (err instanceof zookeeper.Exception ? err.getCode() : undefined)

/** Create the node once connected; a request cut off by a lost connection is retried (on the client of the time). */
function register(client: Client): void {
  if (client !== session) return
  if (client.getState() !== zookeeper.State.SYNC_CONNECTED) return void client.once('connected', () => register(client))
  const retry = (): void => void setTimeout(() => register(session), 200)
  client.create(node as string, Buffer.alloc(0), zookeeper.CreateMode.EPHEMERAL, (err) => {
    if (code(err) === zookeeper.Exception.NODE_EXISTS) return adopt(client, retry)
    if (err) return retry()
    say({ registered: node })
  })
}

/**
 * The node exists: the create that was cut off went through, or the node belongs to this agent's previous
 * session, which the server still holds (then it would vanish when that session expires: take it over, as
 * Curator does).
 */
function adopt(client: Client, retry: () => void): void {
  client.exists(node as string, (err, stat) => {
    if (err) return retry()
    if (stat === null) return register(client)
    if (stat.ephemeralOwner.equals(client.getSessionId())) return say({ registered: node })
    client.remove(node as string, -1, (e) => (e && code(e) !== zookeeper.Exception.NO_NODE ? retry() : register(client)))
  })
}

function open(): Client {
  const client = zookeeper.createClient(connectString as string, { sessionTimeout: SESSION_MS, spinDelay: 200 })
  // An expired session took the node with it (the registry was away too long), and a stuck client never gets
  // back: a new client, which registers again, as Curator or Dubbo's registry client do.
  const replace = (): void => {
    unwatch()
    discard(client)
    session = open()
  }
  const unwatch = reopenWhenStuck(client, SESSION_MS, replace)
  client.once('expired', replace)
  client.once('connected', () => {
    if (wanted) register(client)
    else if (!announced) say({ connected: true })
    announced = true
  })
  client.connect()
  return client
}

let session = open()
process.on('SIGUSR2', () => {
  wanted = true
  register(session)
})
