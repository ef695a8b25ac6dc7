import type pg from 'pg';
import { Prisma, type PrismaClient } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { bucketsOf, describeRange, isoInZone, rangeOf, type Granularity } from './buckets';
import type { FinalDayCache } from '../usage-reader/final-days';
import { licenseWithCoverage, seriesTotals, type ScopedLicense, type SeriesScope } from '../usage-reader/series';
import type { Environment } from '../environments/environment';

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
  /** Final days kept in the process; used when the request runs under a cache generation. */
  finalDays?: FinalDayCache;
}

/**
 * The licenses a request covers and the zone its periods are cut in (the license's, else the
 * tenant's): one license of the tenant and environment, or all of them (never the other
 * environment's: test usage never shows in live analytics, nor the reverse).
 */
export async function resolveScope(
  deps: AnalyticsDeps,
  tenantId: string,
  environment: Environment,
  args: { licenseId?: string; timezone?: string },
): Promise<{ licenses: ScopedLicense[]; timezone: string }> {
  if (args.licenseId) {
    // Straight through pg: this runs on every analytics request.
    const { rows } = await deps.pool.query<ScopedLicense>({
      name: 'analytics.license',
      text: 'SELECT id, timezone FROM licenses WHERE id = $1 AND tenant_id = $2 AND environment = $3::api_key_environment AND deleted_at IS NULL',
      values: [args.licenseId, tenantId, environment],
    });
    const license = rows[0];
    if (!license) throw new AppError('NOT_FOUND', 'license not found');
    return { licenses: [license], timezone: args.timezone ?? license.timezone };
  }
  // Tenant-wide: every license that ever belonged to the tenant, deleted ones too (their usage happened).
  const [tenant, licenses] = await Promise.all([
    deps.prisma.tenant.findUniqueOrThrow({ where: { id: tenantId }, select: { timezone: true } }),
    deps.pool.query<ScopedLicense>('SELECT id, timezone FROM licenses WHERE tenant_id = $1 AND environment = $2::api_key_environment', [tenantId, environment]),
  ]);
  return { licenses: licenses.rows, timezone: args.timezone ?? tenant.timezone };
}

function ratio(part: bigint, whole: bigint, digits: number): number | null {
  if (whole === 0n) return null;
  return new Prisma.Decimal(part.toString()).div(whole.toString()).toDecimalPlaces(digits).toNumber();
}

/**
 * Usage over a range in periods of `granularity`, exact in any zone: every period of the
 * range is present (empty ones as zeros), a DST day has 23 or 25 hourly points, and the
 * periods sum to the overview's total.
 */
export async function usageAnalytics(
  deps: AnalyticsDeps,
  tenantId: string,
  environment: Environment,
  args: UsageAnalyticsInput,
  generation: string | null = null,
) {
  let scope: SeriesScope;
  let timezone: string;
  if (args.licenseId) {
    // One license: found together with what its rollups cover, in one statement.
    const found = await licenseWithCoverage(deps.pool, tenantId, environment, args.licenseId, args, args.timezone);
    if (!found) throw new AppError('NOT_FOUND', 'license not found');
    timezone = args.timezone ?? found.license.timezone;
    scope = { tenantId, licenses: [found.license], usageType: args.usageType, coverage: found.coverage };
  } else {
    const resolved = await resolveScope(deps, tenantId, environment, args);
    timezone = resolved.timezone;
    scope = { tenantId, licenses: resolved.licenses, usageType: args.usageType };
  }
  const range = rangeOf(args.startDate, args.endDate, args.granularity, timezone);
  const buckets = bucketsOf(range, args.granularity, timezone);
  const finalDays = deps.finalDays && generation !== null ? { cache: deps.finalDays, generation } : undefined;
  const totals = await seriesTotals(deps.pool, scope, buckets, timezone, range, finalDays);
  const { total, uniqueUsers } = totals;
  return {
    period: { ...describeRange(args, timezone, range), granularity: args.granularity },
    overview: {
      totalQuantity: total.quantity,
      eventCount: Number(total.events),
      uniqueUsers,
      errorCount: Number(total.errors),
      errorRate: ratio(total.errors, total.events, 6) ?? 0,
      avgDurationMs: ratio(total.durationMsSum, total.events, 3),
    },
    timeSeries: buckets.map((bucket, i) => {
      const cell = totals.byBucket.get(i);
      return { period: isoInZone(bucket.start, timezone), quantity: cell?.quantity ?? '0', events: cell?.events ?? 0 };
    }),
    byUsageType: [...totals.byUsageType]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([usageType, c]) => ({ usageType, quantity: c.quantity, events: Number(c.events), errorCount: Number(c.errors) })),
  };
}

export type UsageAnalytics = Awaited<ReturnType<typeof usageAnalytics>>;
