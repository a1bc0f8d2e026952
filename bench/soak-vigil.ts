// The proxy side of the soak run: vigil in its own process, answering the parent's requests for memory and descriptor figures.
import { readdirSync, readlinkSync } from 'node:fs'
import pino from 'pino'
import { Vigil, type Config } from '../src/index.js'

export interface SoakStats {
  rss: number
  heapUsed: number
  heapTotal: number
  external: number
  fds: number
  sockets: number
  /** Log lines at level error or fatal since start: errors vigil itself did not expect. */
  errors: number
  lastError: string | undefined
}

let errors = 0
let lastError: string | undefined
// Warnings (a failed attempt on a killed provider) are the deliberate faults; error and fatal are not.
const logger = pino(
  { level: 'warn' },
  {
    write(line: string) {
      const entry = JSON.parse(line) as { level: number; msg?: string }
      if (entry.level >= 50) {
        errors++
        lastError = line.slice(0, 500)
      }
    },
  },
)

function descriptors(): { fds: number; sockets: number } {
  let fds = 0
  let sockets = 0
  for (const fd of readdirSync('/proc/self/fd')) {
    fds++
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')) sockets++
    } catch {
      // closed while listing
    }
  }
  return { fds, sockets }
}

function stats(): SoakStats {
  // A full collection first, so heap figures compare live data rather than garbage not yet collected.
  ;(globalThis as { gc?: () => void }).gc?.()
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, ...descriptors(), errors, lastError }
}

const config = JSON.parse(process.argv[2] as string) as Config
const vigil = await new Vigil(config, { logger, admin: false }).start()
process.on('message', (msg: string) => {
  if (msg === 'stats') process.send?.({ stats: stats() })
  else if (msg === 'stop') void vigil.stop(2_000).then(() => process.exit(0))
})
process.send?.({ port: vigil.listenerAddresses[0]?.port })
