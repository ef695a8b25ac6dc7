import type { Db } from '../../lib/db';
import type { LicenseStatus, Prisma } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { afterCursor, decodeCursor, pageOf } from '../../lib/cursor';
import type { AnalyticsInvalidator } from '../analytics/cache';
import type { QuotaLimitsCache } from '../quotas/enforcer';
import { type Environment, environmentOfNew } from '../environments/environment';

/** What license changes affect beyond their row: cached limits and cached analytics answers. */
export interface LicenseDeps {
  prisma: Db;
  limits: QuotaLimitsCache;
  analytics: AnalyticsInvalidator;
}

export interface CreateLicenseArgs {
  /** The environment the license lives in, fixed for its life; default: the caller's. */
  environment?: Environment;
  name: string;
  externalId?: string;
  planCode: string;
  timezone?: string;
  billingAnchor?: Date;
  stripeCustomerId?: string;
  usageTrackingEnabled?: boolean;
  metadata?: Record<string, unknown>;
}

/** The plan a license gets when none is named, and the only one a member may choose. */
export const DEFAULT_PLAN_CODE = 'trial';

/**
 * Who may change what a license pays and how much it may use. A member manages licenses but not
 * their billing: choosing the plan lifts or lowers every plan limit, moving the billing anchor
 * starts a fresh monthly period (zero used), and the Stripe customer decides who is invoiced.
 */
export interface LicenseAuthority {
  mayChangeBilling: boolean;
  /** Platform operators (admin keys) may create a license in either environment; other keys only in their own. */
  mayChooseEnvironment?: boolean;
}

const OWNER_ONLY = 'only owners may change';

function refuseBillingChange(fields: string[]): void {
  if (fields.length === 0) return;
  throw new AppError('FORBIDDEN', `${OWNER_ONLY} a license's ${fields.join(', ')}`, { fields }, {
    issues: fields.map((field) => ({ path: [field], message: `${OWNER_ONLY} a license's ${field}`, code: 'forbidden' })),
  });
}

const withPlan = { plan: { select: { code: true } } } as const;
type LicenseWithPlan = Prisma.LicenseGetPayload<{ include: typeof withPlan }>;

export function presentLicense({ plan, planId: _planId, ...license }: LicenseWithPlan) {
  return { ...license, plan: plan.code };
}

async function planIdFor(db: Db, code: string): Promise<string> {
  const plan = await db.plan.findUnique({ where: { code }, select: { id: true } });
  if (!plan) throw new AppError('BAD_REQUEST', `plan: unknown plan "${code}"`);
  return plan.id;
}

/** External ids are unique per tenant and environment: one customer may have a test and a live license. */
async function assertExternalIdFree(db: Db, tenantId: string, environment: Environment, externalId: string | undefined, exceptId?: string) {
  if (!externalId) return;
  const other = await db.license.findFirst({ where: { tenantId, environment, externalId, NOT: exceptId ? { id: exceptId } : undefined } });
  if (other) throw new AppError('CONFLICT', `externalId: "${externalId}" is already used by license ${other.id}`);
}

export async function createLicense(db: Db, tenantId: string, environment: Environment, args: CreateLicenseArgs, authority: LicenseAuthority) {
  const licenseEnvironment = environmentOfNew(environment, args.environment, authority.mayChooseEnvironment === true, 'licenses');
  if (!authority.mayChangeBilling) {
    refuseBillingChange([
      ...(args.planCode !== DEFAULT_PLAN_CODE ? ['plan'] : []),
      ...(args.billingAnchor !== undefined ? ['billingAnchor'] : []),
      ...(args.stripeCustomerId !== undefined ? ['stripeCustomerId'] : []),
    ]);
  }
  const tenant = await db.tenant.findUniqueOrThrow({ where: { id: tenantId }, select: { timezone: true } });
  await assertExternalIdFree(db, tenantId, licenseEnvironment, args.externalId);
  const license = await db.license.create({
    data: {
      tenantId,
      environment: licenseEnvironment,
      name: args.name,
      externalId: args.externalId ?? null,
      planId: await planIdFor(db, args.planCode),
      timezone: args.timezone ?? tenant.timezone,
      billingAnchor: args.billingAnchor ?? new Date(),
      stripeCustomerId: args.stripeCustomerId ?? null,
      usageTrackingEnabled: args.usageTrackingEnabled ?? true,
      metadata: (args.metadata ?? {}) as object,
    },
    include: withPlan,
  });
  return presentLicense(license);
}

/** A license of this tenant and environment that is not deleted; anything else is "not found". */
export async function getLicense(db: Db, tenantId: string, environment: Environment, id: string) {
  const license = await db.license.findFirst({ where: { id, tenantId, environment, deletedAt: null }, include: withPlan });
  if (!license) throw new AppError('NOT_FOUND', 'license not found');
  return presentLicense(license);
}

export interface ListLicensesArgs {
  status?: LicenseStatus;
  limit: number;
  cursor?: string;
}

/** Newest first, keyset-paginated on (createdAt, id) so pages stay stable under inserts. */
export async function listLicenses(db: Db, tenantId: string, environment: Environment, args: ListLicensesArgs) {
  const after = args.cursor ? decodeCursor(args.cursor, 'licenses.list') : null;
  const rows = await db.license.findMany({
    where: {
      tenantId,
      environment,
      deletedAt: null,
      ...(args.status ? { status: args.status } : {}),
      ...afterCursor(after),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: args.limit + 1,
    include: withPlan,
  });
  const page = pageOf(rows, args.limit);
  return { items: page.items.map(presentLicense), nextCursor: page.nextCursor };
}

export interface UpdateLicenseArgs {
  name?: string;
  externalId?: string | null;
  planCode?: string;
  timezone?: string;
  billingAnchor?: Date;
  stripeCustomerId?: string | null;
  usageTrackingEnabled?: boolean;
  metadata?: Record<string, unknown>;
}

/** Plan, time zone and anchor decide the limits and periods: the license's cached limits go; a new zone changes the periods analytics cut by default. */
export async function updateLicense(
  deps: LicenseDeps,
  tenantId: string,
  environment: Environment,
  id: string,
  args: UpdateLicenseArgs,
  authority: LicenseAuthority,
) {
  const db = deps.prisma;
  const current = await getLicense(db, tenantId, environment, id);
  if (!authority.mayChangeBilling) {
    // Sending the values a license already has is not a change (clients that send whole objects).
    refuseBillingChange([
      ...(args.planCode !== undefined && args.planCode !== current.plan ? ['plan'] : []),
      ...(args.billingAnchor !== undefined && args.billingAnchor.getTime() !== current.billingAnchor.getTime() ? ['billingAnchor'] : []),
      ...(args.stripeCustomerId !== undefined && args.stripeCustomerId !== current.stripeCustomerId ? ['stripeCustomerId'] : []),
    ]);
  }
  if (args.externalId) await assertExternalIdFree(db, tenantId, environment, args.externalId, id);
  const license = await db.license.update({
    where: { id },
    data: {
      name: args.name,
      externalId: args.externalId,
      planId: args.planCode ? await planIdFor(db, args.planCode) : undefined,
      timezone: args.timezone,
      billingAnchor: args.billingAnchor,
      stripeCustomerId: args.stripeCustomerId,
      usageTrackingEnabled: args.usageTrackingEnabled,
      metadata: args.metadata as object | undefined,
    },
    include: withPlan,
  });
  deps.limits.invalidate(id);
  if (args.timezone !== undefined) await deps.analytics.invalidate([tenantId]);
  return presentLicense(license);
}

/** A suspended or expired license refuses events at once: its cached entry goes, here and in every other process. */
export async function setLicenseStatus(deps: LicenseDeps, tenantId: string, environment: Environment, id: string, status: LicenseStatus) {
  await getLicense(deps.prisma, tenantId, environment, id);
  const license = await deps.prisma.license.update({ where: { id }, data: { status }, include: withPlan });
  deps.limits.invalidate(id);
  return presentLicense(license);
}

/** Soft delete: the license disappears from reads and refuses events; its usage history stays. */
export async function deleteLicense(deps: LicenseDeps, tenantId: string, environment: Environment, id: string) {
  await getLicense(deps.prisma, tenantId, environment, id);
  const license = await deps.prisma.license.update({ where: { id }, data: { deletedAt: new Date() }, include: withPlan });
  deps.limits.invalidate(id); // its events are now refused as not found
  await deps.analytics.invalidate([tenantId]); // its answers now say "not found"
  return presentLicense(license);
}
