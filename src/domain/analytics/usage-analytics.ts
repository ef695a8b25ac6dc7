import type pg from 'pg';
import { Prisma, type PrismaClient } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { bucketsOf, checkRangeDates, describeRange, isoInZone, rangeOf, type Granularity, type Span } from './buckets';
import type { FinalDayCache } from '../usage-reader/final-days';
import {
  coverageBoundsOf,
  licenseCoverageOf,
  licenseCoverageStatement,
  licenseWithCoverage,
  narrowCoverage,
  sameCoverage,
  seriesTotals,
  type LicenseCoverage,
  type ScopedLicense,
  type SeriesScope,
} from '../usage-reader/series';
import { CoverageCache } from '../usage-reader/coverage-cache';
import type { Statement } from '../usage-reader/distinct-users';
import type { Environment } from '../environments/environment';

export interface UsageAnalyticsInput {
  licenseId?: string;
  usageType?: string;
  /** Local calendar dates in `timezone`, both inclusive. */
  startDate: string;
  endDate: string;
  granularity: Granularity;
  timezone?: string;
  /** Add p50/p95/p99 of durationMs, computed from raw events (opt-in: it reads every event of the range). */
  percentiles?: boolean;
}

/** Longest range, in local days, for which percentiles are computed: every event of it is read and sorted. */
export const MAX_PERCENTILE_RANGE_DAYS = 92;

export interface DurationPercentiles {
  p50DurationMs: number | null;
  p95DurationMs: number | null;
  p99DurationMs: number | null;
}

const NO_DURATIONS: DurationPercentiles = { p50DurationMs: null, p95DurationMs: null, p99DurationMs: null };

/**
 * p50/p95/p99 of durationMs over the raw events of the range, per bucket (bucket = the last
 * bucket start at or before the event, $4 being the starts in order) and over all of it
 * (bucket NULL, the GROUPING SETS' empty set). Exact: percentile_cont, PostgreSQL's
 * continuous percentile (linear interpolation between the two nearest values, as numpy's
 * default and most APMs compute it), rounded half away from zero to 3 decimals. Events without
 * a duration do not count.
 */
const PERCENTILES_SQL = `
SELECT CASE WHEN GROUPING(b) = 0 THEN b END AS bucket,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3)::float8 AS p50,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3)::float8 AS p95,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)::numeric, 3)::float8 AS p99
  FROM (SELECT width_bucket(occurred_at, $4::timestamptz[]) AS b, duration_ms
          FROM usage_events
         WHERE tenant_id = $1 AND license_id = ANY($2::uuid[]) AND ($3::text IS NULL OR usage_type = $3)
           AND occurred_at >= $5 AND occurred_at < $6 AND duration_ms IS NOT NULL) AS e
 GROUP BY GROUPING SETS ((b), ())`;

async function durationPercentiles(pool: pg.Pool, scope: SeriesScope, buckets: Span[], range: Span) {
  const { rows } = await pool.query<{ bucket: number | null; p50: number; p95: number; p99: number }>(PERCENTILES_SQL, [
    scope.tenantId,
    scope.licenses.map((l) => l.id),
    scope.usageType ?? null,
    buckets.map((b) => new Date(b.start).toISOString()),
    new Date(range.start),
    new Date(range.end),
  ]);
  const byBucket = new Map<number, DurationPercentiles>();
  let overall = NO_DURATIONS;
  for (const r of rows) {
    const values = { p50DurationMs: r.p50, p95DurationMs: r.p95, p99DurationMs: r.p99 };
    if (r.bucket === null) overall = values;
    else byBucket.set(r.bucket - 1, values); // width_bucket counts from 1
  }
  return { overall, byBucket };
}

export interface AnalyticsDeps {
  pool: pg.Pool;
  prisma: PrismaClient;
  /** Final days kept in the process; used when the request runs under a cache generation. */
  finalDays?: FinalDayCache;
  /** Licenses' coverage kept in the process, as a guess checked in the same statement; under a cache generation too. */
  coverage?: CoverageCache;
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
 *
 * One license: its row and what its rollups cover are read in one statement, then everything
 * else in one more; with `deps.coverage` (under a generation) the first comes from what the
 * process kept and is read again beside the sums, so most answers take one round trip (see
 * CoverageCache).
 */
export async function usageAnalytics(
  deps: AnalyticsDeps,
  tenantId: string,
  environment: Environment,
  args: UsageAnalyticsInput,
  generation: string | null = null,
) {
  // The dates first: a refused range reads nothing, and leaves what the process keeps as it was.
  const days = checkRangeDates(args.startDate, args.endDate, args.granularity);
  if (args.percentiles && days > MAX_PERCENTILE_RANGE_DAYS) {
    throw new AppError('BAD_REQUEST', `endDate: with percentiles a range covers at most ${MAX_PERCENTILE_RANGE_DAYS} days (this one has ${days})`);
  }
  const finalDays = deps.finalDays && generation !== null ? { cache: deps.finalDays, generation } : undefined;
  if (!args.licenseId) {
    const resolved = await resolveScope(deps, tenantId, environment, args);
    const scope = { tenantId, licenses: resolved.licenses, usageType: args.usageType };
    return (await answerOf(deps, args, scope, resolved.timezone, finalDays)).answer;
  }
  const licenseId = args.licenseId;
  const bounds = coverageBoundsOf(args);
  const scopeOf = (found: LicenseCoverage): SeriesScope => ({ tenantId, licenses: [found.license], usageType: args.usageType, coverage: found.coverage });
  const zoneOf = (found: LicenseCoverage) => args.timezone ?? found.license.timezone;
  const kept = deps.coverage && generation !== null ? { cache: deps.coverage, key: CoverageCache.key(tenantId, environment, licenseId, args.timezone), generation } : undefined;
  const guess = kept?.cache.get(kept.key, kept.generation, bounds);
  let found: LicenseCoverage | null;
  if (kept && guess && 'found' in guess) {
    const check = licenseCoverageStatement(tenantId, environment, licenseId, bounds, args.timezone);
    const first = await answerOf(deps, args, scopeOf(guess.found), zoneOf(guess.found), finalDays, check);
    found = licenseCoverageOf(first.alongside as Parameters<typeof licenseCoverageOf>[0]);
    if (sameCoverage(found, guess.found)) return first.answer;
    kept.cache.delete(kept.key); // stale: answer again from the facts just read
  } else if (kept && guess === undefined) {
    const wide = CoverageCache.widen(bounds);
    const read = await licenseWithCoverage(deps.pool, tenantId, environment, licenseId, wide, args.timezone);
    if (read) kept.cache.set(kept.key, kept.generation, wide, read);
    found = read && (narrowCoverage(read, wide, bounds) ?? (await licenseWithCoverage(deps.pool, tenantId, environment, licenseId, bounds, args.timezone)));
  } else {
    found = await licenseWithCoverage(deps.pool, tenantId, environment, licenseId, bounds, args.timezone);
  }
  if (!found) throw new AppError('NOT_FOUND', 'license not found');
  return (await answerOf(deps, args, scopeOf(found), zoneOf(found), finalDays)).answer;
}

/** The answer over a resolved scope, and the rows of `extra` (a statement read in the same round trip as the sums). */
async function answerOf(
  deps: AnalyticsDeps,
  args: UsageAnalyticsInput,
  scope: SeriesScope,
  timezone: string,
  finalDays: { cache: FinalDayCache; generation: string } | undefined,
  extra?: Statement,
) {
  const range = rangeOf(args.startDate, args.endDate, args.granularity, timezone);
  const buckets = bucketsOf(range, args.granularity, timezone);
  const [totals, percentiles] = await Promise.all([
    seriesTotals(deps.pool, scope, buckets, timezone, finalDays, extra),
    args.percentiles ? durationPercentiles(deps.pool, scope, buckets, range) : null,
  ]);
  const { total, uniqueUsers } = totals;
  const answer = {
    // Sent as built, not re-parsed: describeRange gives the fields in periodOutput's order.
    period: describeRange(args, timezone, range, args.granularity),
    overview: {
      totalQuantity: total.quantity,
      eventCount: Number(total.events),
      uniqueUsers,
      errorCount: Number(total.errors),
      errorRate: ratio(total.errors, total.events, 6) ?? 0,
      avgDurationMs: ratio(total.durationMsSum, total.events, 3),
      ...(percentiles ? percentiles.overall : {}),
    },
    timeSeries: buckets.map((bucket, i) => {
      const cell = totals.byBucket.get(i);
      const entry = { period: isoInZone(bucket.start, timezone), quantity: cell?.quantity ?? '0', events: cell?.events ?? 0 };
      return percentiles ? { ...entry, ...(percentiles.byBucket.get(i) ?? NO_DURATIONS) } : entry;
    }),
    byUsageType: [...totals.byUsageType]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([usageType, c]) => ({ usageType, quantity: c.quantity, events: Number(c.events), errorCount: Number(c.errors) })),
  };
  return { answer, alongside: totals.alongside };
}

export type UsageAnalytics = Awaited<ReturnType<typeof usageAnalytics>>;
