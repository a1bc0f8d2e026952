import pino, { type Logger } from 'pino'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** Levels by name (`"level":"warn"`), as in the config and on the admin API, not pino's numbers. */
const byName = { level: (label: string) => ({ level: label }) }

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino({ name: 'vigil', level, base: { pid: process.pid }, formatters: byName }, destination ?? pino.destination(1))
}

/** The access log writes asynchronously so a slow stdout never stalls the hot path. */
export function createAccessLogger(destination?: pino.DestinationStream): Logger {
  return pino({ name: 'vigil.access', base: null, timestamp: pino.stdTimeFunctions.isoTime }, destination ?? pino.destination({ dest: 1, sync: false, minLength: 4096 }))
}
