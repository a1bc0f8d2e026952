// Registry security through vigil's config, against real servers: etcd over TLS with client certificates (made
// with openssl for the test), etcd user/password authentication, and ZooKeeper digest authentication with an ACL
// on the path. Each case also shows the refusal a wrong or missing credential gets: a clear start error.
import t from 'tap'
import { createHash } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Etcd3, Range } from 'etcd3'
import zookeeper from 'node-zookeeper-client'
import { RegistryStartError, Vigil, type Config } from '../src/index.js'
import { get, httpServer, silent, startProxy } from './helpers/index.js'
import { waitFor } from './helpers/wait.js'
import { makeCerts } from './helpers/tls.js'
import { addresses, startEtcd, startZooKeeper, ZooKeeperAdmin } from './helpers/registries.js'

const provider = async (tt: Parameters<typeof httpServer>[0], name: string): Promise<string> =>
  (await httpServer(tt, (_req, res) => res.end(name))).address

type Entry = Config['upstreams'][string]['servers'][number]

/** Starting vigil with this one entry fails: the error, to assert on. */
async function startError(entry: Entry): Promise<Error> {
  const config: Config = { listeners: [{ address: '127.0.0.1:0', upstream: 'api' }], upstreams: { api: { servers: [entry] } } }
  const err = await new Vigil(config, { logger: silent, admin: false }).start().then(
    async (v) => {
      await v.stop(100)
      return new Error('started')
    },
    (e: unknown) => e as Error,
  )
  return err
}

t.test('etcd over TLS with a client certificate', async (t) => {
  const certs = makeCerts(mkdtempSync(join(tmpdir(), 'vigil-etcd-tls-')))
  const tls = { ca: certs.caFile, cert: certs.certFile, key: certs.keyFile, clientCert: certs.clientCertFile, clientKey: certs.clientKeyFile }
  const etcd = await startEtcd(t, { tls })
  const kv = new Etcd3({ hosts: etcd.endpoint, credentials: { rootCertificate: certs.ca, certChain: await readFile(certs.clientCertFile), privateKey: await readFile(certs.clientKeyFile) } })
  t.teardown(() => kv.close())
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await kv.put('/tls/api/a').value(a)
  const source = { endpoints: [etcd.endpoint], prefix: '/tls/api/', connectTimeout: '3s', resyncInterval: '1s' }
  const { vigil, url } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: { ...source, tls: { ca: certs.caFile, cert: certs.clientCertFile, key: certs.clientKeyFile } } }] } } })
  t.same(addresses(vigil), [a], 'read over TLS')
  t.equal((await get(url)).body, 'a')
  await kv.put('/tls/api/b').value(b)
  await waitFor(() => addresses(vigil).length === 2)
  t.pass('and watched over TLS')

  const noCert = await startError({ etcd: { ...source, connectTimeout: '1s', tls: { ca: certs.caFile } } })
  t.type(noCert, RegistryStartError, 'without a client certificate: refused by the server')
  t.match(noCert.message, /upstreams\.api\.servers\[0\]\.etcd: etcd https:\/\/127\.0\.0\.1:\d+ \/tls\/api\/ is unreachable/)
})

t.test('etcd with user and password', async (t) => {
  const etcd = await startEtcd(t)
  const root = new Etcd3({ hosts: etcd.endpoint })
  await root.role('root').create()
  await (await root.user('root').create('root-secret')).addRole('root')
  const reader = await root.role('api-reader').create()
  await reader.grant({ permission: 'Read', range: Range.prefix('/auth/api/') })
  await (await root.user('vigil').create('vigil-secret')).addRole('api-reader')
  await root.auth.authEnable()
  root.close()
  const admin = new Etcd3({ hosts: etcd.endpoint, auth: { username: 'root', password: 'root-secret' } })
  t.teardown(() => admin.close())
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  await admin.put('/auth/api/a').value(a)
  const source = { endpoints: [etcd.endpoint], prefix: '/auth/api/', connectTimeout: '3s', resyncInterval: '1s' }
  const { vigil } = await startProxy(t, { upstreams: { api: { servers: [{ etcd: { ...source, username: 'vigil', password: 'vigil-secret' } }] } } })
  t.same(addresses(vigil), [a], 'read as a user that may only read the prefix')
  await admin.put('/auth/api/b').value(b)
  await waitFor(() => addresses(vigil).length === 2)
  t.pass('and watched')

  const wrong = await startError({ etcd: { ...source, connectTimeout: '1s', username: 'vigil', password: 'nope' } })
  t.type(wrong, RegistryStartError)
  t.match(wrong.message, /upstreams\.api\.servers\[0\]\.etcd: .* is unreachable \(.*(authentication failed|invalid user ID or password)/i, 'a wrong password is named')
  const none = await startError({ etcd: { ...source, connectTimeout: '1s' } })
  t.match(none.message, /unreachable \(.*(user name is empty|permission denied)/i, 'no credentials: refused')
})

t.test('ZooKeeper digest authentication, with an ACL on the path', async (t) => {
  const { server: zk, admin } = await startZooKeeper(t)
  const digest = (user: string, password: string): string => `${user}:${createHash('sha1').update(`${user}:${password}`).digest('base64')}`
  // Only user "vigil" may read the providers' path and its children; "deployer" may do everything.
  const acl = [
    new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('digest', digest('deployer', 'deploy-secret'))),
    new zookeeper.ACL(zookeeper.Permission.READ, new zookeeper.Id('digest', digest('vigil', 'vigil-secret'))),
  ]
  await admin.mkdirp('/secure/api')
  const deployer = await ZooKeeperAdmin.connect(zk.connect)
  t.teardown(() => deployer.close())
  deployer.client.addAuthInfo('digest', Buffer.from('deployer:deploy-secret'))
  const path = '/secure/api/providers'
  await new Promise<void>((resolve, reject) => deployer.client.create(path, Buffer.alloc(0), acl, zookeeper.CreateMode.PERSISTENT, (err) => (err ? reject(err) : resolve())))
  const [a, b] = [await provider(t, 'a'), await provider(t, 'b')]
  const register = (address: string): Promise<void> =>
    new Promise((resolve, reject) => deployer.client.create(`${path}/${address}`, Buffer.alloc(0), acl, zookeeper.CreateMode.EPHEMERAL, (err) => (err ? reject(err) : resolve())))
  await register(a)
  t.rejects(admin.children(path), 'the path is closed to an unauthenticated client')

  const source = { servers: zk.connect, path, connectTimeout: '3s', resyncInterval: '1s', sessionTimeout: '4s' }
  const { vigil, url } = await startProxy(t, { upstreams: { api: { servers: [{ zookeeper: { ...source, auth: { user: 'vigil', password: 'vigil-secret' } } }] } } })
  t.same(addresses(vigil), [a], 'listed with digest auth')
  t.equal((await get(url)).body, 'a')
  await register(b)
  await waitFor(() => addresses(vigil).length === 2)
  t.pass('and watched')

  const wrong = await startError({ zookeeper: { ...source, connectTimeout: '1s', auth: { user: 'vigil', password: 'nope' } } })
  t.type(wrong, RegistryStartError)
  t.match(wrong.message, /upstreams\.api\.servers\[0\]\.zookeeper: zookeeper .* is unreachable \(.*NO_AUTH/, 'a wrong password: no access, named')
})
