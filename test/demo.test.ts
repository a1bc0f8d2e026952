// The demo's config teaches the right lesson: a provider answering 503 costs the client nothing (retried on
// another provider) and is ejected (counted as a failure). Real providers, the real proxy.
import t from 'tap'
import { demoConfig } from '../src/demo/config.js'
import { client, control, get, spawnProvider, startProxy } from './helpers/index.js'

t.test('demo config: after "break provider b" (status=503) every answer is 200, and b is ejected for its 503s', async (t) => {
  const providers = await Promise.all(['a', 'b', 'c'].map((n) => spawnProvider(t, n)))
  const config = demoConfig('0', '0', providers.map((p) => p.address))
  const p = await startProxy(t, config)
  const agent = client(t)
  const b = providers[1]!
  await control(b, 'status=503')
  const answers = []
  for (let i = 0; i < 12; i++) answers.push(await get(`${p.url}/`, { dispatcher: agent }))
  t.same(
    answers.map((a) => a.status),
    new Array(12).fill(200),
    'no 503 reaches the client',
  )
  t.ok(
    answers.some((a) => a.headers['x-vigil-attempts'] === '2'),
    'some answers needed a second attempt',
  )
  t.notOk(
    answers.some((a) => a.body === 'hello from b\n'),
    'b answered nothing the client saw',
  )
  const status = (await (await fetch(`${p.admin}/status?format=json`)).json()) as { servers: { server: { name: string; status: string; check: string; passive: string; ejectionFailure: string | null; failures: number }[] } }
  const row = status.servers.server.find((s) => s.name === b.address)
  // Which detector takes b out first is a race: two 503s eject it, and its first 503 asks for a re-check that
  // fails too (on a loaded machine the check can win before b's second request).
  t.equal(row?.status, 'down', 'the status page shows b out of rotation')
  t.ok((row?.passive === 'ejected' && row.ejectionFailure === 'http_503') || row?.check === 'down', `for its 503s (passive ${row?.passive}, check ${row?.check})`)
  t.ok((row?.failures ?? 0) >= 1, 'its failures counted')
})
