import type pg from 'pg';
import { Prisma, type PrismaClient } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { bucketsOf, describeRange, isoInZone, rangeOf, type Granularity } from './buckets';
import { distinctUsers, usageSeries, type ScopedLicense, type SeriesCell } from './usage-series';

export interface UsageAnalyticsInput {
  licenseId?: string;
  usageType?: string;
  /** Local calendar dates in `timezone`, both inclusive. */
  startDate: string;
  endDate: string;
  granularity: Granularity;
  timezone?: string;
}

export interface AnalyticsDeps {
  pool: pg.Pool;
  prisma: PrismaClient;
}

/** The licenses a request covers and the zone its periods are cut in (the license's, else the tenant's). */
export async function resolveScope(
  deps: AnalyticsDeps,
  tenantId: string,
  args: { licenseId?: string; timezone?: string },
): Promise<{ licenses: ScopedLicense[]; timezone: string }> {
  if (args.licenseId) {
    const license = await deps.prisma.license.findFirst({
      where: { id: args.licenseId, tenantId, deletedAt: null },
      select: { id: true, timezone: true },
    });
    if (!license) throw new AppError('NOT_FOUND', 'license not found');
    return { licenses: [license], timezone: args.timezone ?? license.timezone };
  }
  // Tenant-wide: every license that ever belonged to the tenant, deleted ones too (their usage happened).
  const [tenant, licenses] = await Promise.all([
    deps.prisma.tenant.findUniqueOrThrow({ where: { id: tenantId }, select: { timezone: true } }),
    deps.pool.query<ScopedLicense>('SELECT id, timezone FROM licenses WHERE tenant_id = $1', [tenantId]),
  ]);
  return { licenses: licenses.rows, timezone: args.timezone ?? tenant.timezone };
}

function ratio(part: bigint, whole: bigint, digits: number): number | null {
  if (whole === 0n) return null;
  return new Prisma.Decimal(part.toString()).div(whole.toString()).toDecimalPlaces(digits).toNumber();
}

const ZERO: SeriesCell = { quantity: new Prisma.Decimal(0), events: 0n, errors: 0n, durationMsSum: 0n };

function add(a: SeriesCell, b: SeriesCell): SeriesCell {
  return {
    quantity: a.quantity.plus(b.quantity),
    events: a.events + b.events,
    errors: a.errors + b.errors,
    durationMsSum: a.durationMsSum + b.durationMsSum,
  };
}

/**
 * Usage over a range in periods of `granularity`, exact in any zone: every period of the
 * range is present (empty ones as zeros), a DST day has 23 or 25 hourly points, and the
 * periods sum to the overview's total.
 */
export async function usageAnalytics(deps: AnalyticsDeps, tenantId: string, args: UsageAnalyticsInput) {
  const { licenses, timezone } = await resolveScope(deps, tenantId, args);
  const range = rangeOf(args.startDate, args.endDate, args.granularity, timezone);
  const buckets = bucketsOf(range, args.granularity, timezone);
  const scope = { tenantId, licenses, usageType: args.usageType };
  const [series, uniqueUsers] = await Promise.all([
    usageSeries(deps.pool, scope, buckets, timezone),
    distinctUsers(deps.pool, scope, range),
  ]);

  let total = ZERO;
  const byType = new Map<string, SeriesCell>();
  const timeSeries = buckets.map((bucket, i) => {
    let cell = ZERO;
    for (const [type, c] of series.get(i) ?? []) {
      cell = add(cell, c);
      byType.set(type, add(byType.get(type) ?? ZERO, c));
    }
    total = add(total, cell);
    return { period: isoInZone(bucket.start, timezone), quantity: cell.quantity.toFixed(), events: Number(cell.events) };
  });

  return {
    period: { ...describeRange(args, timezone, range), granularity: args.granularity },
    overview: {
      totalQuantity: total.quantity.toFixed(),
      eventCount: Number(total.events),
      uniqueUsers,
      errorCount: Number(total.errors),
      errorRate: ratio(total.errors, total.events, 6) ?? 0,
      avgDurationMs: ratio(total.durationMsSum, total.events, 3),
    },
    timeSeries,
    byUsageType: [...byType]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([usageType, c]) => ({
        usageType,
        quantity: c.quantity.toFixed(),
        events: Number(c.events),
        errorCount: Number(c.errors),
      })),
  };
}

export type UsageAnalytics = Awaited<ReturnType<typeof usageAnalytics>>;
