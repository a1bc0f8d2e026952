// A provider's own registry agent, in its own process: `node dist/bench/lib/zookeeper-member.js CONNECT NODE
// SESSION_MS` opens a ZooKeeper session, creates NODE as an ephemeral node, prints {"registered":NODE} and stays.
// SIGKILLed, it closes nothing: its node stays until the server expires the session, as with a crashed provider.
import zookeeper from 'node-zookeeper-client'

const [connectString, node, sessionMs] = process.argv.slice(2)
if (connectString === undefined || node === undefined) throw new Error('usage: zookeeper-member CONNECT NODE [SESSION_MS]')

function register(): void {
  const client = zookeeper.createClient(connectString as string, { sessionTimeout: Number(sessionMs ?? 4_000), spinDelay: 200 })
  client.once('connected', () =>
    client.create(node as string, Buffer.alloc(0), zookeeper.CreateMode.EPHEMERAL, (err) => {
      if (err) throw err
      process.stdout.write(`${JSON.stringify({ registered: node })}\n`)
    }),
  )
  // An expired session took the node with it (the registry was away too long): register again, as Curator or
  // Dubbo's registry client do.
  client.once('expired', () => {
    client.close()
    register()
  })
  client.connect()
}
register()
