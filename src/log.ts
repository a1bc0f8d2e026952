import pino, { type Logger } from 'pino'

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

/** Every log (this one and the access log) stamps its lines with `time`: ISO 8601 in UTC, to the millisecond. */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino({ name: 'vigil', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination ?? pino.destination(1))
}
