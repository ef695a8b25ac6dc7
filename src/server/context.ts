import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Services } from './services';
import { clientAddress } from './client-address';

export interface RequestInfo {
  requestId: string;
  ip: string | null;
  userAgent: string | null;
  authorization: string | undefined;
  /** X-Tally-Tenant: the tenant an admin key acts on. */
  actingTenant: string | undefined;
}

export interface Context {
  services: Services;
  request: RequestInfo;
  res: ServerResponse;
}

export function createContextFactory(services: Services) {
  return ({ req, res }: { req: IncomingMessage; res: ServerResponse }): Context => ({
    services,
    res,
    request: {
      requestId: String(req.headers['x-request-id'] ?? '').slice(0, 100) || crypto.randomUUID(),
      ip: clientAddress(req, services.env.TRUST_PROXY),
      userAgent: req.headers['user-agent'] ?? null,
      authorization: req.headers.authorization,
      actingTenant: typeof req.headers['x-tally-tenant'] === 'string' ? req.headers['x-tally-tenant'] : undefined,
    },
  });
}
