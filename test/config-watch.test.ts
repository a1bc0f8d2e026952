// ConfigWatcher on real files: what it reports is checked by reading the file, as the reload does.
import t from 'tap'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigWatcher } from '../src/config/watch.js'
import { tempDir, until } from './helpers/config-file.js'

function watcher(t: { teardown(fn: () => unknown): void }, file: string): { seen: () => string | undefined; errors: Error[]; calls: () => number } {
  let last: string | undefined
  let calls = 0
  const errors: Error[] = []
  const w = new ConfigWatcher(
    file,
    () => {
      calls++
      try {
        last = readFileSync(file, 'utf8')
      } catch {
        last = undefined
      }
    },
    { debounce: 20, onError: (err) => errors.push(err) },
  )
  w.start()
  t.teardown(() => w.close())
  return { seen: () => last, errors, calls: () => calls }
}

t.test('reads once at start, then after every burst', async (t) => {
  const file = join(tempDir(t), 'vigil.json')
  writeFileSync(file, 'v1')
  const w = watcher(t, file)
  t.equal(w.calls(), 1, 'a read right after arming covers changes made before it')
  t.equal(w.seen(), 'v1')
  for (let i = 2; i <= 20; i++) writeFileSync(file, `v${i}`)
  await until(() => w.seen() === 'v20', 'the last write')
})

t.test('a directory that disappears and comes back is watched again', async (t) => {
  const conf = join(tempDir(t), 'conf')
  mkdirSync(conf)
  const file = join(conf, 'vigil.json')
  writeFileSync(file, 'v1')
  const w = watcher(t, file)
  rmSync(conf, { recursive: true })
  await until(() => w.errors.length > 0, 'the failed re-arm to be reported')
  t.equal(w.seen(), undefined, 'the missing file was read (and reported by the reload)')
  mkdirSync(conf)
  writeFileSync(file, 'v2')
  await until(() => w.seen() === 'v2', 'the file in the new directory')
  writeFileSync(file, 'v3')
  await until(() => w.seen() === 'v3', 'changes in the new directory')
})
