/** Poll until `cond` holds; the limit is a generous safety net, never a pass/fail timing. */
export async function waitFor(cond: () => boolean, limit = 10_000): Promise<void> {
  const end = Date.now() + limit
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached')
    await new Promise((r) => setTimeout(r, 20))
  }
}
