// The primary's check of a fixed listener port before a worker listens there (src/workers/ports.ts), on real
// sockets: a port another process holds is refused, one the cluster's own workers hold is theirs to share.
import t from 'tap'
import { createServer, type Server } from 'node:net'
import { PortCheck } from '../src/workers/ports.js'

async function listening(host: string): Promise<{ server: Server; port: number }> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { server, port: (server.address() as { port: number }).port }
}

t.test("a port held by the cluster's own worker at that address: free to share", async (t) => {
  const ours = await listening('127.0.0.1')
  const check = new PortCheck(() => [`127.0.0.1:${ours.port}`])
  t.equal(await check.check(`127.0.0.1:${ours.port}`), undefined)
})

t.test('the same port on another address, held by another process: refused, though a worker holds that port elsewhere', async (t) => {
  const foreign = await listening('127.0.0.2')
  // A worker of the cluster listens on 127.0.0.1 with the same port number: it says nothing about 127.0.0.2.
  const ours = createServer()
  await new Promise<void>((resolve) => ours.listen(foreign.port, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => ours.close(() => resolve())))
  const check = new PortCheck(() => [`127.0.0.1:${foreign.port}`])
  t.equal(await check.check(`127.0.0.2:${foreign.port}`), 'EADDRINUSE')
  // And the worker's own address stays the cluster's.
  t.equal(await check.check(`127.0.0.1:${foreign.port}`), undefined)
})

t.test('a free port: free, and a port another process holds with no worker on it: refused', async (t) => {
  const foreign = await listening('127.0.0.1')
  const check = new PortCheck(() => [])
  t.equal(await check.check(`127.0.0.1:${foreign.port}`), 'EADDRINUSE')
  foreign.server.close()
  await new Promise((resolve) => foreign.server.once('close', resolve))
  t.equal(await check.check(`127.0.0.1:${foreign.port}`), undefined)
})
