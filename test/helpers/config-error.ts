import { ConfigError } from '../../src/index.js'

/** The ConfigError `fn` throws; fails the test when it throws something else or nothing. */
export function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
  throw new Error('expected a ConfigError')
}

export const issuesOf = (fn: () => unknown): ConfigError['issues'] => configErrorOf(fn).issues
