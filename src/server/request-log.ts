import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../lib/logger';

const ids = new WeakMap<IncomingMessage, string>();

/** The request's id: the client's X-Request-ID (at most 100 characters) or a new UUID, the same for every reader. */
export function requestIdOf(req: IncomingMessage): string {
  let id = ids.get(req);
  if (id === undefined) {
    id = String(req.headers['x-request-id'] ?? '').slice(0, 100) || randomUUID();
    ids.set(req, id);
  }
  return id;
}

/** A logger whose every line carries the request's id (pino child; made only when a line is logged). */
export function requestLogger(logger: Logger, req: IncomingMessage): Logger {
  return logger.child({ requestId: requestIdOf(req) });
}
