// The admin listener's front door: the bearer token, and request paths that cannot be misread.
import { createHash, timingSafeEqual } from 'node:crypto'

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/** Whether the Authorization header carries the token; compared in constant time (hashes have equal length). */
export function authorized(header: string | undefined, token: string | undefined): boolean {
  if (token === undefined) return true
  if (header === undefined || !header.startsWith('Bearer ')) return false
  return timingSafeEqual(digest(header.slice(7)), digest(token))
}

/**
 * Admin routes take names from the path (`/upstreams/NAME/servers/ADDRESS/drain`). Refuse any path a later
 * decoding step could read differently: dot segments, empty segments, encoded or literal slashes and backslashes,
 * control characters and broken percent-escapes.
 */
export function safeAdminPath(url: string | undefined): boolean {
  if (url === undefined || url.charCodeAt(0) !== 47 /* / */) return false
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  if (/[\\\u0000-\u001f\u007f]|\/\/|%2f|%5c|%00/i.test(path)) return false
  for (const segment of path.split('/').slice(1)) {
    let decoded: string
    try {
      decoded = decodeURIComponent(segment)
    } catch {
      return false
    }
    if (decoded === '.' || decoded === '..') return false
  }
  return true
}
