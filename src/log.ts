import pino, { type Logger } from 'pino'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** Levels by name (`"level":"warn"`), as in the config and on the admin API, not pino's numbers. */
const byName = { level: (label: string) => ({ level: label }) }

/** Every log (this one and the access log) stamps its lines with `time`: ISO 8601 in UTC, to the millisecond. */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino({ name: 'vigil', level, base: { pid: process.pid }, formatters: byName, timestamp: pino.stdTimeFunctions.isoTime }, destination ?? pino.destination(1))
}
