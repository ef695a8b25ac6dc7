import type pg from 'pg';
import { Prisma, type PrismaClient } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { periodContaining, type PeriodType } from '../periods';
import { usageTotals } from './usage-totals';

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

const PERIOD_ORDER: PeriodType[] = ['daily', 'weekly', 'monthly'];

/**
 * Usage of a license in its current periods (daily and monthly in its time zone, plus any
 * period its plan limits), per usage type, beside the limit that applies: the plan's limit
 * for that usage type, else its limit for every type ("*"); none means unlimited.
 */
export async function currentUsage(
  deps: { pool: pg.Pool; prisma: PrismaClient },
  tenantId: string,
  args: { licenseId: string; usageType?: string },
  now = new Date(),
): Promise<{ usage: CurrentUsageRow[] }> {
  const license = await deps.prisma.license.findFirst({
    where: { id: args.licenseId, tenantId, deletedAt: null },
    include: { plan: { include: { limits: true } } },
  });
  if (!license) throw new AppError('NOT_FOUND', 'license not found');

  const limits = license.plan.limits;
  const periodTypes = PERIOD_ORDER.filter((p) => p === 'daily' || p === 'monthly' || limits.some((l) => l.periodType === p));
  const periods = periodTypes.map((type) => periodContaining(type, now, license.timezone, license.billingAnchor));
  const totals = await Promise.all(
    periods.map((p) => usageTotals(deps.pool, { tenantId, licenseId: license.id, usageType: args.usageType, timezone: license.timezone }, p)),
  );

  const usageTypes = new Set<string>();
  if (args.usageType) usageTypes.add(args.usageType);
  else {
    for (const t of totals) for (const type of t.keys()) usageTypes.add(type);
    for (const l of limits) if (l.usageType !== '*') usageTypes.add(l.usageType);
  }

  const usage: CurrentUsageRow[] = [];
  for (const usageType of [...usageTypes].sort()) {
    periods.forEach((period, i) => {
      const limit =
        limits.find((l) => l.usageType === usageType && l.periodType === period.type) ??
        limits.find((l) => l.usageType === '*' && l.periodType === period.type);
      const used = new Prisma.Decimal(totals[i]!.get(usageType) ?? 0);
      usage.push({
        usageType,
        period: period.type,
        periodStart: period.start.toISOString(),
        periodEnd: period.end.toISOString(),
        used: used.toFixed(),
        limit: limit ? limit.limitQuantity.toFixed() : null,
        remaining: limit ? Prisma.Decimal.max(0, limit.limitQuantity.minus(used)).toFixed() : null,
        resetAt: period.end.toISOString(),
      });
    });
  }
  return { usage };
}
