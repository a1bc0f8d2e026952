// Config files in a temp dir, the proxy started from one, and polling for an expected state (never sleeping for it).
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import pino, { type Logger } from 'pino'
import { Vigil, type Config } from '../../src/index.js'
import { silent, type ProxyHandle } from './index.js'

type Tap = { teardown(fn: () => unknown): void }

export function tempDir(t: Tap): string {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

let sequence = 0

/** Write the way deploy tools do: a temp file renamed over the old one, so a reader never sees half a file. */
export function writeConfig(file: string, config: Config | string): void {
  const tmp = `${file}.tmp-${process.pid}-${sequence++}`
  writeFileSync(tmp, typeof config === 'string' ? config : JSON.stringify(config, null, 2))
  renameSync(tmp, file)
}

/** One listener and the admin listener on port 0, file watching off unless `reload` says otherwise. */
export function proxyConfig(servers: string[], extra: Partial<Config> = {}): Config {
  return {
    listeners: [{ address: '127.0.0.1:0', upstream: 'api' }],
    admin: { address: '127.0.0.1:0' },
    reload: { watch: false },
    upstreams: { api: { servers: servers.map((address) => ({ address })) } },
    ...extra,
  }
}

export interface FileProxy extends ProxyHandle {
  file: string
}

/** The real proxy in-process, started from a real file the way the CLI does it. */
export async function startProxyFromFile(t: Tap, file: string, config: Config, logger: Logger = silent): Promise<FileProxy> {
  writeConfig(file, config)
  return startFromWrittenFile(t, file, config, logger)
}

/** Like startProxyFromFile, for a file the test laid out itself (e.g. behind symlinks). */
export async function startFromWrittenFile(t: Tap, file: string, config: Config, logger: Logger = silent): Promise<FileProxy> {
  const vigil = await new Vigil(config, { logger, configFile: file }).start()
  t.teardown(() => vigil.stop(1_000))
  const port = (vigil.listenerAddresses[0] as AddressInfo).port
  return { vigil, file, url: `http://127.0.0.1:${port}`, port, admin: `http://127.0.0.1:${(vigil.adminAddress as AddressInfo).port}` }
}

export { until } from './wait.js'

/** The addresses of a group's live peers, in order. */
export function liveSet(vigil: Vigil, upstream = 'api'): string[] {
  return vigil.upstreams.get(upstream)?.peers.map((p) => p.address) ?? []
}

/** A logger whose JSON lines the test can read. */
export function capture(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>)
      cb()
    },
  })
  return { logger: pino({ level: 'info' }, stream), lines }
}
