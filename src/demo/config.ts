// The demo's config, apart from the demo so tests can check it without starting one.
import type { Config } from '../index.js'

/** The demo's config: what an operator would run in front of these providers. */
export function demoConfig(port: string, adminPort: string, servers: readonly string[]): Config {
  const failures = ['error', 'timeout', 'http_502', 'http_503', 'http_504']
  return {
    listeners: [{ address: `127.0.0.1:${port}`, upstream: 'demo' }],
    admin: { address: `127.0.0.1:${adminPort}` },
    log: { level: 'info' },
    upstreams: {
      demo: {
        balance: 'round_robin',
        servers: servers.map((address, i) => ({ address, weight: i === 0 ? 2 : 1 })),
        // 2 failures (503s included) within 10 s eject a provider for 10 s; then one trial request.
        passive: { maxFails: 2, failTimeout: '10s', failOn: [...failures, 'invalid_header'] },
        // A 503 is answered again by another provider, never passed to the client while one is left.
        retry: { on: failures, tries: 3 },
        active: { type: 'http', interval: '2s', rise: 2, fall: 3, http: { path: '/healthz' } },
      },
    },
  }
}
