// A provider's own registry agent, in its own process: `node dist/bench/lib/zookeeper-member.js CONNECT NODE
// SESSION_MS` opens a ZooKeeper session and prints {"connected":true}; SIGUSR2 makes it create NODE as an
// ephemeral node and print {"registered":NODE} (so the registration is one request, not a process start).
// SIGKILLed, it closes nothing: its node stays until the server expires the session, as with a crashed provider.
import zookeeper, { type Client } from 'node-zookeeper-client'

const [connectString, node, sessionMs] = process.argv.slice(2)
if (connectString === undefined || node === undefined) throw new Error('usage: zookeeper-member CONNECT NODE [SESSION_MS]')
const say = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`)
/** Asked to register: it registers again on a new session (after an expiry) too. */
let wanted = false

/** Create the node once connected; a request cut off by a lost connection is retried on the next one. */
function register(client: Client): void {
  if (client.getState() !== zookeeper.State.SYNC_CONNECTED) return void client.once('connected', () => register(client))
  client.create(node as string, Buffer.alloc(0), zookeeper.CreateMode.EPHEMERAL, (err) => {
    // NODE_EXISTS: the create that was cut off had gone through.
    if (err && !(err instanceof zookeeper.Exception && err.getCode() === zookeeper.Exception.NODE_EXISTS)) return void setTimeout(() => register(client), 200)
    say({ registered: node })
  })
}

function open(): Client {
  const client = zookeeper.createClient(connectString as string, { sessionTimeout: Number(sessionMs ?? 4_000), spinDelay: 200 })
  client.once('connected', () => (wanted ? register(client) : say({ connected: true })))
  // An expired session took the node with it (the registry was away too long): register again, as Curator or
  // Dubbo's registry client do.
  client.once('expired', () => {
    client.close()
    session = open()
  })
  client.connect()
  return client
}

let session = open()
process.on('SIGUSR2', () => {
  wanted = true
  register(session)
})
