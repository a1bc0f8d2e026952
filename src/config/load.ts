// Reading a config file: JSON syntax, schema, then cross-references, reporting every issue with its location.
import { accessSync, constants, closeSync, fstatSync, openSync, readSync } from 'node:fs'
import type { TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors'
import { findNodeAtLocation, getNodeValue, parseTree, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser'
import { Config, Duration, type Passive } from './schema.js'
import { ConfigError, type ConfigIssue } from './errors.js'
import { parseCidr } from '../proxy/trust.js'
import { readCertificate } from '../proxy/certificate.js'
import { ejectTimeOf } from '../health/passive.js'
import { ACTIVE_DEFAULTS } from '../health/check-spec.js'
import { ms } from './duration.js'
import { DEFAULTS as REGISTRY_DEFAULTS } from '../discovery/defaults.js'
import { canonicalListenAddress } from '../net.js'

/** Far above any real config (ten thousand servers take about 1 MiB); a bigger file is a mistake, not a config. */
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024
/** A vigil config is about 7 levels deep; the parser and the validator recurse, so bound the depth before them. */
export const MAX_CONFIG_DEPTH = 32

export function loadConfigFile(file: string): Config {
  return parseConfig(readConfigText(file), file)
}

/** The file's text, or a ConfigError naming why it cannot be read. */
export function readConfigText(file: string): string {
  let bytes: Buffer
  try {
    bytes = readBounded(file)
  } catch (err) {
    if (err instanceof ConfigError) throw err
    const e = err as NodeJS.ErrnoException
    throw new ConfigError(file, [{ path: '', found: `an unreadable file (${e.code ?? e.message})`, expected: 'a readable JSON file' }])
  }
  return decodeUtf8(bytes, file)
}

function readBounded(file: string): Buffer {
  const fd = openSync(file, 'r')
  try {
    const size = fstatSync(fd).size
    if (size > MAX_CONFIG_BYTES) {
      throw new ConfigError(file, [{ path: '', found: `a file of ${size} bytes`, expected: `a config file of at most ${MAX_CONFIG_BYTES} bytes` }])
    }
    // Read at most one byte past the limit, in case the file grows while it is read.
    const buf = Buffer.alloc(size + 1)
    let n = 0
    for (let r = 1; r > 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null)
    if (n > MAX_CONFIG_BYTES) throw new ConfigError(file, [{ path: '', found: 'a file that keeps growing', expected: `a config file of at most ${MAX_CONFIG_BYTES} bytes` }])
    return buf.subarray(0, n)
  } finally {
    closeSync(fd)
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false })

/** The file's text, or a located error for bytes that are not UTF-8 (a UTF-16 editor save, a binary file). */
function decodeUtf8(bytes: Buffer, file: string): string {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    throw new ConfigError(file, [{ path: '', found: 'UTF-16 text', expected: 'a UTF-8 JSON file', line: 1, column: 1 }])
  }
  try {
    return utf8.decode(bytes)
  } catch {
    const lossy = new TextDecoder('utf-8', { ignoreBOM: false }).decode(bytes)
    const at = Math.max(0, lossy.indexOf('\uFFFD'))
    throw new ConfigError(file, [{ path: '', found: 'bytes that are not UTF-8', expected: 'a UTF-8 JSON file', ...lineColumn(lossy, at) }])
  }
}

/** The first place where arrays and objects nest deeper than MAX_CONFIG_DEPTH, skipping strings and comments; -1 if none. */
function tooDeep(text: string): number {
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 34 /* " */) {
      for (i++; i < text.length && text.charCodeAt(i) !== 34; i++) if (text.charCodeAt(i) === 92 /* \ */) i++
    } else if (c === 47 /* / */ && text.charCodeAt(i + 1) === 47) {
      i = text.indexOf('\n', i)
      if (i === -1) return -1
    } else if (c === 47 && text.charCodeAt(i + 1) === 42 /* * */) {
      i = text.indexOf('*/', i + 2)
      if (i === -1) return -1
      i++
    } else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > MAX_CONFIG_DEPTH) return i
    } else if (c === 93 /* ] */ || c === 125 /* } */) depth--
  }
  return -1
}

/**
 * Parses and validates config text: JSON with comments (`//`, `/* *\/`) and trailing commas, as in tsconfig.json
 * or VS Code settings. `file` is only used to name the source in errors.
 */
export function parseConfig(text: string, file = '<config>'): Config {
  const deep = tooDeep(text)
  if (deep !== -1) {
    throw new ConfigError(file, [{ path: '', found: `values nested more than ${MAX_CONFIG_DEPTH} levels deep`, expected: 'a vigil config (about 7 levels deep)', ...lineColumn(text, deep) }])
  }
  const syntax: ParseError[] = []
  const tree = parseTree(text, syntax, { allowTrailingComma: true, disallowComments: false, allowEmptyContent: false })
  if (syntax.length > 0 || tree === undefined) {
    // Only the first syntax error: the ones after it are usually its echo.
    throw new ConfigError(file, syntax[0] === undefined ? [{ path: '', found: 'no JSON value', expected: 'a JSON object' }] : [syntaxIssue(text, syntax[0])])
  }
  const doc: unknown = getNodeValue(tree)
  const issues = configIssues(doc)
  if (issues.length > 0) throw new ConfigError(file, issues.map((i) => locate(text, tree, i)))
  return doc as Config
}

/**
 * Checks a config given as an object (the library's `startVigil(config)`) exactly as a file is checked: the same
 * schema, cross-references and values, the same issues with their JSON paths. Throws a ConfigError naming `source`.
 */
export function validateConfig(config: unknown, source = '<config object>'): Config {
  const issues = configIssues(config)
  if (issues.length > 0) throw new ConfigError(source, issues.map(({ pointer: _, ...issue }) => issue))
  return config as Config
}

/** Every issue of a parsed document. Cross-reference checks run even when the schema failed, so one `vigil check` lists everything. */
function configIssues(doc: unknown): Located[] {
  return [...schemaIssues(doc), ...referenceIssues(doc), ...valueIssues(doc)]
}

function syntaxIssue(text: string, e: ParseError): ConfigIssue {
  const { line, column } = lineColumn(text, e.offset)
  const found = e.offset >= text.length ? 'end of file' : JSON.stringify(text.slice(e.offset, e.offset + Math.max(1, Math.min(e.length, 20))))
  return { path: '', found, expected: describeParseError(printParseErrorCode(e.error)), line, column }
}

function describeParseError(code: string): string {
  // jsonc-parser names errors like "CommaExpected"; turn them into words.
  return code.replace(/Expected$/, '').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase().replace(/^invalid (.*)/, 'valid JSON ($1)').replace(/^(?!valid)/, 'a JSON ')
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1
  let start = 0
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++
    start = i + 1
  }
  return { line, column: offset - start + 1 }
}

function locate(text: string, tree: Node, issue: ConfigIssue & { pointer?: (string | number)[] }): ConfigIssue {
  const { pointer, ...rest } = issue
  if (pointer === undefined) return rest
  // Point at the deepest node that exists: a missing property is reported at its parent object.
  for (let n = pointer.length; n >= 0; n--) {
    const node = findNodeAtLocation(tree, pointer.slice(0, n))
    if (node !== undefined) {
      const target = node.parent?.type === 'property' && n === pointer.length ? node.parent : node
      return { ...rest, ...lineColumn(text, target.offset) }
    }
  }
  return rest
}

type Located = ConfigIssue & { pointer: (string | number)[] }

/** Every schema violation of `doc` (a whole config by default, or any part such as one server), with its JSON path. */
export function schemaIssues(doc: unknown, schema: TSchema = Config): Located[] {
  const out: Located[] = []
  const seen = new Set<string>()
  for (const e of Value.Errors(schema, doc)) {
    const issue = fromValueError(e)
    const key = `${issue.path}\u0000${issue.expected}`
    if (!seen.has(key)) {
      seen.add(key)
      out.push(issue)
    }
  }
  return out
}

function pointerOf(path: string): (string | number)[] {
  if (path === '') return []
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^[0-9]+$/.test(s) ? Number(s) : s))
}

export function jsonPath(pointer: readonly (string | number)[]): string {
  let out = ''
  for (const p of pointer) {
    if (typeof p === 'number') out += `[${p}]`
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(p)) out += out === '' ? p : `.${p}`
    else out += `[${JSON.stringify(p)}]`
  }
  return out
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing'
  if (v === null) return 'null'
  if (Array.isArray(v)) return `an array of ${v.length}`
  if (typeof v === 'object') return 'an object'
  const s = JSON.stringify(v)
  return `${typeof v} ${s.length > 60 ? `${s.slice(0, 57)}...` : s}`
}

function describe(schema: Record<string, unknown>): string {
  if (typeof schema['description'] === 'string' && schema['anyOf'] !== undefined) return schema['description']
  if ('const' in schema) return JSON.stringify(schema['const'])
  if (Array.isArray(schema['anyOf'])) return (schema['anyOf'] as Record<string, unknown>[]).map(describe).join(' or ')
  const parts: string[] = []
  const type = schema['type']
  if (type === 'integer') parts.push('an integer')
  else if (type === 'number') parts.push('a number')
  // A string with a pattern has a form, and its description shows it ("host:port, e.g. 127.0.0.1:8080").
  else if (type === 'string' && typeof schema['description'] === 'string' && typeof schema['pattern'] === 'string') return schema['description']
  else if (type === 'string') parts.push(typeof schema['description'] === 'string' ? `a string (${schema['description']})` : 'a string')
  else if (type === 'boolean') parts.push('true or false')
  else if (type === 'array') parts.push('an array')
  else if (type === 'object') parts.push('an object')
  if (typeof schema['minimum'] === 'number' && typeof schema['maximum'] === 'number') parts.push(`from ${schema['minimum']} to ${schema['maximum']}`)
  else if (typeof schema['minimum'] === 'number') parts.push(`>= ${schema['minimum']}`)
  else if (typeof schema['maximum'] === 'number') parts.push(`<= ${schema['maximum']}`)
  if (typeof schema['pattern'] === 'string' && typeof schema['description'] !== 'string') parts.push(`matching /${schema['pattern']}/`)
  return parts.join(' ') || 'a valid value'
}

function fromValueError(e: ValueError): Located {
  const pointer = pointerOf(e.path)
  const path = jsonPath(pointer)
  const schema = e.schema as unknown as Record<string, unknown>
  const base = { path, pointer, found: show(e.value) }
  switch (e.type) {
    case ValueErrorType.ObjectAdditionalProperties: {
      const parent = e.schema as unknown as { properties?: Record<string, unknown>; patternProperties?: Record<string, unknown> }
      const known = parent.properties ? Object.keys(parent.properties) : []
      const name = String(pointer[pointer.length - 1])
      if (known.length === 0) {
        const pattern = Object.keys(parent.patternProperties ?? {})[0] ?? ''
        return { ...base, found: `the name ${JSON.stringify(name)}`, expected: `a name matching /${pattern}/` }
      }
      return { ...base, found: `unknown key ${JSON.stringify(name)}`, expected: `one of ${known.join(', ')}` }
    }
    case ValueErrorType.ObjectRequiredProperty:
      return { ...base, found: 'nothing', expected: `${describe(schema)} (required)` }
    case ValueErrorType.ArrayMinItems:
      return { ...base, found: show(e.value), expected: `at least ${String(schema['minItems'])} item(s)` }
    case ValueErrorType.ObjectMinProperties:
      return { ...base, found: 'an empty object', expected: `at least ${String(schema['minProperties'])} entry` }
    case ValueErrorType.ArrayUniqueItems:
      return { ...base, expected: 'no repeated items' }
    default:
      return { ...base, expected: describe(schema) }
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : [])
const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)

/** Checks across the document (names that must exist, addresses that must be unique); tolerant of a malformed shape. */
function referenceIssues(doc: unknown): Located[] {
  const out: Located[] = []
  if (!isObject(doc)) return out
  const config = {
    listeners: list(doc['listeners']).map((l) => (isObject(l) ? l : {})),
    admin: isObject(doc['admin']) ? doc['admin'] : undefined,
    upstreams: isObject(doc['upstreams']) ? doc['upstreams'] : {},
  }
  const seenListeners = new Map<string, number>()
  const upstreamNames = new Set(Object.keys(config.upstreams))
  const ref = (name: string, pointer: (string | number)[]): void => {
    if (!upstreamNames.has(name)) {
      out.push({ path: jsonPath(pointer), pointer, found: JSON.stringify(name), expected: `the name of an upstream (${[...upstreamNames].join(', ')})` })
    }
  }
  const port = (address: string | undefined, pointer: (string | number)[]): void => {
    const p = address === undefined ? NaN : Number(address.slice(address.lastIndexOf(':') + 1))
    if (p > 65535) out.push({ path: jsonPath(pointer), pointer, found: JSON.stringify(address), expected: 'a port from 0 to 65535' })
  }
  config.listeners.forEach((l, i) => {
    const at = ['listeners', i]
    const written = text(l['address'])
    port(written, [...at, 'address'])
    // "8080" and "127.0.0.1:8080" are one address. Port 0 asks the kernel for a free port, so two such never clash.
    const address = written === undefined ? undefined : canonicalListenAddress(written)
    const first = address === undefined || address.endsWith(':0') ? undefined : seenListeners.get(address)
    if (first !== undefined) {
      out.push({ path: jsonPath([...at, 'address']), pointer: [...at, 'address'], found: `${JSON.stringify(written)} again`, expected: `an address not already used by listeners[${first}]` })
    } else if (address !== undefined) seenListeners.set(address, i)
    if ((l['upstream'] === undefined) === (l['routes'] === undefined)) {
      out.push({ path: jsonPath(at), pointer: at, found: l['upstream'] === undefined ? 'neither "upstream" nor "routes"' : 'both "upstream" and "routes"', expected: 'exactly one of "upstream" or "routes"' })
    }
    const direct = text(l['upstream'])
    if (direct !== undefined) ref(direct, [...at, 'upstream'])
    list(l['routes']).forEach((r, j) => {
      const name = isObject(r) ? text(r['upstream']) : undefined
      if (name !== undefined) ref(name, [...at, 'routes', j, 'upstream'])
    })
  })
  const adminAddress = text(config.admin?.['address'])
  if (adminAddress !== undefined) {
    port(adminAddress, ['admin', 'address'])
    const canonical = canonicalListenAddress(adminAddress)
    const clash = canonical.endsWith(':0') ? undefined : seenListeners.get(canonical)
    if (clash !== undefined) out.push({ path: 'admin.address', pointer: ['admin', 'address'], found: JSON.stringify(adminAddress), expected: `an address not already used by listeners[${clash}]` })
  }
  out.push(...fleetIssues(doc['fleet']))
  for (const [name, u] of Object.entries(config.upstreams)) {
    if (isObject(u)) out.push(...policyOptionIssues(name, u), ...ejectTimeIssues(name, u['passive']), ...subsetIssues(name, u['subset'], isObject(doc['fleet'])))
    const seen = new Map<string, number>()
    list(isObject(u) ? u['servers'] : undefined).forEach((s, i) => {
      if (isObject(s)) out.push(...sourceIssues(s, ['upstreams', name, 'servers', i]))
      const address = isObject(s) ? text(s['address']) : undefined
      if (address === undefined) return
      const at = ['upstreams', name, 'servers', i, 'address']
      port(address, at)
      if (address.startsWith('_') && isObject(s) && s['resolve'] !== true) {
        out.push({ path: jsonPath(at), pointer: at, found: `the SRV name ${JSON.stringify(address)} without "resolve": true`, expected: 'host:port, or "resolve": true beside a SRV name' })
      }
      const first = seen.get(address)
      if (first === undefined) seen.set(address, i)
      else out.push({ path: jsonPath(at), pointer: at, found: `${JSON.stringify(address)} again`, expected: `an address not already listed as servers[${first}]` })
    })
    const active = isObject(u) && isObject(u['active']) ? u['active'] : undefined
    out.push(...trafficIntervalIssues(name, active))
    const expectBody = isObject(active?.['http']) ? text(active['http']['expectBody']) : undefined
    if (expectBody !== undefined && !compiles(expectBody)) {
      const at = ['upstreams', name, 'active', 'http', 'expectBody']
      out.push({ path: jsonPath(at), pointer: at, found: JSON.stringify(expectBody), expected: 'a valid regular expression' })
    }
  }
  return out
}

const CIDR_SHAPE = /^[0-9A-Fa-f:.]+(\/[0-9]{1,3})?$/

/** Values the schema cannot judge: CIDR blocks that must parse, certificate files that must be readable pairs. */
function valueIssues(doc: unknown): Located[] {
  const out: Located[] = []
  if (!isObject(doc)) return out
  const readable = (file: unknown, pointer: (string | number)[]): boolean => {
    if (typeof file !== 'string' || file === '') return true
    try {
      accessSync(file, constants.R_OK)
      return true
    } catch (err) {
      out.push({ path: jsonPath(pointer), pointer, found: `${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`, expected: 'a readable PEM file' })
      return false
    }
  }
  // A certificate and its key must parse and belong together: found now, not at the first handshake.
  const pair = (tls: Record<string, unknown>, at: (string | number)[]): void => {
    const { cert, key } = tls
    if (typeof cert !== 'string' || typeof key !== 'string') return
    try {
      readCertificate({ cert, key })
    } catch (err) {
      out.push({ path: jsonPath([...at, 'tls']), pointer: [...at, 'tls'], found: `${JSON.stringify(cert)} and ${JSON.stringify(key)}: ${(err as Error).message}`, expected: 'a PEM certificate and the private key that belongs to it' })
    }
  }
  const files = (tls: unknown, at: (string | number)[], keys: readonly string[]): void => {
    if (!isObject(tls)) return
    let ok = true
    for (const k of keys) ok = readable(tls[k], [...at, 'tls', k]) && ok
    // A client certificate needs its key and the other way round (a listener's schema requires both).
    if ((tls['cert'] === undefined) !== (tls['key'] === undefined)) {
      const missing = tls['cert'] === undefined ? 'cert' : 'key'
      out.push({ path: jsonPath([...at, 'tls']), pointer: [...at, 'tls'], found: `no "${missing}"`, expected: 'both "cert" and "key", or neither' })
    } else if (ok) pair(tls, at)
  }
  list(doc['listeners']).forEach((l, i) => {
    if (!isObject(l)) return
    files(l['tls'], ['listeners', i], ['cert', 'key'])
    list(l['trustedProxies']).forEach((c, j) => {
      // Strings the schema's pattern already rejected are reported once, by the schema.
      if (typeof c === 'string' && CIDR_SHAPE.test(c) && parseCidr(c) === undefined) {
        const pointer = ['listeners', i, 'trustedProxies', j]
        out.push({ path: jsonPath(pointer), pointer, found: JSON.stringify(c), expected: 'an IPv4 or IPv6 address with an optional /prefix, like "10.0.0.0/8"' })
      }
    })
  })
  if (isObject(doc['upstreams'])) for (const [name, u] of Object.entries(doc['upstreams'])) if (isObject(u)) files(u['tls'], ['upstreams', name], ['ca', 'cert', 'key'])
  return out
}

function compiles(pattern: string): boolean {
  try {
    new RegExp(pattern)
    return true
  } catch {
    return false
  }
}

const SOURCES = ['address', 'zookeeper', 'etcd'] as const

/** A server entry names exactly one source; the settings of a registry source must fit together. */
function sourceIssues(s: Record<string, unknown>, at: (string | number)[]): Located[] {
  const out: Located[] = []
  const issue = (pointer: (string | number)[], found: string, expected: string): void => {
    out.push({ path: jsonPath(pointer), pointer, found, expected })
  }
  const named = SOURCES.filter((k) => s[k] !== undefined)
  if (named.length !== 1) {
    issue(at, named.length === 0 ? 'none of "address", "zookeeper", "etcd"' : `${named.map((k) => `"${k}"`).join(' and ')}`, 'exactly one of "address", "zookeeper" or "etcd"')
  }
  if (s['resolve'] !== undefined && s['address'] === undefined) issue([...at, 'resolve'], '"resolve" without "address"', '"resolve" only beside a DNS name in "address"')
  for (const kind of ['zookeeper', 'etcd'] as const) {
    const r = s[kind]
    if (!isObject(r)) continue
    const here = [...at, kind]
    out.push(...registryIssues(kind, r, here))
  }
  return out
}

/** `fleet.registry` names exactly one registry, whose settings fit together as a server entry's must. */
function fleetIssues(fleet: unknown): Located[] {
  const registry = isObject(fleet) ? fleet['registry'] : undefined
  if (!isObject(registry)) return []
  const at = ['fleet', 'registry']
  const named = (['zookeeper', 'etcd'] as const).filter((k) => registry[k] !== undefined)
  if (named.length !== 1) {
    const found = named.length === 0 ? 'neither "zookeeper" nor "etcd"' : 'both "zookeeper" and "etcd"'
    return [{ path: jsonPath(at), pointer: at, found, expected: 'exactly one of "zookeeper" or "etcd"' }]
  }
  const kind = named[0] as 'zookeeper' | 'etcd'
  const r = registry[kind]
  return isObject(r) ? registryIssues(kind, r, [...at, kind]) : []
}

/** The settings of one registry connection that must fit together. */
function registryIssues(kind: 'zookeeper' | 'etcd', r: Record<string, unknown>, here: (string | number)[]): Located[] {
  const out: Located[] = []
  const issue = (pointer: (string | number)[], found: string, expected: string): void => {
    out.push({ path: jsonPath(pointer), pointer, found, expected })
  }
  if (r['fields'] !== undefined && r['format'] !== 'json') issue([...here, 'fields'], `"fields" with format ${JSON.stringify(r['format'] ?? 'hostport')}`, 'format "json" (fields name the JSON record\'s keys)')
  const durations = ['resyncInterval', 'staleAfter'].map((k) => r[k])
  if (r['staleAfter'] !== undefined && durations.every((d) => d === undefined || Value.Check(Duration, d))) {
    const resync = ms((r['resyncInterval'] as Duration | undefined) ?? REGISTRY_DEFAULTS.resyncInterval)
    if (ms(r['staleAfter'] as Duration) <= resync) {
      issue([...here, 'staleAfter'], `${JSON.stringify(r['staleAfter'])}, not more than resyncInterval (${resync} ms)`, 'a duration longer than resyncInterval (a healthy source reads at least once per resyncInterval)')
    }
  }
  if (kind === 'etcd') {
    if ((r['username'] === undefined) !== (r['password'] === undefined)) issue(here, `"${r['username'] === undefined ? 'password' : 'username'}" alone`, 'both "username" and "password", or neither')
    const tls = isObject(r['tls']) ? r['tls'] : undefined
    if (tls !== undefined && (tls['cert'] === undefined) !== (tls['key'] === undefined)) issue([...here, 'tls'], `no "${tls['cert'] === undefined ? 'cert' : 'key'}"`, 'both "cert" and "key", or neither')
    if (tls !== undefined) {
      for (const k of ['ca', 'cert', 'key']) {
        const file = tls[k]
        if (typeof file !== 'string') continue
        try {
          accessSync(file, constants.R_OK)
        } catch (err) {
          issue([...here, 'tls', k], `${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`, 'a readable PEM file')
        }
      }
    }
  }
  return out
}

/** A maxEjectTime below the ejectTime it caps cannot be honoured: say so rather than silently raise it. */
function ejectTimeIssues(name: string, passive: unknown): Located[] {
  if (!isObject(passive) || passive['maxEjectTime'] === undefined) return []
  const { ejectTime, failTimeout, maxEjectTime } = passive
  // A malformed duration is the schema's to report.
  if (![ejectTime, failTimeout, maxEjectTime].every((d) => d === undefined || Value.Check(Duration, d))) return []
  const eject = ejectTimeOf({ ejectTime, failTimeout } as Pick<Passive, 'ejectTime' | 'failTimeout'>)
  if (ms(maxEjectTime as Duration) >= eject) return []
  const pointer = ['upstreams', name, 'passive', 'maxEjectTime']
  const from = ejectTime !== undefined ? 'ejectTime' : 'ejectTime (failTimeout unless set)'
  return [{ path: jsonPath(pointer), pointer, found: `${JSON.stringify(maxEjectTime)}, less than ${from}, ${eject} ms`, expected: `a duration of at least ${eject} ms, or no maxEjectTime` }]
}

/** A trafficInterval shorter than interval would check busy servers more often than idle ones: the reverse of its point. */
function trafficIntervalIssues(name: string, active: Record<string, unknown> | undefined): Located[] {
  const traffic = active?.['trafficInterval']
  const interval = active?.['interval'] ?? ACTIVE_DEFAULTS.interval
  if (traffic === undefined || !Value.Check(Duration, traffic) || !Value.Check(Duration, interval)) return []
  const every = ms(interval as Duration)
  if (ms(traffic as Duration) >= every) return []
  const pointer = ['upstreams', name, 'active', 'trafficInterval']
  return [{ path: jsonPath(pointer), pointer, found: `${JSON.stringify(traffic)}, shorter than interval (${every} ms)`, expected: `a duration of at least ${every} ms: servers with traffic are checked less often, not more` }]
}

/**
 * A consumer's place needs both numbers, and a place among them: id 3 of 3 is no consumer. With `fleet`, both may be
 * left out: the fleet's registration gives them.
 */
function subsetIssues(name: string, subset: unknown, fleet: boolean): Located[] {
  if (!isObject(subset)) return []
  const { id, of } = subset
  // Malformed numbers are the schema's to report.
  if ((id !== undefined && !Number.isInteger(id)) || (of !== undefined && !Number.isInteger(of))) return []
  const at = (key: string): (string | number)[] => ['upstreams', name, 'subset', key]
  const issue = (pointer: (string | number)[], found: string, expected: string): Located => ({ path: jsonPath(pointer), pointer, found, expected })
  if (id === undefined && of === undefined) {
    if (fleet) return []
    return [issue(['upstreams', name, 'subset'], 'neither "id" nor "of", and no "fleet"', 'this vigil\'s place among the consumers: "id" and "of" (0 ≤ id < of), or a "fleet" whose registration gives them')]
  }
  if (id === undefined) return [issue(at('of'), `"of" ${String(of)} without "id"`, 'both "id" and "of", or neither')]
  if (of === undefined) return [issue(at('id'), `"id" ${String(id)} without "of"`, 'both "id" and "of", or neither')]
  if ((id as number) >= (of as number)) return [issue(at('id'), String(id), `a consumer index below "of" (0 to ${(of as number) - 1})`)]
  return []
}

/** Options that belong to one balancing policy are an error under another: the operator meant something else. */
const POLICY_OPTIONS: Record<string, string> = { hashKey: 'hash', hashBalanceFactor: 'hash', ewmaDecay: 'ewma' }

function policyOptionIssues(name: string, u: Record<string, unknown>): Located[] {
  const balance = u['balance'] ?? 'round_robin'
  return Object.entries(POLICY_OPTIONS)
    .filter(([key, policy]) => u[key] !== undefined && balance !== policy)
    .map(([key, policy]) => {
      const pointer = ['upstreams', name, key]
      return { path: jsonPath(pointer), pointer, found: `${key} with balance ${JSON.stringify(balance)}`, expected: `balance "${policy}" (${key} applies only to it)` }
    })
}
