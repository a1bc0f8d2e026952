// Defaults of the registry sources' settings, apart from the sources themselves so config checks can use them.
export const DEFAULTS = {
  connectTimeout: 5_000,
  sessionTimeout: 10_000,
  resyncInterval: 30_000,
  /** staleAfter defaults to this many resync intervals without a successful read. */
  staleResyncs: 3,
  removalGrace: 30_000,
  maxRemovalPercent: 50,
  confirmDelay: 2_000,
} as const
