import type http from 'node:http';
import { AppError, isUnavailableError } from '../lib/errors';
import { EMAIL_EXPORT_ROLES, EXPORT_KINDS, exportQuerySchema, exportRows, type ExportKind } from '../domain/analytics/export';
import type { Services } from './services';
import { clientAddress } from './client-address';
import { requestLogger } from './request-log';
import { AccessRefused, resolveAccess } from './access';
import type { Environment } from '../domain/environments/environment';
import { httpStatusOf } from './errors';
import { EXPORT_ACCESS } from './routers/analytics/export';
import { isReplicaOnlyFailure, readHeaders } from './read-routing';
import type { ReadTarget } from '../lib/read-replica';

export const EXPORT_PATH = '/api/export/';

function fail(res: http.ServerResponse, status: number, code: string, message: string, issues?: unknown, headers: http.OutgoingHttpHeaders = {}) {
  const text = JSON.stringify({ error: { message, code, ...(issues ? { issues } : {}) } });
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** What a refused export is told to wait: long enough for a small export to finish, no longer. */
export const EXPORT_RETRY_AFTER_SECONDS = 5;
const RETRY_LATER = { 'retry-after': String(EXPORT_RETRY_AFTER_SECONDS) };

/**
 * Exports running in this process, in all and per tenant. In all, they are as many as the
 * export pool has connections, so an admitted export never waits for one; a tenant gets at
 * most its share, so one tenant cannot take every slot.
 */
class ExportSlots {
  private running = 0;
  private readonly perTenant = new Map<string, number>();

  constructor(
    readonly total: number,
    readonly perTenantMax: number,
  ) {}

  /** A release function, or which limit is full. */
  take(tenantId: string): (() => void) | 'tenant' | 'total' {
    const mine = this.perTenant.get(tenantId) ?? 0;
    if (mine >= this.perTenantMax) return 'tenant';
    if (this.running >= this.total) return 'total';
    this.running += 1;
    this.perTenant.set(tenantId, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running -= 1;
      const left = (this.perTenant.get(tenantId) ?? 1) - 1;
      if (left > 0) this.perTenant.set(tenantId, left);
      else this.perTenant.delete(tenantId);
    };
  }
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
 * Errors found before the first byte are JSON with a status, and so is a refusal for want of
 * capacity (429 past the tenant's share, 503 when every export slot is busy, both with
 * Retry-After): the export holds its connection before it answers 200. The body is then
 * streamed; a client that stalls longer than EXPORT_STALL_TIMEOUT_MS, or an export still
 * running after EXPORT_MAX_DURATION_MS, is cut off.
 */
export function createExportHandler(services: Services) {
  const { env } = services;
  const slots = new ExportSlots(env.EXPORT_POOL_SIZE, env.EXPORT_MAX_PER_TENANT);
  return async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const log = requestLogger(services.logger, req);
    const url = new URL(req.url ?? '/', 'http://localhost');
    const kind = url.pathname.slice(EXPORT_PATH.length) as ExportKind;
    if (req.method !== 'GET' || !EXPORT_KINDS.includes(kind)) return fail(res, 404, 'NOT_FOUND', `no route for ${req.method} ${url.pathname}`);
    let tenantId: string;
    let environment: Environment;
    let role: string;
    try {
      const caller = {
        authorization: req.headers.authorization,
        ip: clientAddress(req, services.env.TRUST_PROXY),
        userAgent: req.headers['user-agent'] ?? null,
        actingTenant: typeof req.headers['x-tally-tenant'] === 'string' ? req.headers['x-tally-tenant'] : undefined,
        actingEnvironment: typeof req.headers['x-tally-environment'] === 'string' ? req.headers['x-tally-environment'] : undefined,
      };
      const access = await resolveAccess(services, caller, EXPORT_ACCESS, `${EXPORT_PATH}${kind}`);
      tenantId = access.tenantId!;
      environment = access.environment;
      role = access.principal.role;
    } catch (error) {
      if (!(error instanceof AccessRefused)) throw error;
      return fail(res, httpStatusOf(error), error.code, error.message, undefined, error.headers);
    }
    const parsed = exportQuerySchema.safeParse(Object.fromEntries(url.searchParams));
    if (!parsed.success) {
      return fail(res, 400, 'BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '), parsed.error.issues);
    }
    const query = parsed.data;
    if (query.includeUserEmail === true && !EMAIL_EXPORT_ROLES.includes(role)) {
      return fail(res, 403, 'FORBIDDEN', `includeUserEmail: role "${role}" may not export users' emails (owner only)`);
    }
    const slot = slots.take(tenantId);
    if (slot === 'tenant') {
      const message = `too many exports at once: this tenant already runs ${slots.perTenantMax} (EXPORT_MAX_PER_TENANT); retry when one has finished`;
      return fail(res, 429, 'TOO_MANY_REQUESTS', message, undefined, RETRY_LATER);
    }
    if (slot === 'total') {
      const message = `export capacity is full: ${slots.total} exports are running (EXPORT_POOL_SIZE); retry later`;
      return fail(res, 503, 'SERVICE_UNAVAILABLE', message, undefined, RETRY_LATER);
    }
    // A read-only view: from the replica while it is fresh enough (README "Read replica").
    const { reads } = services.db;
    let target: ReadTarget = reads.pick();
    const open = (db: ReadTarget) => exportRows(db, tenantId, environment, kind, query, { statementTimeoutMs: env.EXPORT_MAX_DURATION_MS });
    let rows = open(target);
    let deadline: NodeJS.Timeout | undefined;
    let expired = false;
    try {
      let head: IteratorResult<string>;
      try {
        try {
          head = await rows.next(); // scope, range and the connection are settled before the first byte
        } catch (err) {
          // Nothing sent yet: a replica that went away (or has not seen the license yet) is read again on the primary.
          if (target.source !== 'replica' || !isReplicaOnlyFailure(err)) throw err;
          reads.markDown(err);
          target = reads.primaryTarget();
          rows = open(target);
          head = await rows.next();
        }
      } catch (err) {
        if (err instanceof AppError && STATUS[err.code]) return fail(res, STATUS[err.code]!, err.code, err.message);
        if (!isUnavailableError(err)) log.error({ err, kind }, 'export could not start');
        return fail(res, 503, 'SERVICE_UNAVAILABLE', 'export unavailable (database busy or unreachable), retry later', undefined, RETRY_LATER);
      }
      const filename = `tally-${kind}-${query.startDate}-${query.endDate}.${query.format}`;
      res.writeHead(200, {
        'content-type': query.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json',
        'content-disposition': `attachment; filename="${filename}"`,
        'cache-control': 'no-store',
        ...readHeaders(target),
      });
      // However steadily a client reads, an export holds its connection this long at most.
      deadline = setTimeout(() => {
        expired = true;
        res.destroy();
      }, env.EXPORT_MAX_DURATION_MS);
      try {
        for (let chunk = head; !chunk.done; chunk = await rows.next()) {
          if (res.destroyed) throw new ClientGone('client went away');
          if (!res.write(chunk.value)) await drained(res, env.EXPORT_STALL_TIMEOUT_MS);
        }
        res.end();
      } catch (err) {
        if (expired) log.info({ kind, limitMs: env.EXPORT_MAX_DURATION_MS }, 'export cut off: ran past EXPORT_MAX_DURATION_MS');
        else if (err instanceof ClientGone) log.info({ kind, reason: err.message }, 'export abandoned');
        else log.error({ err, kind }, 'export failed mid-stream');
        res.destroy(); // the client sees a truncated body, never a partial file passed off as whole
      }
    } finally {
      clearTimeout(deadline);
      await rows.return(undefined).catch((err: unknown) => log.warn({ err, kind }, 'export did not close cleanly'));
      slot();
    }
  };
}
