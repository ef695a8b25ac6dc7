import type http from 'node:http';
import express from 'express';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Services } from './services';
import { clientAddress } from './client-address';
import { limitHeaders, refusalMessage } from './limit-headers';

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
    const outcome = await services.authenticator.authenticate(bearerFrom(req.headers.authorization), {
      address: clientAddress(req, services.env.TRUST_PROXY),
      userAgent: req.headers['user-agent'] ?? null,
      target: ADMIN_QUEUES_PATH,
    });
    if (!outcome.ok && (outcome.reason === 'throttled' || outcome.reason === 'rate_limited')) {
      res.writeHead(429, { ...limitHeaders(outcome.limit), 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: refusalMessage(outcome.reason, outcome.limit), code: 'TOO_MANY_REQUESTS' } }));
      return;
    }
    if (!outcome.ok || outcome.principal.role !== 'admin') {
      const status = outcome.ok ? 403 : 401;
      res.writeHead(status, {
        'content-type': 'application/json',
        ...(status === 401 ? { 'www-authenticate': 'Basic realm="Tally admin", charset="UTF-8"' } : {}),
      });
      res.end(JSON.stringify({ error: { message: status === 401 ? 'admin API key required' : 'admins only', code: status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN' } }));
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
