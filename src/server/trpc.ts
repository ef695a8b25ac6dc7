import { TRPCError, initTRPC } from '@trpc/server';
import { ZodError, type ZodType } from 'zod';
import { AppError, isUnavailableError } from '../lib/errors';
import { toTRPCError } from './errors';
import { recordAudit } from '../domain/audit/audit-log';
import type { Principal } from '../domain/api-keys/authenticator';
import type { Context } from './context';
import { AccessRefused, type Access, type AccessRule, resolveAccess } from './access';

export type { TenantRole } from './access';

interface AuditMeta {
  /** Mutations are audited unless they are usage data (events), which would flood the log. */
  audit?: false;
  /** What the procedure's id/target refers to, for the audit log. */
  target?: string;
}

interface AnswerMeta {
  /**
   * The answer's schema, for the OpenAPI document, where a procedure leaves out tRPC's
   * run-time output parser: a hot read whose answer is built field by field in typed code
   * (its resolver is typed with the schema's output, and a test parses real answers with it).
   * The parser would copy every point of a year of days once more per request.
   */
  answer?: ZodType;
}

/** A procedure behind an API key: who may call it (the door's AccessRule), and how it is audited. */
export interface KeyedMeta extends AccessRule, AuditMeta, AnswerMeta {}

/**
 * A procedure anyone may call without a key (signup.register): the Authorization header is not
 * read, so no role and no tenant apply; the procedure throttles and audits itself.
 */
export interface PublicMeta extends AuditMeta {
  scope: 'public';
  roles: readonly [];
}

export type Meta = KeyedMeta | PublicMeta;

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
    actorPrefix: principal?.prefix ?? null,
    ip: ctx.request.ip,
    userAgent: ctx.request.userAgent,
  }).catch((err: unknown) => ctx.log.error({ err, action: entry.action }, 'audit write failed'));
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
  let access: Access;
  try {
    access = await authorise(ctx, meta, path);
  } catch (error) {
    throw mappedError(error);
  }
  const { principal, tenantId, environment } = access;
  const result = await next({ ctx: { principal, tenantId, environment } });
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

/** Who is calling, and for which tenant, by the access check every door shares; refusals throw. */
async function authorise(ctx: Context, meta: Meta | undefined, path: string): Promise<Access> {
  if (!meta) throw new Error(`procedure ${path} declares no meta`);
  if (meta.scope === 'public') throw new Error(`public procedure ${path} is behind the key guard`);
  try {
    return await resolveAccess(ctx.services, ctx.request, meta, path);
  } catch (error) {
    if (error instanceof AccessRefused && !ctx.res.headersSent) for (const [name, value] of Object.entries(error.headers)) ctx.res.setHeader(name, value);
    throw error;
  }
}

function targetTenantOf(output: unknown): string | null {
  const tenant = (output as { tenant?: { id?: unknown } } | null)?.tenant;
  return typeof tenant?.id === 'string' ? tenant.id : null;
}

/** Every procedure starts here: errors mapped, caller authenticated and authorised. */
export function procedure(meta: KeyedMeta) {
  return t.procedure.meta(meta).use(guard);
}

/** A public procedure's one middleware: no key is read, errors are mapped as `guard` maps them. */
const publicGuard = t.middleware(async ({ meta, path, next }) => {
  if (meta?.scope !== 'public') throw new Error(`procedure ${path} is not public`);
  const result = await next({ ctx: { principal: null, tenantId: null } });
  if (!result.ok) {
    const mapped = mappedError(result.error);
    if (mapped !== result.error) throw mapped;
  }
  return result;
});

/** A procedure without authentication (see PublicMeta): it must throttle and audit itself. */
export function publicProcedure(meta: AuditMeta = {}) {
  return t.procedure.meta({ ...meta, scope: 'public', roles: [] }).use(publicGuard);
}

/** For tenant-scoped procedures: the tenant is known (an admin without X-Tally-Tenant was refused). */
export function requireTenant(tenantId: string | null): string {
  if (!tenantId) throw new AppError('BAD_REQUEST', 'admin keys must name a tenant with the X-Tally-Tenant header');
  return tenantId;
}
