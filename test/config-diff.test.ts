import t from 'tap'
import { changedSettings, describeServerChange, diffListeners, diffServers, sameJson, serverSpec } from '../src/config/diff.js'
import { parseConfig } from '../src/index.js'

const addresses = (items: readonly { address: string }[]): string[] => items.map((i) => i.address)

t.test('servers are matched by address: added, removed, changed with the fields that changed', async (t) => {
  const before = [serverSpec({ address: 'a:1' }), serverSpec({ address: 'b:1', weight: 2 }), serverSpec({ address: 'c:1' })]
  const after = [serverSpec({ address: 'b:1', weight: 5, backup: true }), serverSpec({ address: 'c:1' }), serverSpec({ address: 'd:1', down: true })]
  const d = diffServers(before, after)
  t.same(addresses(d.added), ['d:1'])
  t.same(addresses(d.removed), ['a:1'])
  t.equal(d.changed.length, 1)
  t.equal(describeServerChange(d.changed[0] as never), 'b:1 (weight 2->5, backup false->true)')
  t.same(diffServers(after, after), { added: [], removed: [], changed: [] })
})

t.test('listeners are keyed by address; a new upstream or routes on the same address is a change', async (t) => {
  const d = diffListeners(
    [
      { address: '127.0.0.1:1', upstream: 'a' },
      { address: '127.0.0.1:2', upstream: 'a' },
    ],
    [
      { address: '127.0.0.1:2', routes: [{ upstream: 'a' }] },
      { address: '127.0.0.1:3', upstream: 'a' },
    ],
  )
  t.same(addresses(d.added.map((k) => k.listener)), ['127.0.0.1:3'])
  t.same(addresses(d.removed.map((k) => k.listener)), ['127.0.0.1:1'])
  t.same(
    d.changed.map(([, k]) => k.key),
    ['127.0.0.1:2#0'],
  )
  const twice = diffListeners([{ address: '127.0.0.1:0', upstream: 'a' }], [
    { address: '127.0.0.1:0', upstream: 'a' },
    { address: '127.0.0.1:0', upstream: 'b' },
  ])
  t.same(
    twice.added.map((k) => k.key),
    ['127.0.0.1:0#1'],
    'the same port-0 address twice is two listeners',
  )
})

t.test('settings compare as JSON: parsed files equal plain objects, servers aside', async (t) => {
  const parsed = parseConfig(JSON.stringify({ listeners: [{ address: '127.0.0.1:1', upstream: 'a' }], upstreams: { a: { servers: [{ address: 'x:1' }], timeouts: { connect: '1s' } } } }))
  const plain = { servers: [{ address: 'y:1' }], timeouts: { connect: '1s' } }
  t.same(changedSettings(parsed.upstreams['a'] as never, plain), [], 'null-prototype objects from the parser compare equal')
  t.same(changedSettings(plain, { ...plain, balance: 'round_robin', timeouts: { connect: '2s' } }), ['timeouts', 'balance'])
  t.ok(sameJson({ a: 1, b: undefined }, { a: 1 }), 'an undefined key is a missing key')
  t.notOk(sameJson({ a: [1, 2] }, { a: [2, 1] }), 'order matters in arrays')
})
