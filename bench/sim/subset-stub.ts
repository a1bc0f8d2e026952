// Stand-in for src/upstream/subset.ts (branch fleet-subset) until it reaches main: the same signature and the
// same ring order, so the figures do not move when the import switches. Deleted by the merge that brings it.
import { hashString } from '../../src/balance/hash.js'

export function subset(servers: readonly string[], consumer: { index: number; count: number }, size: number): string[] {
  const ring = [...servers].sort((a, b) => hashString(a) - hashString(b) || (a < b ? -1 : a > b ? 1 : 0))
  if (size >= ring.length) return ring
  const start = Math.floor(((consumer.index + 0.5) * ring.length) / consumer.count)
  return Array.from({ length: size }, (_, i) => ring[(start + i) % ring.length] as string)
}
