// Keeping a node-zookeeper-client Client usable. The library clears its connect timer as soon as TCP connects and
// has no timeout on the session handshake after it: a connection that is accepted but never answered (seen after
// real ZooKeeper restarts: a few clients in twenty kept their pre-restart session and stayed "disconnected" for
// good; a black-holing network or middlebox does the same) keeps a client connecting forever, and it never reports
// an expiry. So whoever holds a client opens a new one when it has not been connected for longer than the session
// timeout: by then the server has expired the old session anyway, unless it was down, and a new session costs a
// re-list. vigil's source (zookeeper.ts) and the drills' provider agents and admin client use this.
import type { Socket } from 'node:net'
import zookeeper, { type Client, type State } from 'node-zookeeper-client'

const live = (s: State): boolean => s === zookeeper.State.SYNC_CONNECTED || s === zookeeper.State.CONNECTED_READ_ONLY

/**
 * Call `reopen` once if `client` is not connected within `after` ms of now (it is just being opened) or of a
 * disconnect. An expiry or a failed authentication is left to the caller. Returns a function that stops watching.
 */
export function reopenWhenStuck(client: Client, after: number, reopen: () => void): () => void {
  let timer: NodeJS.Timeout | undefined
  const stop = (): void => {
    clearTimeout(timer)
    client.off('state', onState)
  }
  const arm = (): void => {
    clearTimeout(timer)
    timer = setTimeout(() => {
      if (live(client.getState())) return
      stop()
      reopen()
    }, after)
    timer.unref()
  }
  function onState(s: State): void {
    if (s === zookeeper.State.DISCONNECTED) arm()
    else if (live(s)) clearTimeout(timer)
    else stop()
  }
  client.on('state', onState)
  if (!live(client.getState())) arm()
  return stop
}

/** The parts of node-zookeeper-client's connection manager (not in its typed API) that closing for good needs. */
interface ConnectionInternals {
  socket?: Socket
  onSocketConnected(this: ConnectionInternals): void
  onSocketData(this: ConnectionInternals): void
}

/**
 * Close `client` for good. A connected one ends its session politely. One that is not connected cannot send the
 * close request, and the library goes on as if it could: its socket (maybe a handshake nobody will answer) stays
 * open and keeps the process alive; a reconnect it had already scheduled still dials; and the answer to that
 * handshake is then read as the reply to the close request, whose garbage error code the library throws from its
 * socket handler (seen in drills: the process died). So every socket of it is destroyed, now and as soon as a
 * later one connects or speaks; the library then reaches its closed state without reconnecting.
 */
export function discard(client: Client): void {
  const connected = live(client.getState())
  client.close()
  if (connected) return
  // The library has had no release since 2022, so these internals will not move; handlers are bound per socket
  // when it is created, so instance overrides reach every later one.
  const cm = (client as unknown as { connectionManager?: ConnectionInternals }).connectionManager
  if (cm === undefined) return
  const end = function (this: ConnectionInternals): void {
    this.socket?.destroy()
  }
  cm.onSocketConnected = end
  cm.onSocketData = end
  cm.socket?.destroy()
}
