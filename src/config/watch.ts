// Notices that the config file may have changed. Never decides what changed: the reload reads and compares.
import { watch, realpathSync, type FSWatcher } from 'node:fs'
import { dirname, resolve } from 'node:path'

export interface WatchOptions {
  /** Quiet time after the last event of a burst before `onChange` runs; a burst never delays it beyond 5x this. */
  debounce: number
  /** A directory could not be watched; the watcher retries on its own. */
  onError?: (err: Error) => void
}

const REARM_RETRY_MS = 1_000

/**
 * Watches directories, not the file: editors and deploy tools write a temp file and rename it over the old one,
 * and Kubernetes ConfigMaps swap a `..data` symlink; both replace the inode a file watch would be stuck on. The
 * file's directory and its resolved target's directory are watched. After every burst the watches are re-armed
 * first (a symlink swap moves the target) and only then `onChange` runs, so its read sees every change made
 * before the re-arm and the new watches report every change after it: no update is lost in between.
 */
export class ConfigWatcher {
  private readonly file: string
  private watchers: FSWatcher[] = []
  private timer: NodeJS.Timeout | undefined
  private burstStart = 0
  private closed = false

  constructor(
    file: string,
    private readonly onChange: () => void,
    private readonly options: WatchOptions,
  ) {
    this.file = resolve(file)
  }

  /** Arm, then call `onChange` once, for anything that changed since the caller last read the file. */
  start(): void {
    this.fire()
  }

  close(): void {
    this.closed = true
    clearTimeout(this.timer)
    this.disarm()
  }

  private directories(): string[] {
    const dirs = new Set([dirname(this.file)])
    try {
      dirs.add(dirname(realpathSync(this.file)))
    } catch {
      // The file is missing right now (mid-rename, or deleted): its own directory still tells when it is back.
    }
    return [...dirs]
  }

  private arm(): boolean {
    this.disarm()
    for (const dir of this.directories()) {
      try {
        const w = watch(dir, { persistent: false }, () => this.schedule())
        // A watched directory that is deleted (an old ConfigMap revision) errors; the next arm drops it.
        w.on('error', () => this.schedule())
        this.watchers.push(w)
      } catch (err) {
        this.options.onError?.(err as Error)
      }
    }
    return this.watchers.length > 0
  }

  private disarm(): void {
    for (const w of this.watchers) w.close()
    this.watchers = []
  }

  private schedule(): void {
    if (this.closed) return
    const now = Date.now()
    if (this.timer === undefined) this.burstStart = now
    clearTimeout(this.timer)
    const wait = Math.max(0, Math.min(this.options.debounce, this.burstStart + 5 * this.options.debounce - now))
    this.timer = setTimeout(() => this.fire(), wait)
  }

  private fire(): void {
    this.timer = undefined
    if (this.closed) return
    if (!this.arm()) {
      // Nothing could be watched (the directory is gone): look again later, and read meanwhile.
      this.timer = setTimeout(() => this.fire(), Math.max(this.options.debounce, REARM_RETRY_MS))
      this.timer.unref()
    }
    this.onChange()
  }
}
