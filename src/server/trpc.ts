import { TRPCError, initTRPC } from '@trpc/server';
import { ZodError } from 'zod';
import type { ApiKeyRole } from '../generated/prisma/client';
import { AppError, isUnavailableError, toTRPCError } from '../lib/errors';
import { recordAudit } from '../domain/audit/audit-log';
import { sdkVersionFromUserAgent } from '../domain/api-keys/key-material';
import type { Principal } from '../domain/api-keys/authenticator';
import type { Context } from './context';

export type TenantRole = Exclude<ApiKeyRole, 'admin'>;

export interface Meta {
  /** Tenant roles allowed besides admin, who may call everything. */
  roles: readonly TenantRole[];
  /**
   * tenant: works inside one tenant (an admin names it with X-Tally-Tenant);
   * platform: admin-only platform operations; either: a tenant's view, or everything for an admin.
   */
  scope: 'tenant' | 'platform' | 'either';
  /** Mutations are audited unless they are usage data (events), which would flood the log. */
  audit?: false;
  /** What the procedure's id/target refers to, for the audit log. */
  target?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const t = initTRPC
  .context<Context>()
  .meta<Meta>()
  .create({
    errorFormatter({ shape, error }) {
      const cause = error.cause;
      // An unexpected error's message is for the log (onError), not the client: Prisma's names
      // the source file, the lines around the call and the database's own words.
      const message =
        cause instanceof ZodError
          ? cause.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; ')
          : error.code === 'INTERNAL_SERVER_ERROR'
            ? 'internal error: the server logged it'
            : shape.message;
      return {
        ...shape,
        message,
        data: {
          ...shape.data,
          stack: undefined,
          // zod issues name the field and what was wrong with it
          issues: cause instanceof ZodError ? cause.issues : cause instanceof AppError ? cause.issues : undefined,
          appCode: cause instanceof AppError ? cause.code : undefined,
          details: cause instanceof AppError ? cause.details : undefined,
        },
      };
    },
  });

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

/**
 * Turns domain errors into their one tRPC code; an unreachable database is a 503, not a 500.
 * Applied by `guard` to what it throws itself and to the failed result of the call it wraps.
 */
function mappedError(error: unknown): unknown {
  const cause = error instanceof TRPCError ? error.cause : error;
  if (cause instanceof AppError) return toTRPCError(cause);
  if ((!(error instanceof TRPCError) || error.code === 'INTERNAL_SERVER_ERROR') && isUnavailableError(cause)) {
    return new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: 'database unavailable, retry later', cause });
  }
  return error;
}

function audit(ctx: Context, principal: Principal | null, entry: Omit<Parameters<typeof recordAudit>[1], 'ip' | 'userAgent' | 'actorKeyId' | 'actorPrefix'>) {
  // Audit writes must not turn a request into a failure; a lost row is logged.
  return recordAudit(ctx.services.db.prisma, {
    ...entry,
    actorKeyId: principal?.keyId ?? null,
    actorPrefix: principal?.prefix ?? entry.metadata?.presentedPrefix?.toString() ?? null,
    ip: ctx.request.ip,
    userAgent: ctx.request.userAgent,
  }).catch((err: unknown) => ctx.services.logger.error({ err, action: entry.action }, 'audit write failed'));
}

function targetIdOf(input: unknown, output: unknown): string | null {
  for (const value of [output, input]) {
    if (value && typeof value === 'object') {
      const v = value as Record<string, unknown>;
      if (typeof v.id === 'string') return v.id;
      const tenant = v.tenant as Record<string, unknown> | undefined;
      if (tenant && typeof tenant.id === 'string') return tenant.id;
    }
  }
  return null;
}

/**
 * Every procedure's one middleware (tRPC copies its options object twice per middleware, a
 * tenth of the CPU of a single-event call with two): the caller authenticated and authorised,
 * mutations audited, and errors mapped (see mappedError).
 */
const guard = t.middleware(async ({ ctx, meta, path, type, next, getRawInput }) => {
  let access: { principal: Principal; tenantId: string | null };
  try {
    access = await authorise(ctx, meta, path);
  } catch (error) {
    throw mappedError(error);
  }
  const { principal, tenantId } = access;
  const result = await next({ ctx: { principal, tenantId } });
  if (!result.ok) {
    const mapped = mappedError(result.error);
    if (mapped !== result.error) throw mapped;
    return result;
  }
  if (type === 'mutation' && meta?.audit !== false) {
    const input = await getRawInput().catch(() => undefined);
    await audit(ctx, principal, {
      tenantId: tenantId ?? targetTenantOf(result.data),
      action: path,
      outcome: 'success',
      targetType: meta?.target ?? null,
      targetId: targetIdOf(input, result.data),
    });
  }
  return result;
});

/** Who is calling, and for which tenant; refusals (audited) throw. */
async function authorise(ctx: Context, meta: Meta | undefined, path: string): Promise<{ principal: Principal; tenantId: string | null }> {
  if (!meta) throw new Error(`procedure ${path} declares no meta`);
  const outcome = await ctx.services.authenticator.authenticate(
    ctx.request.authorization,
    sdkVersionFromUserAgent(ctx.request.userAgent ?? undefined),
  );
  if (!outcome.ok) {
    void audit(ctx, null, {
      tenantId: null,
      action: 'auth.refused',
      outcome: 'refused',
      targetType: 'procedure',
      targetId: path,
      metadata: { reason: outcome.reason, presentedPrefix: outcome.prefix ?? null },
    });
    const message =
      outcome.reason === 'missing'
        ? 'missing API key: send Authorization: Bearer <key>'
        : outcome.reason === 'malformed'
          ? 'malformed API key'
          : outcome.reason === 'revoked'
            ? 'API key has been revoked'
            : 'unknown API key';
    throw new TRPCError({ code: 'UNAUTHORIZED', message });
  }
  const principal = outcome.principal;
  const isAdmin = principal.role === 'admin';
  const allowed = isAdmin || (meta.scope !== 'platform' && (meta.roles as readonly string[]).includes(principal.role));
  if (!allowed) {
    void audit(ctx, principal, {
      tenantId: principal.tenantId,
      action: path,
      outcome: 'denied',
      metadata: { role: principal.role },
    });
    throw new TRPCError({ code: 'FORBIDDEN', message: `role "${principal.role}" may not call ${path}` });
  }

  let tenantId: string | null = principal.tenantId;
  if (isAdmin && meta.scope !== 'platform') {
    const acting = ctx.request.actingTenant;
    if (acting !== undefined) {
      const exists = UUID.test(acting) && (await ctx.services.db.prisma.tenant.count({ where: { id: acting } })) > 0;
      if (!exists) throw new TRPCError({ code: 'NOT_FOUND', message: 'X-Tally-Tenant: tenant not found' });
      tenantId = acting;
    } else if (meta.scope === 'tenant') {
      throw new TRPCError({ code: 'BAD_REQUEST', message: 'admin keys must name a tenant with the X-Tally-Tenant header' });
    }
  }

  return { principal, tenantId };
}

function targetTenantOf(output: unknown): string | null {
  const tenant = (output as { tenant?: { id?: unknown } } | null)?.tenant;
  return typeof tenant?.id === 'string' ? tenant.id : null;
}

/** Every procedure starts here: errors mapped, caller authenticated and authorised. */
export function procedure(meta: Meta) {
  return t.procedure.meta(meta).use(guard);
}

/** For tenant-scoped procedures: the tenant is known (an admin without X-Tally-Tenant was refused). */
export function requireTenant(tenantId: string | null): string {
  if (!tenantId) throw new AppError('BAD_REQUEST', 'admin keys must name a tenant with the X-Tally-Tenant header');
  return tenantId;
}
