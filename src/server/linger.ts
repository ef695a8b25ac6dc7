import type http from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * A request refused before all of it arrived (a request line past the header limit; a Stripe
 * webhook body past its limit) is answered while the client may still be writing the rest.
 * Closing the socket then makes the kernel reset the connection under that client, which sees
 * ECONNRESET instead of the answer. So the rest is read and dropped, as nginx and Apache do
 * ("lingering close"), until the client is done, goes quiet for LINGER_IDLE_MS, or LINGER_MS
 * pass; then the socket is closed. (A tRPC or REST body past MAX_BODY_BYTES needs none of this:
 * its reader stops keeping what arrives, node:http reads the rest and drops it, and the
 * connection stays open, bounded by the server's request timeout like any slow request.)
 */
export const LINGER_MS = 10_000;
export const LINGER_IDLE_MS = 2_000;

/** Sockets lingering or draining now, closed at once on shutdown (see closeLingering). */
const held = new Set<Duplex>();

/** Closes `socket` once its client has been quiet for LINGER_IDLE_MS or after LINGER_MS; `touch` on every arrival. */
function lingerTimers(socket: Duplex): { touch(): void; done(): void } {
  const close = (): void => {
    socket.destroy();
  };
  const deadline = setTimeout(close, LINGER_MS).unref();
  let idle = setTimeout(close, LINGER_IDLE_MS).unref();
  held.add(socket);
  const done = (): void => {
    clearTimeout(deadline);
    clearTimeout(idle);
    held.delete(socket);
    socket.off('close', done);
  };
  socket.on('close', done);
  return {
    touch() {
      clearTimeout(idle);
      idle = setTimeout(close, LINGER_IDLE_MS).unref();
    },
    done,
  };
}

/**
 * Sockets whose later parse errors are not answered: node:http goes on reading a socket after a
 * parse error and reports each later piece as another error, and a body being drained after its
 * 413 has been answered already.
 */
const answered = new WeakMap<Duplex, () => void>();

/**
 * For a socket whose answer was written with `end()` outside node:http (a parse-error refusal):
 * what still arrives is dropped until the client closes or the limits pass. Every arrival is
 * reported as another parse error, which the caller passes to `lingeringArrival`.
 */
export function lingerAfterEnd(socket: Duplex): void {
  const timers = lingerTimers(socket);
  answered.set(socket, timers.touch);
}

/** For a parse error on a socket already answered: true when it is (the arrival counted), false otherwise. */
export function lingeringArrival(socket: Duplex): boolean {
  const touch = answered.get(socket);
  touch?.();
  return touch !== undefined;
}

/**
 * For a request answered before its body was read whole (a 413): the rest of the body is read
 * and dropped, so the connection stays usable, within the same limits; past them the socket is
 * closed. The answer must not say `Connection: close`, or node:http closes the socket under the
 * client as soon as the answer is out; a request that itself asked for `Connection: close` (or
 * came as HTTP/1.0) gets that close all the same, which is node:http's to decide.
 */
export function drainRest(req: http.IncomingMessage): void {
  if (req.complete) return;
  const socket = req.socket;
  const timers = lingerTimers(socket);
  answered.set(socket, timers.touch);
  const onData = (): void => timers.touch();
  req.on('data', onData);
  req.once('end', () => {
    timers.done();
    answered.delete(socket);
    req.off('data', onData);
  });
  req.resume();
}

/** Closes every socket lingering or draining now (shutdown: none of them is owed anything more). */
export function closeLingering(): void {
  for (const socket of held) socket.destroy();
  held.clear();
}
