// "server capped" is said once per episode: a flapping provider the cap keeps in (a group of one never ejects)
// fails every other request, and the log says so once, not once per failure.
import t from 'tap'
import pino from 'pino'
import { client, get, httpServer, startProxy } from './helpers/index.js'

t.test('server capped is logged once per episode', async (t) => {
  let n = 0
  const up = await httpServer(t, (_req, res) => {
    res.statusCode = n++ % 2 === 0 ? 502 : 200
    res.end('x')
  })
  const lines: string[] = []
  const logger = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) })
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: up.address }], retry: { tries: 1 }, passive: { failOn: ['http_502'] } } } }, logger)
  const agent = client(t)
  const statuses: number[] = []
  for (let i = 0; i < 20; i++) statuses.push((await get(`${proxy.url}/`, { dispatcher: agent })).status)
  t.equal(statuses.filter((s) => s === 502).length, 10, 'ten failures, each between successes')
  t.equal(lines.filter((l) => l.includes('"server capped"')).length, 1, 'one capped line for the episode')
  t.equal(proxy.vigil.upstreams.get('api')!.peers[0]!.passive?.capped, 10, 'every capped failure still counted')
})
