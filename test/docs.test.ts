// The docs a clone has: every config key documented, every admin route documented, links that resolve inside
// the repository (no ../shared/DESIGN.md), and the LICENSE package.json names.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { jsonSchema } from '../src/config/schema.js'
import { get, root, spawnProvider, startProxy } from './helpers/index.js'

const read = (file: string): string => readFileSync(join(root, file), 'utf8')
const DOCS = ['docs/configuration.md', 'docs/health.md', 'docs/admin-api.md', 'docs/discovery.md', 'docs/fleet.md']

/** Every key of the schema as a dotted path, e.g. upstreams.NAME.passive.maxFails. */
function keys(node: unknown, prefix = ''): string[] {
  if (typeof node !== 'object' || node === null) return []
  const n = node as { properties?: Record<string, unknown>; patternProperties?: Record<string, unknown>; items?: unknown; anyOf?: unknown[] }
  const out: string[] = []
  for (const [k, v] of Object.entries(n.properties ?? {})) out.push(`${prefix}${k}`, ...keys(v, `${prefix}${k}.`))
  for (const v of Object.values(n.patternProperties ?? {})) out.push(...keys(v, `${prefix}NAME.`))
  if (n.items !== undefined) out.push(...keys(n.items, `${prefix.replace(/\.$/, '')}[].`))
  for (const v of n.anyOf ?? []) out.push(...keys(v, prefix))
  return out
}

t.test('every config key is in the docs', async (t) => {
  const docs = DOCS.map(read).join('\n')
  const all = [...new Set(keys(jsonSchema()))]
  t.ok(all.length > 100, `${all.length} keys`)
  // Code spans such as `upstreams.NAME.balance` or `{ enabled, factor, floor }`, split into words.
  const fenced = [...docs.matchAll(/^```[a-z]*\n([\s\S]*?)^```$/gm)].map((m) => m[1] as string)
  const prose = docs.replace(/^```[a-z]*\n[\s\S]*?^```$/gm, '')
  const spans = [...prose.matchAll(/`([^`\n]+)`/g)].map((m) => m[1] as string)
  const words = new Set([...fenced, ...spans].flatMap((c) => c.split(/[^A-Za-z0-9$]+/)))
  const missing = all.filter((k) => k !== '$schema' && !words.has(k.split('.').pop()?.replace(/\[\]$/, '') as string))
  t.same(missing, [], 'each key named in a code span in docs/')
})

t.test('every admin route is in docs/admin-api.md', async (t) => {
  const p = await spawnProvider(t, 'docs')
  const proxy = await startProxy(t, { upstreams: { api: { servers: [{ address: p.address }] } } })
  const { routes } = JSON.parse((await get(`${proxy.admin}/`)).body) as { routes: { method: string; path: string }[] }
  const doc = read('docs/admin-api.md').replace(/\\\|/g, '|')
  for (const r of routes) t.ok(doc.includes(r.path.split('|')[0] as string) && doc.includes(r.method), `${r.method} ${r.path}`)
})

/** GitHub's anchor for a heading. */
const slug = (heading: string): string => heading.trim().toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-')

t.test('links in README.md and docs/ resolve inside the repository', async (t) => {
  for (const file of ['README.md', ...DOCS]) {
    const text = read(file)
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^https?:/.test(target as string)) continue
      const [path, anchor] = (target as string).split('#')
      const to = path === '' ? join(root, file) : resolve(dirname(join(root, file)), path as string)
      t.ok(to.startsWith(root), `${file}: ${target} stays inside the repository`)
      t.ok(existsSync(to), `${file}: ${target} exists`)
      if (anchor !== undefined && existsSync(to) && to.endsWith('.md')) {
        const anchors = [...readFileSync(to, 'utf8').matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1] as string))
        t.ok(anchors.includes(anchor), `${file}: ${target} names a heading`)
      }
    }
    t.notMatch(text, /shared\/DESIGN\.md/, `${file} does not point outside the clone`)
  }
})

t.test('the LICENSE file is the license package.json names', async (t) => {
  const pkg = JSON.parse(read('package.json')) as { license: string; files: string[] }
  t.equal(pkg.license, 'MIT')
  t.match(read('LICENSE'), /^MIT License\n/)
  t.ok(pkg.files.includes('docs'), 'the docs ship in the package')
})
