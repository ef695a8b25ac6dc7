import type http from 'node:http';
import express from 'express';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Services } from './services';
import { clientAddress } from './client-address';
import { AccessRefused, resolveAccess } from './access';
import { httpStatusOf } from './errors';

/** Platform admins only. */
const DASHBOARD_ACCESS = { roles: [], scope: 'platform' } as const;

export const ADMIN_QUEUES_PATH = '/admin/queues';

/**
 * The BullMQ dashboard, for platform admins only. A browser cannot send a Bearer header,
 * so HTTP Basic with the admin key as password is accepted too (any user name).
 */
export function createAdminQueuesHandler(services: Services) {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(ADMIN_QUEUES_PATH);
  createBullBoard({
    queues: Object.values(services.queues.queues).map((q) => new BullMQAdapter(q)),
    serverAdapter,
  });
  const app = express();
  app.disable('x-powered-by');
  app.use(ADMIN_QUEUES_PATH, serverAdapter.getRouter() as express.Router);

  return async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    try {
      const caller = {
        authorization: bearerFrom(req.headers.authorization),
        ip: clientAddress(req, services.env.TRUST_PROXY),
        userAgent: req.headers['user-agent'] ?? null,
        actingTenant: undefined,
      };
      await resolveAccess(services, caller, DASHBOARD_ACCESS, ADMIN_QUEUES_PATH);
    } catch (error) {
      if (!(error instanceof AccessRefused)) throw error;
      const status = httpStatusOf(error);
      res.writeHead(status, {
        ...error.headers,
        'content-type': 'application/json',
        // a browser asks for the admin key as the password of HTTP Basic
        ...(status === 401 ? { 'www-authenticate': 'Basic realm="Tally admin", charset="UTF-8"' } : {}),
      });
      res.end(JSON.stringify({ error: { message: error.message, code: error.code } }));
      return;
    }
    app(req as express.Request, res as express.Response);
  };
}

function bearerFrom(header: string | undefined): string | undefined {
  const basic = header && /^Basic\s+(\S+)$/i.exec(header);
  if (!basic) return header;
  const decoded = Buffer.from(basic[1]!, 'base64').toString();
  return `Bearer ${decoded.slice(decoded.indexOf(':') + 1)}`;
}
