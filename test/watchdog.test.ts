// The in-flight watchdog end to end: a real provider, the real proxy, real client sockets, and one fault put into
// the dependency the watchdog guards against: the server's connection pool takes a request and never calls it
// back (the bug class where a request waits inside undici and no timeout of vigil's applies). The watchdog must
// show it waiting (status page: waiting, oldestWaitMs), then end it once it outlived every timeout: 500
// internal_stuck to the client, counted as stuck (status page, metrics), logged once at error, in flight back to
// 0; and it must do the same for a server a reload removed while the lost request was on it.
import t from 'tap'
import { join } from 'node:path'
import type { Dispatcher } from 'undici'
import { request } from 'undici'
import pino from 'pino'
import type { Config } from '../src/index.js'
import { get, httpServer, startProxy } from './helpers/index.js'
import { startProxyFromFile, tempDir, until, writeConfig } from './helpers/config-file.js'

interface Row {
  name: string
  inflight: number
  waiting: number
  oldestWaitMs: number
  stuck: number
  failures: number
}

function memoryLog(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) })
  return { logger, lines }
}

/** The fault: `peer`'s pool accepts every request and never answers, nor errors, nor times out. */
function loseRequests(peer: { pool: { dispatch(o: Dispatcher.DispatchOptions, h: Dispatcher.DispatchHandler): boolean } }): void {
  peer.pool.dispatch = () => true
}

// Short timeouts: the attempt counts as stuck after queue + connect + response + 1 s of slack = 1.6 s.
const timeouts = { connect: '200ms', queue: '200ms', response: '200ms' }
const stuckLine = (l: Record<string, unknown>): boolean => String(l['msg']).startsWith('internal error: attempts outlived their timeouts')

t.test('a lost request is shown waiting, then ended as stuck: 500 to the client, counted, logged at error', async (t) => {
  const up = await httpServer(t, (_req, res) => res.end('ok'))
  const { logger, lines } = memoryLog()
  const { vigil, url, admin } = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }], timeouts, retry: { tries: 1 } } } }, logger)
  loseRequests(vigil.upstreams.get('api')?.peers[0] as Parameters<typeof loseRequests>[0])
  const row = async (): Promise<Row> => (JSON.parse((await get(`${admin}/status?format=json`)).body) as { servers: { server: Row[] } }).servers.server[0] as Row
  const answer = request(`${url}/lost`).then(async (r) => ({ status: r.statusCode, code: r.headers['x-vigil-error'], body: await r.body.text() }))
  let seen: Row | undefined
  await until(async () => {
    seen = await row()
    return seen.waiting === 1 && seen.oldestWaitMs > 0
  }, 'the lost request shown waiting')
  t.match(seen, { inflight: 1, waiting: 1, stuck: 0 }, 'in flight and waiting, with its age')
  const got = await answer
  t.match(got, { status: 500, code: 'internal_stuck' }, 'the client gets an answer, not silence')
  const after = await row()
  t.match(after, { inflight: 0, waiting: 0, oldestWaitMs: 0, stuck: 1 }, 'in flight back to 0, counted as stuck')
  t.equal(after.failures, 0, 'a vigil bug is not held against the provider')
  t.match((await get(`${admin}/metrics`)).body, /vigil_stuck_attempts_total\{[^}]*\} 1/)
  const said = lines.filter(stuckLine)
  t.equal(said.length, 1, 'logged once')
  t.match(said[0], { level: 50, upstream: 'api', peer: up.address, stuck: 1 })
})

t.test('a server removed by a reload is still watched while it finishes: its lost request is ended as stuck', async (t) => {
  const [a, b] = [await httpServer(t, (_req, res) => res.end('a')), await httpServer(t, (_req, res) => res.end('b'))]
  const dir = tempDir(t)
  const file = join(dir, 'vigil.json')
  const config = (address: string): Config => ({
    listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
    admin: { address: '127.0.0.1:0' },
    reload: { watch: false },
    upstreams: { api: { servers: [{ address }], timeouts, retry: { tries: 1 } } },
  })
  const { logger, lines } = memoryLog()
  const { vigil, url } = await startProxyFromFile(t, file, config(a.address), logger)
  loseRequests(vigil.upstreams.get('api')?.peers[0] as Parameters<typeof loseRequests>[0])
  const answer = request(`${url}/lost`).then(async (r) => ({ status: r.statusCode, code: r.headers['x-vigil-error'] }))
  await until(() => vigil.upstreams.get('api')?.peers[0]?.inflight === 1, 'the request on a')
  writeConfig(file, config(b.address))
  await vigil.reload()
  t.same(vigil.upstreams.get('api')?.peers.map((p) => p.address), [b.address], 'a was removed; its pool drains')
  t.match(await answer, { status: 500, code: 'internal_stuck' }, 'the attempt on the removed server was ended')
  t.match(lines.find(stuckLine), { level: 50, upstream: 'api', peer: a.address, stuck: 1 }, 'and reported, naming the removed server')
  t.equal((await (await request(url)).body.text()), 'b', 'the new server serves')
})
