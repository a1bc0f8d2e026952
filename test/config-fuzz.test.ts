// Config validation under arbitrary input: it either accepts, or throws a ConfigError whose every issue is located.
import t from 'tap'
import fc from 'fast-check'
import { ConfigError, parseConfig } from '../src/index.js'

const valid = {
  listeners: [{ address: '127.0.0.1:8080', upstream: 'api', trustedProxies: ['10.0.0.0/8'], limits: { headersTimeout: '5s', maxHeaders: 50 } }],
  admin: { address: '127.0.0.1:9901', token: 't' },
  upstreams: {
    api: {
      servers: [{ address: '127.0.0.1:9001', weight: 2 }, { address: '127.0.0.1:9002', backup: true }],
      passive: { maxFails: 1, failTimeout: '10s' },
      retry: { tries: 2 },
      timeouts: { connect: 100 },
      maxResponseSize: 1000,
    },
  },
}

function assertOnlyConfigErrors(text: string): void {
  try {
    parseConfig(text)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`threw ${String(err)} for ${JSON.stringify(text).slice(0, 200)}`)
    if (err.issues.length === 0) throw new Error('a ConfigError without issues')
    for (const i of err.issues) {
      if (typeof i.path !== 'string' || typeof i.found !== 'string' || typeof i.expected !== 'string' || i.expected === '') {
        throw new Error(`an issue without a path, found or expected: ${JSON.stringify(i)}`)
      }
    }
  }
}

/** Replace the value at a random place in the valid config with an arbitrary JSON value (or delete it). */
const mutated = fc
  .tuple(fc.array(fc.nat(), { minLength: 1, maxLength: 6 }), fc.option(fc.jsonValue({ maxDepth: 3 })), fc.constantFrom('__proto__', 'constructor', 'x', 'servers', 'tls', '0'))
  .map(([path, value, extraKey]) => {
    const doc = structuredClone(valid) as unknown
    let node = doc as Record<string, unknown>
    for (const step of path) {
      const keys = Object.keys(node)
      if (keys.length === 0) break
      const key = keys[step % keys.length] as string
      const next = node[key]
      if (typeof next !== 'object' || next === null || step % 5 === 4) {
        if (value === null) delete node[key]
        else node[key] = value
        node[extraKey] = value
        break
      }
      node = next as Record<string, unknown>
    }
    return JSON.stringify(doc)
  })

t.test('the valid base config is accepted', async (t) => {
  t.ok(parseConfig(JSON.stringify(valid)))
})

t.test('arbitrary text never throws anything but a located ConfigError', async (t) => {
  fc.assert(fc.property(fc.string({ maxLength: 200 }), assertOnlyConfigErrors), { numRuns: 400, seed: 8 })
  t.pass()
})

t.test('arbitrary JSON values never throw anything but a located ConfigError', async (t) => {
  fc.assert(fc.property(fc.json({ maxDepth: 6 }), assertOnlyConfigErrors), { numRuns: 400, seed: 8 })
  t.pass()
})

t.test('a valid config with one value replaced never throws anything but a located ConfigError', async (t) => {
  fc.assert(fc.property(mutated, assertOnlyConfigErrors), { numRuns: 1_000, seed: 8 })
  t.pass()
})

t.test('can fail: the property catches an error that is not a ConfigError', async (t) => {
  t.throws(() => assertOnlyConfigErrors(null as unknown as string))
})
