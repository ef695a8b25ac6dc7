import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Services } from './services';
import { clientAddress } from './client-address';
import type { Logger } from '../lib/logger';
import { requestIdOf, requestLogger } from './request-log';

export interface RequestInfo {
  requestId: string;
  ip: string | null;
  userAgent: string | null;
  authorization: string | undefined;
  /** X-Tally-Tenant: the tenant an admin key acts on. */
  actingTenant: string | undefined;
  /** X-Tally-Environment: the environment an admin key acts in (its own by default). */
  actingEnvironment: string | undefined;
}

export interface Context {
  services: Services;
  request: RequestInfo;
  res: ServerResponse;
  /** The process's logger with this request's id on every line. */
  readonly log: Logger;
}

export function createContextFactory(services: Services) {
  return ({ req, res }: { req: IncomingMessage; res: ServerResponse }): Context => {
    let log: Logger | undefined;
    return {
      services,
      res,
      get log() {
        return (log ??= requestLogger(services.logger, req));
      },
      request: {
        requestId: requestIdOf(req),
        ip: clientAddress(req, services.env.TRUST_PROXY),
        userAgent: req.headers['user-agent'] ?? null,
        authorization: req.headers.authorization,
        actingTenant: typeof req.headers['x-tally-tenant'] === 'string' ? req.headers['x-tally-tenant'] : undefined,
        actingEnvironment: typeof req.headers['x-tally-environment'] === 'string' ? req.headers['x-tally-environment'] : undefined,
      },
    };
  };
}
