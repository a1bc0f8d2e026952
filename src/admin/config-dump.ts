// GET /config: the running config (the last one applied), with secrets replaced, so it can be pasted into a
// ticket. What is a secret: the admin token, and any value under a key that names one (token, password,
// secret, and check headers such as Authorization or Cookie). File paths of certificates and keys are kept:
// a path is not the key, and it is what an operator needs to see.
import type { Config } from '../config/schema.js'

export const REDACTED = '[redacted]'

const SECRET_KEY = /token|password|passwd|secret|authorization|cookie|api[-_]?key/i

export function redactConfig(config: Config): unknown {
  return redact(config)
}

function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact)
  if (typeof value !== 'object' || value === null) return value
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) out[key] = typeof v === 'string' && SECRET_KEY.test(key) ? REDACTED : redact(v)
  return out
}
