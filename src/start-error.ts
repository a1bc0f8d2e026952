// Why vigil could not start, in one line an operator can act on: where in the config (a JSON path), the value
// there, and the cause in words (`listeners[0].address 127.0.0.1:8080: address already in use`).

const CAUSES: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EADDRNOTAVAIL: 'address not available on this host',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory',
  ENOTDIR: 'a parent is not a directory',
  EROFS: 'read-only file system',
}

export class StartError extends Error {
  readonly code = 'VIGIL_START'

  constructor(
    /** JSON path of the setting that failed, e.g. `listeners[0].address`. */
    readonly path: string,
    /** Its value. */
    readonly value: string,
    override readonly cause: unknown,
  ) {
    super(`${path} ${value}: ${causeText(cause)}`)
    this.name = 'StartError'
  }
}

/** An errno in words, with what to do for the common ones; any other error by its message. */
export function causeText(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined
  if (e?.code === 'EEXIST' && e.syscall === 'mkdir') return 'a parent is not a directory'
  const known = e?.code === undefined ? undefined : CAUSES[e.code]
  if (known === undefined) return e?.message ?? String(err)
  if ((e?.code === 'EACCES' || e?.code === 'EPERM') && e.syscall === 'listen') return `${known} (ports below 1024 need root or CAP_NET_BIND_SERVICE)`
  return known
}
