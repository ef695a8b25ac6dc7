import type pg from 'pg';
import { Prisma } from '../../generated/prisma/client';
import type { Span } from './buckets';
import { asWidthBuckets, planSources, type Coverage, type SourcePlan } from './source-plan';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Local dates can be up to 26 hours from their UTC date (UTC+14 to UTC-12). */
const ZONE_SLACK_MS = 2 * DAY_MS;

export interface ScopedLicense {
  id: string;
  timezone: string;
}

/** Sums of one usage type in one bucket. Quantities are exact decimals. */
export interface SeriesCell {
  quantity: Prisma.Decimal;
  events: bigint;
  errors: bigint;
  durationMsSum: bigint;
}

/** bucket index → usage type (or license id, when grouped by license) → sums. */
export type Series = Map<number, Map<string, SeriesCell>>;

export interface SeriesOptions {
  /** Use daily rows where they serve (false when the caller cannot say which zone the license is in). */
  allowDaily?: boolean;
  groupBy?: 'usageType' | 'license';
}

export interface SeriesScope {
  tenantId: string;
  licenses: ScopedLicense[];
  usageType?: string;
}

/**
 * Exact sums per bucket and usage type for a set of licenses, read from daily rollups for
 * final local days (when the buckets are cut in the licenses' own zone), hourly rollups for
 * rolled-up unmarked hours, and raw events for the rest. A new event counts at once; a late
 * event counts at once too, because it marks its hour and a marked hour is read raw.
 *
 * Licenses are grouped so that each group shares its coverage: licenses with late-event marks
 * in the range, or with daily rows cut in a zone they are no longer in, go alone; the others
 * go in one group per "daily rows usable or not".
 */
export async function usageSeries(
  pool: pg.Pool,
  scope: SeriesScope,
  buckets: Span[],
  zone: string,
  { allowDaily = true, groupBy = 'usageType' }: SeriesOptions = {},
): Promise<Series> {
  const series: Series = new Map();
  if (buckets.length === 0 || scope.licenses.length === 0) return series;
  const range = { start: buckets[0]!.start, end: buckets.at(-1)!.end };
  const ids = scope.licenses.map((l) => l.id);
  const dailyCandidates = allowDaily ? scope.licenses.filter((l) => l.timezone === zone).map((l) => l.id) : [];

  const [windows, dirty, foreign] = await Promise.all([
    windowIslands(pool, range),
    pool.query<{ license_id: string; hour: Date }>(
      `SELECT license_id, hour FROM rollup_dirty_hours
        WHERE tenant_id = $1 AND license_id = ANY($2::uuid[]) AND hour >= $3 AND hour < $4`,
      [scope.tenantId, ids, new Date(Math.floor(range.start / HOUR_MS) * HOUR_MS), new Date(range.end)],
    ),
    dailyCandidates.length === 0
      ? Promise.resolve({ rows: [] as { license_id: string }[] })
      : pool.query<{ license_id: string }>(
          // Daily rows cut in another zone (the license moved): its days are read from hourly rows.
          `SELECT DISTINCT r.license_id FROM usage_rollups_daily r
             JOIN licenses l ON l.id = r.license_id AND l.tenant_id = r.tenant_id
            WHERE r.tenant_id = $1 AND r.license_id = ANY($2::uuid[]) AND r.date >= $3::date AND r.date <= $4::date
              AND r.timezone <> l.timezone`,
          [scope.tenantId, dailyCandidates, isoDay(range.start - ZONE_SLACK_MS), isoDay(range.end + ZONE_SLACK_MS)],
        ),
  ]);

  const dirtyBy = new Map<string, Set<number>>();
  for (const r of dirty.rows) {
    const set = dirtyBy.get(r.license_id) ?? new Set<number>();
    set.add(r.hour.getTime());
    dirtyBy.set(r.license_id, set);
  }
  const movedZone = new Set(foreign.rows.map((r) => r.license_id));
  const dailyOk = new Set(dailyCandidates.filter((id) => !movedZone.has(id)));

  const groups: { licenseIds: string[]; coverage: Coverage }[] = [];
  const plainDaily: string[] = [];
  const plainHourly: string[] = [];
  for (const id of ids) {
    const marks = dirtyBy.get(id);
    if (marks) {
      groups.push({ licenseIds: [id], coverage: { ...windows, dirtyHours: marks, dailyZone: dailyOk.has(id) ? zone : null } });
    } else (dailyOk.has(id) ? plainDaily : plainHourly).push(id);
  }
  if (plainDaily.length) groups.push({ licenseIds: plainDaily, coverage: { ...windows, dirtyHours: new Set(), dailyZone: zone } });
  if (plainHourly.length) groups.push({ licenseIds: plainHourly, coverage: { ...windows, dirtyHours: new Set(), dailyZone: null } });

  const results = await Promise.all(
    groups.map((g) =>
      readPlan(pool, { tenantId: scope.tenantId, licenseIds: g.licenseIds, usageType: scope.usageType }, planSources(buckets, g.coverage), groupBy),
    ),
  );
  for (const rows of results) {
    for (const row of rows) {
      const byType = series.get(row.bucket) ?? new Map<string, SeriesCell>();
      const key = groupBy === 'license' ? row.license_id : row.usage_type;
      const cell = byType.get(key);
      const add: SeriesCell = {
        quantity: new Prisma.Decimal(row.quantity),
        events: BigInt(row.events),
        errors: BigInt(row.errors),
        durationMsSum: BigInt(row.duration_ms_sum),
      };
      byType.set(
        key,
        cell
          ? {
              quantity: cell.quantity.plus(add.quantity),
              events: cell.events + add.events,
              errors: cell.errors + add.errors,
              durationMsSum: cell.durationMsSum + add.durationMsSum,
            }
          : add,
      );
      series.set(row.bucket, byType);
    }
  }
  return series;
}

function isoDay(ms: number): string {
  return new Date(Math.floor(ms / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
}

/** Done hourly and daily windows around the range, as islands (gaps-and-islands in SQL, so a year is a row or two). */
async function windowIslands(pool: pg.Pool, range: Span): Promise<Pick<Coverage, 'hourlyDone' | 'dailyDone'>> {
  const { rows } = await pool.query<{ kind: string; first: Date; last: Date }>(
    `SELECT kind, min(start) AS first, max(start) AS last FROM (
       SELECT kind, start,
              start - (row_number() OVER (PARTITION BY kind ORDER BY start)) *
                      CASE kind WHEN 'hourly' THEN interval '1 hour' ELSE interval '1 day' END AS island
         FROM rollup_windows
        WHERE (kind = 'hourly' AND start >= $1 AND start < $2) OR (kind = 'daily' AND start >= $3 AND start < $4)
     ) w GROUP BY kind, island`,
    [
      new Date(Math.floor(range.start / HOUR_MS) * HOUR_MS),
      new Date(range.end),
      new Date(Math.floor(range.start / DAY_MS) * DAY_MS - ZONE_SLACK_MS),
      new Date(range.end + ZONE_SLACK_MS),
    ],
  );
  const hourlyDone = rows.filter((r) => r.kind === 'hourly').map((r) => ({ start: r.first.getTime(), end: r.last.getTime() + HOUR_MS }));
  const dailyDone = rows.filter((r) => r.kind === 'daily').map((r) => ({ start: r.first.getTime(), end: r.last.getTime() + DAY_MS }));
  return { hourlyDone, dailyDone };
}

interface PlanRow {
  bucket: number;
  license_id: string;
  usage_type: string;
  quantity: string;
  events: string;
  errors: string;
  duration_ms_sum: string;
}

/**
 * One statement per group: each source is one index range scan whose rows are put in their
 * bucket by width_bucket over the planned spans (rows outside every span get no bucket).
 */
async function readPlan(
  pool: pg.Pool,
  scope: { tenantId: string; licenseIds: string[]; usageType?: string },
  plan: SourcePlan,
  groupBy: 'usageType' | 'license',
): Promise<PlanRow[]> {
  const parts: string[] = [];
  const params: unknown[] = [scope.tenantId, scope.licenseIds, scope.usageType ?? null];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const scoped = (alias: string) => `${alias}.tenant_id = $1 AND ${alias}.license_id = ANY($2::uuid[]) AND ($3::text IS NULL OR ${alias}.usage_type = $3)`;

  if (plan.daily.length) {
    const dates = param(plan.daily.map((d) => d.date));
    const buckets = param(plan.daily.map((d) => d.bucket));
    parts.push(`SELECT d.bucket, r.license_id, r.usage_type, r.quantity, r.event_count, r.error_count, r.duration_ms_sum
                  FROM usage_rollups_daily r JOIN unnest(${dates}::date[], ${buckets}::int[]) AS d(date, bucket) ON r.date = d.date
                 WHERE ${scoped('r')} AND r.date >= ${param(plan.daily[0]!.date)}::date AND r.date <= ${param(plan.daily.at(-1)!.date)}::date`);
  }
  if (plan.hourly.length) {
    const wb = asWidthBuckets(plan.hourly);
    const points = param(wb.points.map((p) => new Date(p)));
    const map = param(wb.map);
    parts.push(`SELECT b.bucket, r.license_id, r.usage_type, r.quantity, r.event_count, r.error_count, r.duration_ms_sum
                  FROM usage_rollups_hourly r
                 CROSS JOIN LATERAL (SELECT (${map}::int[])[width_bucket(r.hour, ${points}::timestamptz[])] AS bucket) b
                 WHERE ${scoped('r')} AND r.hour >= ${param(new Date(wb.points[0]!))} AND r.hour < ${param(new Date(wb.points.at(-1)!))}
                   AND b.bucket IS NOT NULL`);
  }
  if (plan.raw.length) {
    const wb = asWidthBuckets(plan.raw);
    const points = param(wb.points.map((p) => new Date(p)));
    const map = param(wb.map);
    parts.push(`SELECT b.bucket, e.license_id, e.usage_type, e.quantity, 1 AS event_count,
                       CASE WHEN e.status_code >= 400 THEN 1 ELSE 0 END AS error_count, coalesce(e.duration_ms, 0) AS duration_ms_sum
                  FROM usage_events e
                 CROSS JOIN LATERAL (SELECT (${map}::int[])[width_bucket(e.occurred_at, ${points}::timestamptz[])] AS bucket) b
                 WHERE ${scoped('e')} AND e.occurred_at >= ${param(new Date(wb.points[0]!))} AND e.occurred_at < ${param(new Date(wb.points.at(-1)!))}
                   AND b.bucket IS NOT NULL`);
  }
  if (parts.length === 0) return [];
  const key = groupBy === 'license' ? 'license_id' : 'usage_type';
  const { rows } = await pool.query<PlanRow>(
    `SELECT bucket, ${key}, sum(quantity)::text AS quantity, sum(event_count)::text AS events,
            sum(error_count)::text AS errors, sum(duration_ms_sum)::text AS duration_ms_sum
       FROM (${parts.join('\n UNION ALL \n')}) x GROUP BY bucket, ${key}`,
    params,
  );
  return rows;
}

/** Distinct non-null user ids among the raw events of the range (raw events are kept USAGE_EVENT_RETENTION_DAYS). */
export async function distinctUsers(pool: pg.Pool, scope: SeriesScope, range: Span): Promise<number> {
  if (scope.licenses.length === 0) return 0;
  const { rows } = await pool.query<{ n: string }>(
    `SELECT count(DISTINCT user_id)::text AS n FROM usage_events
      WHERE tenant_id = $1 AND license_id = ANY($2::uuid[]) AND ($3::text IS NULL OR usage_type = $3)
        AND occurred_at >= $4 AND occurred_at < $5`,
    [scope.tenantId, scope.licenses.map((l) => l.id), scope.usageType ?? null, new Date(range.start), new Date(range.end)],
  );
  return Number(rows[0]!.n);
}
