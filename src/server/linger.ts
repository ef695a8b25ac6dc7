import type http from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * A request refused before all of it arrived (a request line past the header limit, a body past
 * its limit) is answered while the client may still be writing the rest. Closing the socket then
 * makes the kernel reset the connection under that client, which sees ECONNRESET instead of the
 * answer. So the rest is read and dropped, as nginx and Apache do ("lingering close"), until the
 * client is done, goes quiet for LINGER_IDLE_MS, or LINGER_MS pass; then the socket is closed.
 */
export const LINGER_MS = 10_000;
export const LINGER_IDLE_MS = 2_000;

/** Closes `socket` once its client has been quiet for LINGER_IDLE_MS or after LINGER_MS; `touch` on every arrival. */
function lingerTimers(socket: Duplex): { touch(): void; done(): void } {
  const close = (): void => {
    socket.destroy();
  };
  const deadline = setTimeout(close, LINGER_MS).unref();
  let idle = setTimeout(close, LINGER_IDLE_MS).unref();
  const done = (): void => {
    clearTimeout(deadline);
    clearTimeout(idle);
  };
  socket.once('close', done);
  return {
    touch() {
      clearTimeout(idle);
      idle = setTimeout(close, LINGER_IDLE_MS).unref();
    },
    done,
  };
}

/**
 * For a socket whose answer was written with `end()` outside node:http (a parse-error refusal):
 * what still arrives is dropped (node:http goes on reading it and reporting each piece as another
 * parse error, which the caller ignores while `isLingering`), until the client closes or the
 * limits pass.
 */
const lingering = new WeakSet<Duplex>();

export function lingerAfterEnd(socket: Duplex): void {
  lingering.add(socket);
  const timers = lingerTimers(socket);
  const onData = (): void => timers.touch();
  socket.on('data', onData);
  socket.once('close', () => socket.off('data', onData));
}

export function isLingering(socket: Duplex): boolean {
  return lingering.has(socket);
}

/**
 * For a request answered before its body was read whole (a 413): the rest of the body is read
 * and dropped, so the connection stays usable (the answer must not say `Connection: close`:
 * node:http would close the socket under the client as soon as the answer is out), within the
 * same limits; past them the socket is closed.
 */
export function drainRest(req: http.IncomingMessage): void {
  if (req.complete) return;
  const timers = lingerTimers(req.socket);
  const onData = (): void => timers.touch();
  req.on('data', onData);
  req.once('end', () => {
    timers.done();
    req.off('data', onData);
  });
  req.resume();
}
