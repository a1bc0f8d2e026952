// The one poll every test waits with: until a state is reached, never sleeping for it. The limit is a generous
// safety net on a noisy 2-core machine, never a pass/fail timing.

/** Poll `check` every 20 ms until it holds; fail after `timeout` ms naming `what`. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeout = 30_000): Promise<void> {
  const deadline = Date.now() + timeout
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** until() for a plain condition, in the argument order the registry and fleet tests use. */
export function waitFor(cond: () => boolean, limit = 10_000): Promise<void> {
  return until(cond, 'condition', limit)
}
