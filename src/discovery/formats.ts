// Provider records as fleets write them into registries: "host:port", a JSON object with nameable fields, or a
// Dubbo provider URL. Pure functions: a record that does not parse is reported, never guessed at.
import { isIP } from 'node:net'
import type { Target } from '../upstream/membership.js'

export type Format = 'hostport' | 'json' | 'dubbo'

export interface Fields {
  host?: string | undefined
  port?: string | undefined
  weight?: string | undefined
}

export interface Parsed {
  /** Sorted by address, one per address (the first record wins). */
  targets: Target[]
  /** Records that did not parse: "name: why". */
  invalid: string[]
}

const HOST = /^[A-Za-z0-9.-]+$/

/**
 * What a subscription reads and how: the records of one path or prefix parsed into entries. Discovery parses
 * provider records into Targets (providerRecords); the fleet (src/fleet/) reads its own records raw (rawRecords).
 */
export interface Records<E> {
  /** Each record's data is read too (ZooKeeper getData with its watch; an etcd value is always there). */
  withData: boolean
  parse(records: Iterable<[name: string, value: string | undefined]>): { targets: E[]; invalid: string[] }
  /** The record an entry came from (drift logs name them; owned records are looked up by it). */
  name(entry: E): string
  /** The record's data, when the entries keep it: an owned record whose data differs is written again. */
  value?(entry: E): string | undefined
}

export function providerRecords(format: Format, fields: Fields | undefined): Records<Target> {
  return { withData: format === 'json', parse: (records) => parseRecords(format, fields, records), name: (t) => t.address }
}

/** A record as the registry holds it: a ZooKeeper child name or the key after the etcd prefix, and its data. */
export interface RawRecord {
  name: string
  value: string
}

/** Records read as they are, sorted by name (a record without data reads as ""). */
export const rawRecords: Records<RawRecord> = {
  withData: true,
  parse: (records) => ({
    targets: [...records].map(([name, value]) => ({ name, value: value ?? '' })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    invalid: [],
  }),
  name: (r) => r.name,
  value: (r) => r.value,
}

/** One record: `name` is the ZooKeeper child name or the etcd key, `value` its data. */
export function parseRecord(format: Format, fields: Fields | undefined, name: string, value: string | undefined): Target {
  switch (format) {
    case 'hostport':
      return hostPort(value ?? name)
    case 'json':
      return fromJson(fields, value ?? '')
    case 'dubbo':
      return fromDubbo(name)
  }
}

/** Every record of a list; the ones that fail are named in `invalid` and left out. */
export function parseRecords(format: Format, fields: Fields | undefined, records: Iterable<[name: string, value: string | undefined]>): Parsed {
  const byAddress = new Map<string, Target>()
  const invalid: string[] = []
  for (const [name, value] of records) {
    try {
      const t = parseRecord(format, fields, name, value)
      if (!byAddress.has(t.address)) byAddress.set(t.address, t)
    } catch (err) {
      invalid.push(`${name}: ${(err as Error).message}`)
    }
  }
  return { targets: [...byAddress.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0)), invalid }
}

function hostPort(text: string): Target {
  const colon = text.lastIndexOf(':')
  if (colon <= 0) throw new Error(`${JSON.stringify(text)} is not host:port`)
  return target(text.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), text.slice(colon + 1), undefined)
}

function fromJson(fields: Fields | undefined, text: string): Target {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    throw new Error(`data ${JSON.stringify(text.slice(0, 80))} is not JSON`)
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error('data is not a JSON object')
  const o = doc as Record<string, unknown>
  const hostField = fields?.host ?? 'host'
  const host = o[hostField]
  if (typeof host !== 'string') throw new Error(`field "${hostField}" is not a string`)
  return target(host, o[fields?.port ?? 'port'], o[fields?.weight ?? 'weight'])
}

/** "dubbo://10.0.0.5:20880/com.example.Api?weight=100&...", URL-encoded as Dubbo writes its child names. */
function fromDubbo(name: string): Target {
  let url: URL
  try {
    url = new URL(decodeURIComponent(name))
  } catch {
    throw new Error('not a URL-encoded provider URL')
  }
  if (url.port === '') throw new Error('the provider URL has no port')
  return target(url.hostname.replace(/^\[(.*)\]$/, '$1'), url.port, url.searchParams.get('weight') ?? undefined)
}

function target(host: string, port: unknown, weight: unknown): Target {
  if (host === '' || (isIP(host) === 0 && !HOST.test(host))) throw new Error(`host ${JSON.stringify(host)} is not a host name or IP address`)
  const p = typeof port === 'string' && /^[0-9]{1,5}$/.test(port) ? Number(port) : port
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`port ${JSON.stringify(port)} is not from 1 to 65535`)
  const address = isIP(host) === 6 ? `[${host}]:${p}` : `${host}:${p}`
  if (weight === undefined || weight === null) return { address }
  const w = typeof weight === 'string' ? Number(weight) : weight
  if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) throw new Error(`weight ${JSON.stringify(weight)} is not a number`)
  // vigil's weights run from 1 to 1000 (Dubbo's default is 100); a weight of 0 still gets the least share.
  return { address, weight: Math.min(1000, Math.max(1, Math.round(w))) }
}
