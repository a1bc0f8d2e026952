#!/usr/bin/env node
// Command line: argument parsing, signals, exit codes (0 ok, 1 runtime failure, 2 bad usage or bad config).
import cluster from 'node:cluster'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { loadConfigFile } from './config/load.js'
import { ConfigError } from './config/errors.js'
import { Vigil } from './index.js'
import { causeText, StartError } from './start-error.js'
import { Cluster, workerCount } from './workers/primary.js'
import { runWorker } from './workers/worker.js'

const USAGE = `usage: vigil <command> [options]

commands:
  start --config FILE   run the proxy (-c FILE for short); reloads FILE on change, SIGHUP or POST /reload
  check --config FILE   validate FILE and print every error with its JSON path

options:
  -c, --config FILE     the JSON config file
  --pid-file FILE       start: write the process id to FILE once serving, remove it on exit
  -h, --help            show this help
  -v, --version         print the version

signals (start): SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the config, SIGUSR1 reopens the access log
`

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

function version(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version
  }
  return 'unknown'
}

interface Io {
  out: (s: string) => void
  err: (s: string) => void
}

/** Runs a command and resolves to its exit code; `start` resolves only when the proxy has stopped. */
export async function main(argv: readonly string[], io: Io = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }): Promise<number> {
  // A cluster worker was forked with the primary's arguments; its config comes from the primary.
  if (cluster.isWorker) return runWorker()
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        'pid-file': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    })
  } catch (err) {
    io.err(`vigil: ${(err as Error).message}\n\n${USAGE}`)
    return EXIT_USAGE
  }
  const { values, positionals } = parsed
  if (values.version === true) {
    io.out(`vigil ${version()}\n`)
    return EXIT_OK
  }
  const command = positionals[0]
  if (values.help === true || command === 'help') {
    io.out(USAGE)
    return EXIT_OK
  }
  if ((command !== 'start' && command !== 'check') || positionals.length > 1) {
    io.err(command === undefined ? USAGE : `vigil: unknown command "${positionals.join(' ')}"\n\n${USAGE}`)
    return EXIT_USAGE
  }
  if (values.config === undefined) {
    io.err(`vigil ${command}: --config FILE is required\n`)
    return EXIT_USAGE
  }
  let config
  try {
    config = loadConfigFile(values.config)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    io.err(`${err.message}\n`)
    return EXIT_USAGE
  }
  if (command === 'check') {
    const servers = Object.values(config.upstreams).reduce((n, u) => n + u.servers.length, 0)
    io.out(
      `${values.config}: ok (${config.listeners.length} listener${config.listeners.length === 1 ? '' : 's'}, ` +
        `${Object.keys(config.upstreams).length} upstream${Object.keys(config.upstreams).length === 1 ? '' : 's'}, ${servers} server${servers === 1 ? '' : 's'})\n`,
    )
    return EXIT_OK
  }
  const pidFile = values['pid-file']
  const workers = workerCount(config.workers)
  const vigil = new Vigil(config, { configFile: values.config, cluster: workers === undefined ? undefined : 'primary' })
  // One process, or a cluster's primary with its workers (src/workers/): they stop, reload and reopen alike.
  const proxy = workers === undefined ? { stop: (grace?: number) => vigil.stop(grace), reopen: () => vigil.access.reopen() } : new Cluster(vigil, workers)
  try {
    if (proxy instanceof Cluster) await proxy.start()
    else await vigil.start()
    if (pidFile !== undefined) writePidFile(pidFile)
  } catch (err) {
    await proxy.stop(0)
    // One line that says what to fix, no stack: `vigil: listeners[0].address 127.0.0.1:8080: address already in use`.
    io.err(`vigil: ${err instanceof StartError ? err.message : `could not start: ${causeText(err)}`}\n`)
    return EXIT_FAILURE
  }
  const code = await new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      vigil.log.info({ signal }, 'signal received')
      proxy.stop().then(
        () => resolve(EXIT_OK),
        (err: unknown) => {
          vigil.log.error({ err }, 'error while stopping')
          resolve(EXIT_FAILURE)
        },
      )
    }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
    // The outcome (applied or rejected) is logged and kept in vigil.reloadStatus.
    process.on('SIGHUP', () => {
      vigil.reload('signal').catch((err: unknown) => vigil.log.error({ err }, 'reload failed'))
    })
    // Log rotation, as nginx does it: move the file, then SIGUSR1 makes vigil write to a new one at the old path.
    process.on('SIGUSR1', () => proxy.reopen())
  })
  if (pidFile !== undefined) removePidFile(pidFile)
  return code
}

function writePidFile(file: string): void {
  try {
    writeFileSync(file, `${process.pid}\n`)
  } catch (err) {
    throw new StartError('--pid-file', file, err)
  }
}

/** Only our own: a second vigil started with the same file owns it now. */
function removePidFile(file: string): void {
  try {
    if (readFileSync(file, 'utf8').trim() === String(process.pid)) rmSync(file)
  } catch {
    // gone already
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === (await import('node:fs')).realpathSync(process.argv[1])) {
  process.exitCode = await main(process.argv.slice(2))
  // A worker's channel to the primary would keep it alive. Not process.disconnect(): cluster's handler for it
  // exits with 0 at once, so a worker whose start failed would report success to its primary.
  if (cluster.isWorker) process.exit()
}
