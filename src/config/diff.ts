// What a reload changes: which servers, groups and listeners come, go or change. Pure functions, no I/O.
import { isDeepStrictEqual } from 'node:util'
import type { AddressServer, Listener, Upstream } from './schema.js'

/** A server as the live membership holds it: every setting filled in, so two specs compare field by field. */
export interface ServerSpec {
  address: string
  weight: number
  backup: boolean
  down: boolean
  /** 0 for no limit, as in the file. */
  maxConns: number
}

export function serverSpec(s: Pick<AddressServer, 'address' | 'weight' | 'backup' | 'down' | 'maxConns'>): ServerSpec {
  return { address: s.address, weight: s.weight ?? 1, backup: s.backup ?? false, down: s.down ?? false, maxConns: s.maxConns ?? 0 }
}

export interface Keyed<T> {
  added: T[]
  removed: T[]
  /** [before, after] pairs with the same key and different contents. */
  changed: [T, T][]
}

/**
 * Deep equality of config values as JSON sees them: parsed files have null-prototype objects (jsonc-parser),
 * configs given to the library API do not, and a key set to undefined is the same as a missing key.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(asJson(a), asJson(b))
}

const asJson = (v: unknown): unknown => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)))

/** Items matched by key; `equal` decides whether a kept item changed. Order follows `after`, then `before`. */
export function diffBy<T>(before: readonly T[], after: readonly T[], key: (t: T) => string, equal: (a: T, b: T) => boolean = sameJson): Keyed<T> {
  const old = new Map(before.map((t) => [key(t), t]))
  const out: Keyed<T> = { added: [], removed: [], changed: [] }
  const kept = new Set<string>()
  for (const t of after) {
    const k = key(t)
    const was = old.get(k)
    if (was === undefined) out.added.push(t)
    else {
      kept.add(k)
      if (!equal(was, t)) out.changed.push([was, t])
    }
  }
  for (const [k, t] of old) if (!kept.has(k)) out.removed.push(t)
  return out
}

export const diffServers = (before: readonly ServerSpec[], after: readonly ServerSpec[]): Keyed<ServerSpec> => diffBy(before, after, (s) => s.address)

export interface KeyedListener {
  /** The address, and which occurrence of it: "127.0.0.1:0" may be listed twice (two free ports). */
  key: string
  listener: Listener
}

export function listenerKeys(listeners: readonly Listener[]): KeyedListener[] {
  const seen = new Map<string, number>()
  return listeners.map((listener) => {
    const n = seen.get(listener.address) ?? 0
    seen.set(listener.address, n + 1)
    return { key: `${listener.address}#${n}`, listener }
  })
}

/** Listeners are keyed by address: a kept address keeps its socket and only its routes may change. */
export const diffListeners = (before: readonly Listener[], after: readonly Listener[]): Keyed<KeyedListener> =>
  diffBy(listenerKeys(before), listenerKeys(after), (l) => l.key, (a, b) => sameJson(a.listener, b.listener))

/** The names of the fields of `after` that differ from `before`, e.g. ["weight"] or ["balance", "timeouts"]. */
export function changedFields<T extends object>(before: T, after: T, ignore: readonly string[] = []): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)])
  const b = before as Record<string, unknown>
  const a = after as Record<string, unknown>
  return [...keys].filter((k) => !ignore.includes(k) && !sameJson(b[k], a[k]))
}

/** The settings of a group that changed, its server list aside (servers are diffed one by one). */
export const changedSettings = (before: Upstream, after: Upstream): string[] => changedFields(before, after, ['servers'])

/** One line's worth of a server diff: "127.0.0.1:9001" added, "127.0.0.1:9002 (weight 1->5)" changed. */
export function describeServerChange([before, after]: [ServerSpec, ServerSpec]): string {
  const fields = changedFields(before, after) as (keyof ServerSpec)[]
  return `${after.address} (${fields.map((f) => `${f} ${String(before[f])}->${String(after[f])}`).join(', ')})`
}
