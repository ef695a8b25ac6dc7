import type http from 'node:http';
import { AppError } from '../lib/errors';
import { EXPORT_KINDS, exportQuerySchema, exportRows, type ExportKind } from '../domain/analytics/export';
import type { Services } from './services';
import { clientAddress } from './client-address';
import { limitHeaders, refusalMessage } from './limit-headers';

export const EXPORT_PATH = '/api/export/';
const EXPORT_ROLES = new Set(['owner', 'member', 'read']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function fail(res: http.ServerResponse, status: number, code: string, message: string, issues?: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify({ error: { message, code, ...(issues ? { issues } : {}) } });
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

class ClientGone extends Error {}

/** Resolves once the client has taken the buffered data; rejects when it went away or stalled. */
function drained(res: http.ServerResponse, stallMs: number): Promise<void> {
  if (res.destroyed) return Promise.reject(new ClientGone('client went away'));
  return new Promise((resolve, reject) => {
    const settle = (err?: Error) => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => settle();
    const onClose = () => settle(new ClientGone('client went away'));
    const timer = setTimeout(() => settle(new ClientGone(`client read nothing for ${stallMs} ms`)), stallMs);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

const STATUS: Partial<Record<AppError['code'], number>> = { BAD_REQUEST: 400, NOT_FOUND: 404 };

/**
 * `GET /api/export/{events,rollups}?format=csv|json&licenseId=&startDate=&endDate=`: the same
 * Bearer keys and tenant scoping as the API (admins name a tenant with X-Tally-Tenant).
 * Errors found before the first byte are JSON with a status; the body is then streamed.
 */
export function createExportHandler(services: Services) {
  return async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const kind = url.pathname.slice(EXPORT_PATH.length) as ExportKind;
    if (req.method !== 'GET' || !EXPORT_KINDS.includes(kind)) return fail(res, 404, 'NOT_FOUND', `no route for ${req.method} ${url.pathname}`);
    const outcome = await services.authenticator.authenticate(req.headers.authorization, {
      address: clientAddress(req, services.env.TRUST_PROXY),
      userAgent: req.headers['user-agent'] ?? null,
      target: `${EXPORT_PATH}${kind}`,
    });
    if (!outcome.ok) {
      if (outcome.reason === 'throttled' || outcome.reason === 'rate_limited') {
        return fail(res, 429, 'TOO_MANY_REQUESTS', refusalMessage(outcome.reason, outcome.limit), undefined, limitHeaders(outcome.limit));
      }
      return fail(res, 401, 'UNAUTHORIZED', refusalMessage(outcome.reason));
    }
    const { principal } = outcome;
    if (principal.role !== 'admin' && !EXPORT_ROLES.has(principal.role)) {
      return fail(res, 403, 'FORBIDDEN', `role "${principal.role}" may not export`);
    }
    let tenantId = principal.tenantId;
    if (principal.role === 'admin') {
      const acting = req.headers['x-tally-tenant'];
      if (typeof acting !== 'string') return fail(res, 400, 'BAD_REQUEST', 'admin keys must name a tenant with the X-Tally-Tenant header');
      if (!UUID.test(acting) || (await services.db.prisma.tenant.count({ where: { id: acting } })) === 0) {
        return fail(res, 404, 'NOT_FOUND', 'X-Tally-Tenant: tenant not found');
      }
      tenantId = acting;
    }
    const parsed = exportQuerySchema.safeParse(Object.fromEntries(url.searchParams));
    if (!parsed.success) {
      return fail(res, 400, 'BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '), parsed.error.issues);
    }
    const query = parsed.data;
    const rows = exportRows({ pool: services.db.pool, prisma: services.db.prisma }, tenantId!, kind, query);
    let head: IteratorResult<string>;
    try {
      head = await rows.next(); // scope and range are checked before the first row
    } catch (err) {
      if (err instanceof AppError && STATUS[err.code]) return fail(res, STATUS[err.code]!, err.code, err.message);
      throw err;
    }
    const filename = `tally-${kind}-${query.startDate}-${query.endDate}.${query.format}`;
    res.writeHead(200, {
      'content-type': query.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json',
      'content-disposition': `attachment; filename="${filename}"`,
      'cache-control': 'no-store',
    });
    try {
      for (let chunk = head; !chunk.done; chunk = await rows.next()) {
        if (res.destroyed) throw new ClientGone('client went away');
        if (!res.write(chunk.value)) await drained(res, services.env.EXPORT_STALL_TIMEOUT_MS);
      }
      res.end();
    } catch (err) {
      if (err instanceof ClientGone) services.logger.info({ kind, reason: err.message }, 'export abandoned');
      else services.logger.error({ err, kind }, 'export failed mid-stream');
      res.destroy(); // the client sees a truncated body, never a partial file passed off as whole
    } finally {
      await rows.return(undefined);
    }
  };
}
