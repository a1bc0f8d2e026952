import pino, { type Logger } from 'pino'

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino({ name: 'vigil', level, base: { pid: process.pid } }, destination ?? pino.destination(1))
}

/** The access log writes asynchronously so a slow stdout never stalls the hot path. */
export function createAccessLogger(destination?: pino.DestinationStream): Logger {
  return pino({ name: 'vigil.access', base: null, timestamp: pino.stdTimeFunctions.isoTime }, destination ?? pino.destination({ dest: 1, sync: false, minLength: 4096 }))
}
