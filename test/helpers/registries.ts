// Real ZooKeeper and etcd servers for a test file: started once, shared by the file's tests, killed (whole
// process group) and their data removed at teardown.
import { EtcdServer, Relay, ZooKeeperAdmin, ZooKeeperMember, ZooKeeperServer } from '../../bench/lib/registries.js'

type Tap = { teardown(fn: () => unknown): void }

export { EtcdServer, Relay, ZooKeeperAdmin, ZooKeeperMember, ZooKeeperServer }

/** A relay to `port`, closed at teardown. */
export async function relay(t: Tap, port: number, listen = 0): Promise<Relay> {
  const r = await Relay.create(port, listen)
  t.teardown(() => r.close())
  return r
}

export async function startZooKeeper(t: Tap): Promise<{ server: ZooKeeperServer; admin: ZooKeeperAdmin }> {
  const server = await ZooKeeperServer.create()
  t.teardown(() => server.destroy())
  const admin = await ZooKeeperAdmin.connect(server.connect)
  t.teardown(() => admin.close())
  return { server, admin }
}

export async function startEtcd(t: Tap, options: Parameters<typeof EtcdServer.create>[0] = {}): Promise<EtcdServer> {
  const server = await EtcdServer.create(options)
  t.teardown(() => server.destroy())
  return server
}

/** Addresses a group serves now, sorted. */
export function addresses(vigil: { upstreams: ReadonlyMap<string, { peers: readonly { address: string }[] }> }, upstream = 'api'): string[] {
  return (vigil.upstreams.get(upstream)?.peers ?? []).map((p) => p.address).sort()
}
