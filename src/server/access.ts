import type { ApiKeyRole } from '../generated/prisma/client';
import { AppError } from '../lib/errors';
import { isUuid } from '../lib/uuid';
import { recordAudit } from '../domain/audit/audit-log';
import { sdkVersionFromUserAgent } from '../domain/api-keys/key-material';
import type { Principal } from '../domain/api-keys/authenticator';
import { type Environment, isEnvironment } from '../domain/environments/environment';
import { limitHeaders, refusalMessage } from './limit-headers';
import type { Services } from './services';

export type TenantRole = Exclude<ApiKeyRole, 'admin'>;

/** Who may pass a door: admins always (platform doors are theirs alone), else these tenant roles. */
export interface AccessRule {
  /** Tenant roles allowed besides admin, who may call everything. */
  roles: readonly TenantRole[];
  /**
   * tenant: works inside one tenant (an admin names it with X-Tally-Tenant);
   * platform: admin-only platform operations; either: a tenant's view, or everything for an admin.
   */
  scope: 'tenant' | 'platform' | 'either';
}

/** What a door knows of the caller. */
export interface Caller {
  authorization: string | undefined;
  ip: string | null;
  userAgent: string | null;
  /** X-Tally-Tenant: the tenant an admin key acts on. */
  actingTenant: string | undefined;
  /** X-Tally-Environment: the environment an admin key acts in (its own by default). */
  actingEnvironment?: string | undefined;
}

export interface Access {
  principal: Principal;
  /** The tenant the call works in; null only for an admin on a platform or `either` door without X-Tally-Tenant. */
  tenantId: string | null;
  /**
   * The environment the call works in: the key's own (tk_live_ / tk_test_). Only an admin key
   * may name the other with X-Tally-Environment; for other keys the header does not count.
   */
  environment: Environment;
}

/** A refused caller: the AppError every door answers, and the headers that go with it (429s). */
export class AccessRefused extends AppError {
  constructor(
    code: 'UNAUTHORIZED' | 'FORBIDDEN' | 'NOT_FOUND' | 'BAD_REQUEST' | 'TOO_MANY_REQUESTS',
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(code, message);
    this.name = 'AccessRefused';
  }
}

/**
 * The one access check of every front door (tRPC procedures, the export routes, the queue
 * dashboard): the key authenticated (throttled and rate-limited by the authenticator, which
 * audits refusals), the role held to the door's rule (a refusal audited), and the tenant the
 * call works in resolved (admins name it with X-Tally-Tenant). Refusals throw AccessRefused.
 */
export async function resolveAccess(services: Services, caller: Caller, rule: AccessRule, target: string): Promise<Access> {
  const outcome = await services.authenticator.authenticate(caller.authorization, {
    address: caller.ip,
    userAgent: caller.userAgent,
    target,
    sdkVersion: sdkVersionFromUserAgent(caller.userAgent ?? undefined),
  });
  if (!outcome.ok) {
    // refusals are audited by the authenticator, one row per address and window
    if (outcome.reason === 'throttled' || outcome.reason === 'rate_limited') {
      throw new AccessRefused('TOO_MANY_REQUESTS', refusalMessage(outcome.reason, outcome.limit), limitHeaders(outcome.limit));
    }
    throw new AccessRefused('UNAUTHORIZED', refusalMessage(outcome.reason));
  }
  const principal = outcome.principal;
  const isAdmin = principal.role === 'admin';
  const allowed = isAdmin || (rule.scope !== 'platform' && (rule.roles as readonly string[]).includes(principal.role));
  if (!allowed) {
    // An audit write must not turn a refusal into a failure; a lost row is logged.
    void recordAudit(services.db.prisma, {
      tenantId: principal.tenantId,
      action: target,
      outcome: 'denied',
      actorKeyId: principal.keyId,
      actorPrefix: principal.prefix,
      ip: caller.ip,
      userAgent: caller.userAgent,
      metadata: { role: principal.role },
    }).catch((err: unknown) => services.logger.error({ err, action: target }, 'audit write failed'));
    throw new AccessRefused('FORBIDDEN', `role "${principal.role}" may not call ${target}`);
  }

  let environment: Environment = principal.environment;
  if (isAdmin && caller.actingEnvironment !== undefined) {
    if (!isEnvironment(caller.actingEnvironment)) throw new AccessRefused('BAD_REQUEST', 'X-Tally-Environment: must be "live" or "test"');
    environment = caller.actingEnvironment;
  }

  let tenantId: string | null = principal.tenantId;
  if (isAdmin && rule.scope !== 'platform') {
    const acting = caller.actingTenant;
    if (acting !== undefined) {
      const exists = isUuid(acting) && (await services.db.prisma.tenant.count({ where: { id: acting } })) > 0;
      if (!exists) throw new AccessRefused('NOT_FOUND', 'X-Tally-Tenant: tenant not found');
      tenantId = acting;
    } else if (rule.scope === 'tenant') {
      throw new AccessRefused('BAD_REQUEST', 'admin keys must name a tenant with the X-Tally-Tenant header');
    }
  }
  return { principal, tenantId, environment };
}
