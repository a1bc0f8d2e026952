import type { Duration } from './schema.js'

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Durations are validated by the schema before they get here, so the string always parses. */
export function ms(d: Duration): number {
  if (typeof d === 'number') return d
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/.exec(d)
  if (m === null) throw new TypeError(`not a duration: ${d}`)
  return Math.round(Number(m[1]) * (UNIT_MS[m[2] as string] as number))
}
