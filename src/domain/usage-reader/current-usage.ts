import type pg from 'pg';
import { Prisma, type PrismaClient } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { periodContaining, type PeriodType } from '../periods';
import { PERIOD_TYPES, limitsFor, limitsInScope, loadLicenseLimits } from '../quotas/limits';
import type { Environment } from '../environments/environment';
import { licenseUsage } from './license-usage';

export interface CurrentUsageRow {
  usageType: string;
  period: PeriodType;
  periodStart: string;
  periodEnd: string;
  used: string;
  limit: string | null;
  remaining: string | null;
  resetAt: string;
}

/**
 * Usage of a license in its current periods (daily and monthly in its time zone, plus any
 * period a limit applies to), per usage type, beside the limit that applies: the license's
 * own threshold for that usage type and period, else its plan's limit for the type, else
 * the plan's limit for every type ("*"); none means unlimited.
 */
export async function currentUsage(
  deps: { pool: pg.Pool; prisma: PrismaClient },
  tenantId: string,
  environment: Environment,
  args: { licenseId: string; usageType?: string },
  now = new Date(),
): Promise<{ usage: CurrentUsageRow[] }> {
  const limits = limitsInScope(await loadLicenseLimits(deps.prisma, tenantId, args.licenseId), tenantId, environment);
  if (!limits) throw new AppError('NOT_FOUND', 'license not found');

  const limited = new Set<PeriodType>([...limits.planLimits.map((l) => l.periodType), ...limits.thresholds.map((t) => t.periodType)]);
  const periodTypes = PERIOD_TYPES.filter((p) => p === 'daily' || p === 'monthly' || limited.has(p));
  const periods = periodTypes.map((type) => periodContaining(type, now, limits.timezone, limits.billingAnchor));
  const totals = await Promise.all(
    periods.map((p) => licenseUsage(deps.pool, { tenantId, licenseId: limits.licenseId, usageType: args.usageType, timezone: limits.timezone }, p)),
  );

  const usageTypes = new Set<string>();
  if (args.usageType) usageTypes.add(args.usageType);
  else {
    for (const t of totals) for (const type of t.keys()) usageTypes.add(type);
    for (const l of limits.planLimits) if (l.usageType !== '*') usageTypes.add(l.usageType);
    for (const t of limits.thresholds) usageTypes.add(t.usageType);
  }

  const usage: CurrentUsageRow[] = [];
  for (const usageType of [...usageTypes].sort()) {
    const applying = limitsFor(limits, usageType);
    periods.forEach((period, i) => {
      const limit = applying.find((l) => l.periodType === period.type);
      const used = new Prisma.Decimal(totals[i]!.get(usageType) ?? 0);
      usage.push({
        usageType,
        period: period.type,
        periodStart: period.start.toISOString(),
        periodEnd: period.end.toISOString(),
        used: used.toFixed(),
        limit: limit ? limit.limit.toFixed() : null,
        remaining: limit ? Prisma.Decimal.max(0, limit.limit.minus(used)).toFixed() : null,
        resetAt: period.end.toISOString(),
      });
    });
  }
  return { usage };
}
