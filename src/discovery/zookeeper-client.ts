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

/**
 * Close `client` for good. A connected one ends its session politely; one that is not connected cannot send the
 * close request, and its socket (maybe a handshake nobody will answer) would stay open and keep the process alive,
 * so it is destroyed: the library then reaches its closed state.
 */
export function discard(client: Client): void {
  const connected = live(client.getState())
  client.close()
  // The socket is not part of the typed API; the library has had no release since 2022, so it will not move.
  if (!connected) (client as unknown as { connectionManager?: { socket?: Socket } }).connectionManager?.socket?.destroy()
}
