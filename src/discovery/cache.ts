// The cache file of a registry source: the last applied list, so vigil can start while the registry is down.
// Written atomically (temp file, fsync, rename), so a crash mid-write leaves the previous list, never half of one.
import { promises as fs, readFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { Target } from '../upstream/membership.js'

export interface CacheContent {
  /** "zookeeper 127.0.0.1:2181 /services/api": which source wrote it. */
  source: string
  /** ISO time of the read the list came from. */
  at: string
  targets: Target[]
}

/** Writes are chained per file, so an older list never lands after a newer one. */
const chains = new Map<string, Promise<void>>()

export function writeCache(file: string, content: CacheContent): Promise<void> {
  const run = (chains.get(file) ?? Promise.resolve()).then(() => writeAtomic(file, `${JSON.stringify(content, null, 2)}\n`))
  const tail = run.catch(() => undefined)
  chains.set(file, tail)
  void tail.then(() => {
    if (chains.get(file) === tail) chains.delete(file)
  })
  return run
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const temp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`)
  const handle = await fs.open(temp, 'w', 0o644)
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await fs.rename(temp, file)
  // The rename itself is durable once the directory is synced.
  const dir = await fs.open(dirname(file), 'r')
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
}

/** The cached list, or an Error that says why it cannot be used. */
export function readCache(file: string): CacheContent | Error {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    return new Error(`cache file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  try {
    const c = JSON.parse(text) as CacheContent
    if (!Array.isArray(c.targets) || !c.targets.every((t) => typeof t?.address === 'string')) throw new Error('no "targets" list')
    return c
  } catch (err) {
    return new Error(`cache file ${file}: not a vigil cache (${(err as Error).message})`)
  }
}
