/** One thing wrong with a config file, located precisely enough to fix it without guessing. */
export interface ConfigIssue {
  /** JSON path such as `upstreams.api.servers[0].address`; empty for the document itself. */
  path: string
  found: string
  expected: string
  /** 1-based line and column in the file, when known. */
  line?: number
  column?: number
}

export class ConfigError extends Error {
  readonly code = 'VIGIL_CONFIG_INVALID'
  constructor(
    readonly file: string,
    readonly issues: readonly ConfigIssue[],
  ) {
    super(`${file}: ${issues.length} error${issues.length === 1 ? '' : 's'}\n${formatIssues(file, issues)}`)
    this.name = 'ConfigError'
  }
}

export function formatIssues(file: string, issues: readonly ConfigIssue[]): string {
  return issues
    .map((i) => {
      const where = i.line === undefined ? file : `${file}:${i.line}:${i.column}`
      return `${where}: ${i.path === '' ? '(document)' : i.path}: found ${i.found}, expected ${i.expected}`
    })
    .join('\n')
}
