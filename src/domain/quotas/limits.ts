import { Prisma, type PrismaClient } from '../../generated/prisma/client';
import type { PeriodType } from '../periods';
import { MICRO_DECIMAL } from '../../lib/micro';
import type { Environment } from '../environments/environment';

export const DEFAULT_WARNING_LEVELS = [50, 80, 95] as const;

/** The limit that applies to one usage type and period of a license. */
export interface EffectiveLimit {
  periodType: PeriodType;
  limit: Prisma.Decimal;
  gracePercentage: Prisma.Decimal;
  allowOverage: boolean;
  overageRateCents: number;
  /** Ascending, always ending with 100. */
  levels: number[];
  thresholdId: string | null;
  source: 'threshold' | 'plan';
}

export interface LicenseLimits {
  tenantId: string;
  licenseId: string;
  /** Read with the license: a key of the other environment finds no limits (404), not this license's. */
  environment: Environment;
  timezone: string;
  billingAnchor: Date;
  planLimits: { usageType: string; periodType: PeriodType; limitQuantity: Prisma.Decimal }[];
  thresholds: {
    id: string;
    usageType: string;
    periodType: PeriodType;
    limitQuantity: Prisma.Decimal;
    gracePercentage: Prisma.Decimal;
    allowOverage: boolean;
    overageRateCents: number;
    warningLevels: number[];
  }[];
}

export const PERIOD_TYPES: readonly PeriodType[] = ['daily', 'weekly', 'monthly'];

export function levelsOf(warningLevels: readonly number[]): number[] {
  return [...new Set([...warningLevels.filter((l) => l > 0 && l < 100), 100])].sort((a, b) => a - b);
}

/** A license of this tenant that is not deleted, with its plan's limits and its own thresholds; null otherwise. */
export async function loadLicenseLimits(prisma: PrismaClient, tenantId: string, licenseId: string): Promise<LicenseLimits | null> {
  const [license, thresholds] = await Promise.all([
    prisma.license.findFirst({
      where: { id: licenseId, tenantId, deletedAt: null },
      select: { timezone: true, billingAnchor: true, environment: true, plan: { select: { limits: true } } },
    }),
    prisma.usageThreshold.findMany({ where: { tenantId, licenseId } }),
  ]);
  if (!license) return null;
  return {
    tenantId,
    licenseId,
    environment: license.environment,
    timezone: license.timezone,
    billingAnchor: license.billingAnchor,
    planLimits: license.plan.limits,
    thresholds,
  };
}

/** The limits of a license a caller of this tenant and environment may see; null for any other license. */
export function limitsInScope(limits: LicenseLimits | null, tenantId: string, environment: Environment): LicenseLimits | null {
  return limits && limits.tenantId === tenantId && limits.environment === environment ? limits : null;
}

/**
 * Per period type, the limit that applies to `usageType`: the license's own threshold for
 * that usage type and period, else the plan's limit for that usage type, else the plan's
 * limit for every type ("*"). A period type with none of these is unlimited.
 */
export function limitsFor(limits: LicenseLimits, usageType: string): EffectiveLimit[] {
  const out: EffectiveLimit[] = [];
  for (const periodType of PERIOD_TYPES) {
    const own = limits.thresholds.find((t) => t.usageType === usageType && t.periodType === periodType);
    if (own) {
      out.push({
        periodType,
        limit: own.limitQuantity,
        gracePercentage: own.gracePercentage,
        allowOverage: own.allowOverage,
        overageRateCents: own.overageRateCents,
        levels: levelsOf(own.warningLevels),
        thresholdId: own.id,
        source: 'threshold',
      });
      continue;
    }
    const plan =
      limits.planLimits.find((l) => l.usageType === usageType && l.periodType === periodType) ??
      limits.planLimits.find((l) => l.usageType === '*' && l.periodType === periodType);
    if (plan) {
      out.push({
        periodType,
        limit: plan.limitQuantity,
        gracePercentage: new Prisma.Decimal(0),
        allowOverage: false,
        overageRateCents: 0,
        levels: levelsOf(DEFAULT_WARNING_LEVELS),
        thresholdId: null,
        source: 'plan',
      });
    }
  }
  return out;
}

/** limit × (1 + grace%): usage may reach it, never pass it (for a hard limit). */
export function capOf(limit: EffectiveLimit): Prisma.Decimal {
  return limit.limit.times(limit.gracePercentage.div(100).plus(1));
}

/** The usage (in millionths) at which `level` percent of the limit is reached: rounded up. */
export function levelMicro(limit: EffectiveLimit, level: number): bigint {
  return BigInt(limit.limit.times(MICRO_DECIMAL).times(level).div(100).ceil().toFixed());
}

/** The highest level reached at `used`, 0 when none. */
export function levelAt(limit: EffectiveLimit, used: bigint): number {
  let reached = 0;
  for (const level of limit.levels) if (levelMicro(limit, level) <= used) reached = level;
  return reached;
}

/** Integer cents for `quantity` units at `rateCents` each, half-up. */
export function feeCents(quantity: Prisma.Decimal, rateCents: number): bigint {
  return BigInt(quantity.times(rateCents).toDecimalPlaces(0, Prisma.Decimal.ROUND_HALF_UP).toFixed());
}
