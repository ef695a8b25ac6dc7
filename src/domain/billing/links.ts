import Decimal from 'decimal.js';
import { AppError } from '../../lib/errors';
import type { BillingDeps } from './deps';
import { requireConnection, type BillingMode } from './connections';
import { classifyStripeError } from './stripe-gateway';

/** A synchronous Stripe call's failure as the client's answer: Stripe's 4xx in its words, else 503. */
export function stripeCallError(error: unknown): AppError {
  const failure = classifyStripeError(error);
  if (failure.retryable) return new AppError('UNAVAILABLE', `Stripe did not answer (${failure.message}); retry later`, undefined, { cause: error });
  return new AppError('BAD_REQUEST', `Stripe refused the call: ${failure.message}`, { stripeCode: failure.code }, { cause: error });
}

export interface MeterView {
  id: string;
  mode: BillingMode;
  usageType: string;
  eventName: string;
  stripeMeterId: string | null;
  unitMultiplier: string;
  stripePriceId: string | null;
  unitAmountDecimal: string | null;
  createdAt: string;
  updatedAt: string;
}

function meterView(m: {
  id: string; mode: BillingMode; usageType: string; eventName: string; stripeMeterId: string | null; unitMultiplier: Decimal | { toString(): string };
  stripePriceId: string | null; unitAmountDecimal: { toString(): string } | null; createdAt: Date; updatedAt: Date;
}): MeterView {
  return {
    id: m.id,
    mode: m.mode,
    usageType: m.usageType,
    eventName: m.eventName,
    stripeMeterId: m.stripeMeterId,
    unitMultiplier: new Decimal(m.unitMultiplier.toString()).toFixed(),
    stripePriceId: m.stripePriceId,
    unitAmountDecimal: m.unitAmountDecimal === null ? null : new Decimal(m.unitAmountDecimal.toString()).toFixed(),
    createdAt: m.createdAt.toISOString(),
    updatedAt: m.updatedAt.toISOString(),
  };
}

/**
 * The Stripe mode a call works in: the caller's environment (test licenses are billed in test
 * mode only, live ones in live mode only). Naming the other mode is a 400 on `mode`.
 */
function modeOfCall(environment: BillingMode, requested: BillingMode | undefined): BillingMode {
  if (requested === undefined || requested === environment) return environment;
  const message = `must be "${environment}", the environment of the key`;
  throw new AppError('BAD_REQUEST', `mode: ${message}`, undefined, { issues: [{ path: ['mode'], message, code: 'custom' }] });
}

export interface UpsertMeterArgs {
  usageType: string;
  eventName: string;
  mode?: BillingMode;
  unitMultiplier?: string;
  stripeMeterId?: string;
  /** Create the meter in Stripe (sum of `value` per customer) when no stripeMeterId is given. */
  createMeter?: boolean;
  stripePriceId?: string;
  /** Cents per unit; read from the Stripe price when only stripePriceId is given. */
  unitAmountDecimal?: string;
}

/**
 * Maps a usage type to a Stripe meter. The multiplier and event name of a meter that has
 * reported usage are fixed: the ledger's units were counted with them.
 */
export async function upsertMeter(deps: Pick<BillingDeps, 'prisma' | 'box' | 'gateway'>, tenantId: string, environment: BillingMode, args: UpsertMeterArgs): Promise<MeterView> {
  const mode = modeOfCall(environment, args.mode);
  const existing = await deps.prisma.billingMeter.findUnique({ where: { tenantId_mode_usageType: { tenantId, mode, usageType: args.usageType } } });
  const multiplier = args.unitMultiplier ?? existing?.unitMultiplier.toString() ?? '1';
  if (existing && (existing.eventName !== args.eventName || !new Decimal(existing.unitMultiplier.toString()).equals(multiplier))) {
    const reported = await deps.prisma.billingReportWindow.count({ where: { tenantId, meterId: existing.id } });
    if (reported > 0) throw new AppError('CONFLICT', 'eventName and unitMultiplier of a meter that has reported usage cannot change: map the usage type in the other mode or keep them');
  }
  let stripeMeterId = args.stripeMeterId ?? existing?.stripeMeterId ?? null;
  let unitAmountDecimal = args.unitAmountDecimal ?? null;
  if ((args.createMeter && !stripeMeterId) || (args.stripePriceId && unitAmountDecimal === null)) {
    const connection = await requireConnection(deps, tenantId, mode);
    try {
      if (args.createMeter && !stripeMeterId) {
        stripeMeterId = await deps.gateway.createMeter(
          connection.secretKey,
          { displayName: args.usageType, eventName: args.eventName },
          `tally_meter_${tenantId}_${mode}_${args.eventName}`,
        );
      }
      if (args.stripePriceId && unitAmountDecimal === null) unitAmountDecimal = await deps.gateway.unitAmountOf(connection.secretKey, args.stripePriceId);
    } catch (error) {
      throw stripeCallError(error);
    }
  }
  const data = {
    eventName: args.eventName,
    stripeMeterId,
    unitMultiplier: multiplier,
    stripePriceId: args.stripePriceId ?? existing?.stripePriceId ?? null,
    unitAmountDecimal: unitAmountDecimal ?? existing?.unitAmountDecimal?.toString() ?? null,
  };
  const row = await deps.prisma.billingMeter.upsert({
    where: { tenantId_mode_usageType: { tenantId, mode, usageType: args.usageType } },
    create: { tenantId, mode, usageType: args.usageType, ...data },
    update: data,
  });
  return meterView(row);
}

export async function listMeters(deps: Pick<BillingDeps, 'prisma'>, tenantId: string, environment: BillingMode): Promise<MeterView[]> {
  const rows = await deps.prisma.billingMeter.findMany({ where: { tenantId, mode: environment }, orderBy: [{ mode: 'asc' }, { usageType: 'asc' }] });
  return rows.map(meterView);
}

/** A Stripe price standing for a plan tier: subscription webhooks with it set the license's plan. */
export async function setPlanPrice(deps: Pick<BillingDeps, 'prisma'>, tenantId: string, environment: BillingMode, args: { stripePriceId: string; plan: string; mode?: BillingMode }) {
  const mode = modeOfCall(environment, args.mode);
  await deps.prisma.billingPlanPrice.upsert({
    where: { tenantId_mode_stripePriceId: { tenantId, mode, stripePriceId: args.stripePriceId } },
    create: { tenantId, mode, stripePriceId: args.stripePriceId, planCode: args.plan },
    update: { planCode: args.plan },
  });
  const rows = await deps.prisma.billingPlanPrice.findMany({ where: { tenantId, mode }, orderBy: [{ mode: 'asc' }, { stripePriceId: 'asc' }] });
  return rows.map((r) => ({ mode: r.mode, stripePriceId: r.stripePriceId, plan: r.planCode }));
}

/**
 * Creates the license's customer in the Stripe account of the license's environment and links
 * it. The idempotency key is the license's, so a retry after a lost answer links the same customer.
 */
export async function createStripeCustomer(
  deps: Pick<BillingDeps, 'prisma' | 'box' | 'gateway'>,
  tenantId: string,
  environment: BillingMode,
  args: { licenseId: string; email?: string },
) {
  const license = await deps.prisma.license.findFirst({ where: { id: args.licenseId, tenantId, environment, deletedAt: null } });
  if (!license) throw new AppError('NOT_FOUND', 'license not found');
  if (license.stripeCustomerId) throw new AppError('CONFLICT', `license is already linked to Stripe customer ${license.stripeCustomerId}`);
  const connection = await requireConnection(deps, tenantId, license.environment);
  let customerId: string;
  try {
    customerId = await deps.gateway.createCustomer(
      connection.secretKey,
      { name: license.name, email: args.email, metadata: { tally_license_id: license.id, tally_tenant_id: tenantId, ...(license.externalId ? { tally_external_id: license.externalId } : {}) } },
      `tally_customer_${license.id}`,
    );
  } catch (error) {
    throw stripeCallError(error);
  }
  // Linked only if nobody linked another customer meanwhile.
  const { count } = await deps.prisma.license.updateMany({ where: { id: license.id, tenantId, stripeCustomerId: null }, data: { stripeCustomerId: customerId } });
  if (count === 0) throw new AppError('CONFLICT', 'license was linked to another customer meanwhile');
  return { licenseId: license.id, stripeCustomerId: customerId, mode: connection.mode };
}
