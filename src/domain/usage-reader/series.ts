import { createHash } from 'node:crypto';
import type pg from 'pg';
import { pgArray } from '../../lib/pg-array';
import { Prisma } from '../../generated/prisma/client';
import type { Span } from '../analytics/buckets';
import { asWidthBuckets, planSources, type Coverage, type SourcePlan } from './source-plan';
import { CellSum, type FinalDayCache, type MicroCell } from './final-days';
import { distinctUsersStatement, type Statement } from './distinct-users';
import { addExact, compact, formatMicro, parseMicro } from '../../lib/micro';
import { DAY_MS, HOUR_MS } from '../../lib/time';
import type { Environment } from '../environments/environment';

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
  /** Coverage facts already read with the scope's license (licenseWithCoverage), around the range. */
  coverage?: CoverageFacts;
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
  const key = groupBy === 'license' ? 'license_id' : 'usage_type';
  const results = await readGroups<PlanRow>(
    pool,
    scope,
    buckets,
    zone,
    allowDaily,
    (union) => `SELECT bucket, ${key}, sum(quantity)::text AS quantity, sum(event_count)::text AS events,
                       sum(error_count)::text AS errors, sum(duration_ms_sum)::text AS duration_ms_sum
                  FROM (${union}) x GROUP BY bucket, ${key}`,
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

/**
 * The licenses of a scope in groups that share their coverage (see usageSeries), each with
 * the plan of where every piece of every bucket is read from.
 */
export async function planGroups(
  pool: pg.Pool,
  scope: SeriesScope,
  buckets: Span[],
  zone: string,
  allowDaily: boolean,
): Promise<{ licenseIds: string[]; plan: SourcePlan }[]> {
  const range = { start: buckets[0]!.start, end: buckets.at(-1)!.end };
  const ids = scope.licenses.map((l) => l.id);
  const dailyCandidates = allowDaily ? scope.licenses.filter((l) => l.timezone === zone).map((l) => l.id) : [];

  const { windows, dirty, foreign } = scope.coverage ?? (await coverageFacts(pool, scope.tenantId, ids, dailyCandidates, range, zone));

  const dirtyBy = new Map<string, Set<number>>();
  for (const r of dirty) {
    const set = dirtyBy.get(r.license_id) ?? new Set<number>();
    set.add(r.hour.getTime());
    dirtyBy.set(r.license_id, set);
  }
  const movedZone = new Set(foreign);
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

  return groups.map((group) => ({ licenseIds: group.licenseIds, plan: planSources(buckets, group.coverage) }));
}

type PlannedGroup = Awaited<ReturnType<typeof planGroups>>[number];

/**
 * Plans the scope's groups and runs `aggregate` over each group's planned sources: one
 * statement per group, rows per group. `aggregate` gets the union of the group's sources,
 * a function that adds a parameter and returns its placeholder, and the group's position.
 */
async function readGroups<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  scope: SeriesScope,
  buckets: Span[],
  zone: string,
  allowDaily: boolean,
  aggregate: (union: string, param: (value: unknown) => string, index: number) => string,
): Promise<R[][]> {
  return runGroups(pool, scope, await planGroups(pool, scope, buckets, zone, allowDaily), aggregate);
}

function runGroups<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  scope: SeriesScope,
  groups: PlannedGroup[],
  aggregate: (union: string, param: (value: unknown) => string, index: number) => string,
): Promise<R[][]> {
  return Promise.all(
    groups.map(async (g, index) => {
      const statement = groupStatement(scope, g, aggregate, index);
      if (!statement) return [];
      return (await pool.query<R>({ name: statementName(statement.text), ...statement })).rows;
    }),
  );
}

/** What runGroups runs for one group; null when its plan reads nothing. */
function groupStatement(
  scope: SeriesScope,
  group: PlannedGroup,
  aggregate: (union: string, param: (value: unknown) => string, index: number) => string,
  index: number,
): Statement | null {
  const union = planUnion({ tenantId: scope.tenantId, licenseIds: group.licenseIds, usageType: scope.usageType }, group.plan);
  if (!union) return null;
  const param = (value: unknown) => `$${union.params.push(value)}`;
  return { text: aggregate(union.sql, param, index), values: union.params };
}

/** PostgreSQL's limit on a statement's parameters (a 16-bit count in the bind message). */
const MAX_BIND_PARAMETERS = 65_535;

/**
 * Several statements in one round trip, and so in one snapshot: each runs as a subquery whose
 * rows come back as one JSON array (its parameters numbered after the previous ones'). Their
 * columns must come through JSON unchanged: text, integers, timestamps (as ISO text), nulls;
 * exact decimals go as text.
 */
export async function queryTogether(pool: pg.Pool, parts: readonly Statement[]): Promise<unknown[][]> {
  if (parts.length === 0) return [];
  if (parts.reduce((n, p) => n + p.values.length, 0) > MAX_BIND_PARAMETERS) throw new Error('queryTogether: more parameters than one statement takes');
  const values: unknown[] = [];
  const columns = parts.map((part, i) => {
    const offset = values.length;
    values.push(...part.values);
    const text = offset === 0 ? part.text : part.text.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + offset}`);
    return `(SELECT coalesce(json_agg(r), '[]') FROM (${text}) r) AS p${i}`;
  });
  const text = `SELECT ${columns.join(',\n')}`;
  const { rows } = await pool.query<Record<string, unknown[]>>({ name: statementName(text), text, values });
  return parts.map((_, i) => rows[0]![`p${i}`]!);
}

/**
 * A name per statement text, so each pooled connection parses a statement once (unnamed, the
 * year's statement cost PostgreSQL ~0.45 ms more per run: p95 5.02 → 10.07 ms in the benchmark).
 * PostgreSQL then chooses per run between a plan for the values and a generic one; on the
 * benchmark's data it takes generic plans for some and they are cheaper there (forcing plans for
 * the values cost p50 +56%), while on skewed data a generic plan of these statements can lose its
 * bounds (README, Benchmarks). The texts differ only by which
 * sources a plan reads and how many of them, so there are few (never more than `limit` remembered).
 */
const statementNames = new Map<string, string>();
function statementName(text: string, limit = 1_000): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    if (statementNames.size >= limit) statementNames.clear();
    name = `analytics.read.${createHash('sha1').update(text).digest('hex')}`;
    statementNames.set(text, name);
  }
  return name;
}

function isoDay(ms: number): string {
  return new Date(Math.floor(ms / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
}

/** Done windows as islands, late-event marks, and licenses whose daily rows were cut in another zone. */
export interface CoverageFacts {
  windows: { hourlyDone: Span[]; dailyDone: Span[] };
  dirty: { license_id: string; hour: Date }[];
  foreign: string[];
}

interface CoverageRow {
  what: 'hourly' | 'daily' | 'dirty' | 'moved' | 'license';
  license_id: string | null;
  /** A Date from pg, ISO text when the row came through queryTogether's JSON. */
  first: Date | string | null;
  last: Date | string | null;
}

/** Done hourly and daily windows between the bounds as islands (gaps-and-islands, so a year is a row or two). */
const WINDOW_ISLANDS = `
  SELECT kind AS what, NULL::uuid AS license_id, min(start) AS first, max(start) AS last
    FROM (SELECT kind, start,
                 start - (row_number() OVER (PARTITION BY kind ORDER BY start)) *
                         CASE kind WHEN 'hourly' THEN interval '1 hour' ELSE interval '1 day' END AS island
            FROM rollup_windows
           WHERE (kind = 'hourly' AND start >= $3 AND start < $4) OR (kind = 'daily' AND start >= $5 AND start < $6)) w
   GROUP BY kind, island`;

function factsOf(rows: CoverageRow[]): CoverageFacts {
  const islands = (kind: 'hourly' | 'daily', width: number): Span[] =>
    rows.filter((r) => r.what === kind).map((r) => ({ start: new Date(r.first!).getTime(), end: new Date(r.last!).getTime() + width }));
  return {
    windows: { hourlyDone: islands('hourly', HOUR_MS), dailyDone: islands('daily', DAY_MS) },
    dirty: rows.filter((r) => r.what === 'dirty').map((r) => ({ license_id: r.license_id!, hour: new Date(r.first!) })),
    foreign: rows.filter((r) => r.what === 'moved').map((r) => r.license_id!),
  };
}

/**
 * What the plan needs to know, in one prepared statement: done hourly and daily windows
 * around the range as islands, the hours late events marked, and the licenses whose daily
 * rows in the range were cut in another zone (the license moved: its days are read from
 * hourly rows).
 */
async function coverageFacts(pool: pg.Pool, tenantId: string, ids: string[], dailyCandidates: string[], range: Span, zone: string): Promise<CoverageFacts> {
  const { rows } = await pool.query<CoverageRow>({
    name: 'analytics.coverage',
    text: `${WINDOW_ISLANDS}
           UNION ALL
           SELECT 'dirty', license_id, hour, hour FROM rollup_dirty_hours
            WHERE tenant_id = $1 AND license_id = ANY($2::uuid[]) AND hour >= $3 AND hour < $4
           UNION ALL
           SELECT DISTINCT 'moved', license_id, NULL::timestamptz, NULL::timestamptz FROM usage_rollups_daily
            WHERE tenant_id = $1 AND license_id = ANY($7::uuid[]) AND date >= $8::date AND date <= $9::date AND timezone <> $10`,
    values: [
      tenantId,
      ids,
      new Date(Math.floor(range.start / HOUR_MS) * HOUR_MS),
      new Date(range.end),
      new Date(Math.floor(range.start / DAY_MS) * DAY_MS - ZONE_SLACK_MS),
      new Date(range.end + ZONE_SLACK_MS),
      dailyCandidates,
      isoDay(range.start - ZONE_SLACK_MS),
      isoDay(range.end + ZONE_SLACK_MS),
      zone,
    ],
  });
  return factsOf(rows);
}

/** A license of the tenant with the coverage facts around a range (licenseWithCoverage). */
export interface LicenseCoverage {
  license: ScopedLicense;
  coverage: CoverageFacts;
}

/** Local dates `first`..`afterLast` (UTC midnights, ms) of a range, in any zone: what licenseWithCoverage reads around. */
export interface CoverageBounds {
  first: number;
  afterLast: number;
}

export function coverageBoundsOf(dates: { startDate: string; endDate: string }): CoverageBounds {
  return { first: Date.parse(dates.startDate), afterLast: Date.parse(dates.endDate) + DAY_MS };
}

/**
 * The instants and dates licenseWithCoverage reads between: hourly windows and late-event marks
 * in [hoursFrom, hoursTo), daily windows in [daysFrom, daysTo), daily rows' zones over the dates
 * [datesFrom, datesTo]. Every bound is a UTC midnight, so islands cut at them stay whole windows.
 */
function windowBounds({ first, afterLast }: CoverageBounds) {
  return {
    hoursFrom: first - DAY_MS,
    hoursTo: afterLast + DAY_MS,
    daysFrom: first - DAY_MS - ZONE_SLACK_MS,
    daysTo: afterLast + DAY_MS + ZONE_SLACK_MS,
    datesFrom: isoDay(first - DAY_MS - ZONE_SLACK_MS),
    datesTo: isoDay(afterLast + DAY_MS + ZONE_SLACK_MS),
  };
}

/**
 * A license of the tenant (null when there is none, or it was deleted) and the coverage
 * facts around local dates `startDate`..`endDate` in any zone, in one statement: what
 * coverageFacts reads, over bounds wide enough for every zone (a local date starts between
 * 14 hours before and 12 hours after its UTC midnight). Wider bounds only add facts about
 * instants the range does not hold. Daily rows count as cut in another zone unless cut in
 * `timezone`, or the license's own zone when that is not given.
 */
export async function licenseWithCoverage(
  pool: pg.Pool,
  tenantId: string,
  environment: Environment,
  licenseId: string,
  bounds: CoverageBounds,
  timezone: string | undefined,
): Promise<LicenseCoverage | null> {
  const { rows } = await pool.query<CoverageRow & { timezone: string | null }>({
    name: 'analytics.license-coverage',
    ...licenseCoverageStatement(tenantId, environment, licenseId, bounds, timezone),
  });
  return licenseCoverageOf(rows);
}

/** licenseWithCoverage's statement, to run on its own or beside others (queryTogether). */
export function licenseCoverageStatement(
  tenantId: string,
  environment: Environment,
  licenseId: string,
  bounds: CoverageBounds,
  timezone: string | undefined,
): Statement {
  const b = windowBounds(bounds);
  return {
    text: `WITH l AS (SELECT id, timezone FROM licenses WHERE id = $2 AND tenant_id = $1 AND environment = $10::api_key_environment AND deleted_at IS NULL)
           SELECT 'license' AS what, id AS license_id, NULL::timestamptz AS first, NULL::timestamptz AS last, timezone FROM l
           UNION ALL
           SELECT *, NULL FROM (${WINDOW_ISLANDS}) w
           UNION ALL
           SELECT 'dirty', d.license_id, d.hour, d.hour, NULL FROM rollup_dirty_hours d JOIN l ON d.license_id = l.id
            WHERE d.tenant_id = $1 AND d.hour >= $3 AND d.hour < $4
           UNION ALL
           SELECT DISTINCT 'moved', r.license_id, NULL::timestamptz, NULL::timestamptz, NULL FROM usage_rollups_daily r JOIN l ON r.license_id = l.id
            WHERE r.tenant_id = $1 AND r.date >= $7::date AND r.date <= $8::date AND r.timezone <> coalesce($9, l.timezone)`,
    values: [
      tenantId,
      licenseId,
      new Date(b.hoursFrom),
      new Date(b.hoursTo),
      new Date(b.daysFrom),
      new Date(b.daysTo),
      b.datesFrom,
      b.datesTo,
      timezone ?? null,
      environment,
    ],
  };
}

/** The rows of licenseCoverageStatement, read. */
export function licenseCoverageOf(rows: readonly (CoverageRow & { timezone: string | null })[]): LicenseCoverage | null {
  const license = rows.find((r) => r.what === 'license');
  if (!license) return null;
  return { license: { id: license.license_id!, timezone: license.timezone! }, coverage: factsOf([...rows]) };
}

/**
 * Facts read around `wide` as they would have been read around `narrow` (inside it): islands
 * cut at the narrower bounds (all UTC midnights, so no window is split), marks outside them
 * dropped. Null when that cannot be told: a license whose daily rows were cut in another zone
 * somewhere in `wide` (the facts do not say on which dates).
 */
export function narrowCoverage(found: LicenseCoverage, wide: CoverageBounds, narrow: CoverageBounds): LicenseCoverage | null {
  if (narrow.first < wide.first || narrow.afterLast > wide.afterLast) return null;
  if (found.coverage.foreign.length > 0) return null;
  const b = windowBounds(narrow);
  const cut = (islands: Span[], from: number, to: number) =>
    islands.flatMap((i) => (Math.max(i.start, from) < Math.min(i.end, to) ? [{ start: Math.max(i.start, from), end: Math.min(i.end, to) }] : []));
  const { windows, dirty } = found.coverage;
  return {
    license: found.license,
    coverage: {
      windows: { hourlyDone: cut(windows.hourlyDone, b.hoursFrom, b.hoursTo), dailyDone: cut(windows.dailyDone, b.daysFrom, b.daysTo) },
      dirty: dirty.filter((d) => d.hour.getTime() >= b.hoursFrom && d.hour.getTime() < b.hoursTo),
      foreign: [],
    },
  };
}

/** Whether two reads of a license's coverage say the same (islands in any order). */
export function sameCoverage(a: LicenseCoverage | null, b: LicenseCoverage | null): boolean {
  if (!a || !b) return a === b;
  const text = ({ license, coverage }: LicenseCoverage) =>
    [
      license.id,
      license.timezone,
      coverage.windows.hourlyDone.map((i) => `${i.start}-${i.end}`).sort().join(','),
      coverage.windows.dailyDone.map((i) => `${i.start}-${i.end}`).sort().join(','),
      coverage.dirty.map((d) => `${d.license_id}@${d.hour.getTime()}`).sort().join(','),
      [...coverage.foreign].sort().join(','),
    ].join('|');
  return text(a) === text(b);
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
 * Null when the plan reads nothing.
 */
function planUnion(scope: { tenantId: string; licenseIds: string[]; usageType?: string }, plan: SourcePlan): { sql: string; params: unknown[] } | null {
  const parts: string[] = [];
  const params: unknown[] = [scope.tenantId, scope.licenseIds, scope.usageType ?? null];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const scoped = (alias: string) => `${alias}.tenant_id = $1 AND ${alias}.license_id = ANY($2::uuid[]) AND ($3::text IS NULL OR ${alias}.usage_type = $3)`;

  if (plan.daily.length) {
    // Dates as day numbers (days since 1970-01-01), so width_bucket over them finds each row's bucket as for the other sources.
    const wb = asWidthBuckets(plan.daily.map((d) => ({ start: Date.parse(d.date) / DAY_MS, end: Date.parse(d.date) / DAY_MS + 1, bucket: d.bucket })));
    const points = param(pgArray(wb.points, true));
    const map = param(pgArray(wb.map, true));
    parts.push(`SELECT b.bucket, r.license_id, r.usage_type, r.quantity, r.event_count, r.error_count, r.duration_ms_sum
                  FROM usage_rollups_daily r
                 CROSS JOIN LATERAL (SELECT (${map}::int[])[width_bucket(r.date - DATE '1970-01-01', ${points}::int[])] AS bucket) b
                 WHERE ${scoped('r')} AND r.date >= ${param(plan.daily[0]!.date)}::date AND r.date <= ${param(plan.daily.at(-1)!.date)}::date
                   AND b.bucket IS NOT NULL`);
  }
  if (plan.hourly.length) {
    const wb = asWidthBuckets(plan.hourly);
    const points = param(pgArray(wb.points.map((p) => new Date(p).toISOString()), true));
    const map = param(pgArray(wb.map, true));
    parts.push(`SELECT b.bucket, r.license_id, r.usage_type, r.quantity, r.event_count, r.error_count, r.duration_ms_sum
                  FROM usage_rollups_hourly r
                 CROSS JOIN LATERAL (SELECT (${map}::int[])[width_bucket(r.hour, ${points}::timestamptz[])] AS bucket) b
                 WHERE ${scoped('r')} AND r.hour >= ${param(new Date(wb.points[0]!))} AND r.hour < ${param(new Date(wb.points.at(-1)!))}
                   AND b.bucket IS NOT NULL`);
  }
  if (plan.raw.length) {
    const wb = asWidthBuckets(plan.raw);
    const points = param(pgArray(wb.points.map((p) => new Date(p).toISOString()), true));
    const map = param(pgArray(wb.map, true));
    parts.push(`SELECT b.bucket, e.license_id, e.usage_type, e.quantity, 1 AS event_count,
                       CASE WHEN e.status_code >= 400 THEN 1 ELSE 0 END AS error_count, coalesce(e.duration_ms, 0) AS duration_ms_sum
                  FROM usage_events e
                 CROSS JOIN LATERAL (SELECT (${map}::int[])[width_bucket(e.occurred_at, ${points}::timestamptz[])] AS bucket) b
                 WHERE ${scoped('e')} AND e.voided_at IS NULL AND e.occurred_at >= ${param(new Date(wb.points[0]!))} AND e.occurred_at < ${param(new Date(wb.points.at(-1)!))}
                   AND b.bucket IS NOT NULL`);
  }
  return parts.length === 0 ? null : { sql: parts.join('\n UNION ALL \n'), params };
}

/** Sums of a cell as PostgreSQL gives them: exact decimal text and integer counts. */
export interface TotalsCell {
  quantity: string;
  events: bigint;
  errors: bigint;
  durationMsSum: bigint;
}

/** Sums of one bucket over every usage type. */
export interface BucketTotals {
  quantity: string;
  events: number;
}

export interface UsageTotals {
  /** bucket index → sums over every usage type. */
  byBucket: Map<number, BucketTotals>;
  byUsageType: Map<string, TotalsCell>;
  total: TotalsCell;
  /** Distinct non-null user ids over the buckets, exact (see distinctUsersStatement). */
  uniqueUsers: number;
}

const asTotals = (c: CellSum): TotalsCell => ({
  quantity: formatMicro(c.quantity.value()),
  events: c.events.value(),
  errors: c.errors.value(),
  durationMsSum: c.durationMsSum.value(),
});

/** Final days read through the process's FinalDayCache, under the analytics cache generation read for this request. */
export interface FinalDays {
  cache: FinalDayCache;
  generation: string;
}

/**
 * What analytics.usage needs, summed by PostgreSQL in one subquery per group (GROUPING
 * SETS): per bucket over all types and per type over all buckets, the total folded from the
 * latter. Exact, and a handful of rows back whatever the number of buckets and licenses: the
 * per-bucket sums come as one text of "bucket quantity events" items (a row per bucket cost
 * the API more in protocol parsing than everything else it does for a year of days). The
 * distinct users of the whole scope (distinctUsersStatement: user sets of final days, raw
 * events for the rest), the groups' sums and `extra` (the caller's, answered as `alongside`)
 * go in one statement: one round trip, one snapshot.
 *
 * With `finalDays`, a single license's final days come from the process's FinalDayCache
 * instead (PostgreSQL reads only days it has not seen under this generation), and the
 * statement covers the rest: hours not final yet. Sums are added in
 * millionths, exactly.
 */
export async function seriesTotals(
  pool: pg.Pool,
  scope: SeriesScope,
  buckets: Span[],
  zone: string,
  finalDays?: FinalDays,
  extra?: Statement,
): Promise<UsageTotals & { alongside?: unknown[] }> {
  // Per bucket, in arrays by bucket index (a year of days allocates nothing per addition): exact
  // sums in millionths and events, numbers while safe (addExact), and whether any row counted.
  const bucketQuantity: (number | bigint)[] = new Array<number | bigint>(buckets.length).fill(0);
  const bucketEvents: (number | bigint)[] = new Array<number | bigint>(buckets.length).fill(0);
  const counted = new Uint8Array(buckets.length);
  const byUsageType = new Map<string, CellSum>();
  const total = new CellSum();
  let uniqueUsers = 0;
  const addBucket = (bucket: number, quantity: number | bigint, events: number | bigint) => {
    bucketQuantity[bucket] = addExact(bucketQuantity[bucket]!, quantity);
    bucketEvents[bucket] = addExact(bucketEvents[bucket]!, events);
    counted[bucket] = 1;
  };
  const addType = (usageType: string, cell: MicroCell) => {
    let sums = byUsageType.get(usageType);
    if (!sums) byUsageType.set(usageType, (sums = new CellSum()));
    sums.add(cell);
    total.add(cell);
  };

  let alongside: unknown[] | undefined;
  if (buckets.length > 0 && scope.licenses.length > 0) {
    const groups = await planGroups(pool, scope, buckets, zone, true);
    // Over the plans as made, before the final days' sums go to the cache below.
    const users = distinctUsersStatement(scope, groups);
    const single = groups.length === 1 && groups[0]!.licenseIds.length === 1 ? groups[0]! : undefined;
    let fromCache: Promise<void> | undefined;
    if (finalDays && single && single.plan.daily.length) {
      const days = single.plan.daily;
      single.plan = { ...single.plan, daily: [] };
      fromCache = finalDays.cache
        .read(pool, { tenantId: scope.tenantId, licenseId: single.licenseIds[0]!, zone, usageType: scope.usageType }, finalDays.generation, days.map((d) => d.date))
        .then((cells) => {
          for (const { date, bucket } of days) {
            // forEach, not for…of: no [key, value] array per entry.
            cells.get(date)!.forEach((cell, usageType) => {
              addBucket(bucket, cell.quantity, cell.events);
              addType(usageType, cell);
            });
          }
        });
    }
    const sums = groups.flatMap((group, index) => {
      const statement = groupStatement(
        scope,
        group,
        // what 1: the buckets' sums in one text, 2: a usage type's sums (the total is the sum of the few type rows)
        (union) =>
          `WITH s AS (
                        SELECT GROUPING(bucket, usage_type) AS grouping, bucket, usage_type, trim_scale(sum(quantity)) AS quantity,
                               sum(event_count) AS events, sum(error_count) AS errors, sum(duration_ms_sum) AS duration_ms_sum
                          FROM (${union}) x GROUP BY GROUPING SETS ((bucket), (usage_type)))
                      SELECT 1 AS what, NULL AS usage_type, string_agg(bucket || ' ' || quantity || ' ' || events, ',') AS quantity,
                             NULL AS events, NULL AS errors, NULL AS duration_ms_sum
                        FROM s WHERE grouping = 1
                      UNION ALL
                      SELECT 2, usage_type, quantity::text, events::text, errors::text, duration_ms_sum::text FROM s WHERE grouping = 2`,
        index,
      );
      return statement ? [statement] : [];
    });
    // The sums, the distinct users and the caller's statement: one round trip when there is one
    // group (one license, or licenses that share their coverage). Licenses with late-event marks
    // go in groups of their own: their statements run side by side, each named on its own, so
    // that statement texts stay few and no bind message nears PostgreSQL's parameter limit.
    const parts = [...sums, ...(users ? [users] : []), ...(extra ? [extra] : [])];
    const run =
      groups.length <= 1 ? queryTogether(pool, parts) : Promise.all(parts.map(async (p) => (await pool.query({ name: statementName(p.text), ...p })).rows as unknown[]));
    const [results] = await Promise.all([run, fromCache]);
    for (const rows of results.slice(0, sums.length) as SumRow[][]) {
      for (const row of rows) {
        if (row.what === 1) {
          if (!row.quantity) continue; // no rows at all
          for (const item of row.quantity.split(',')) {
            const [bucket, quantity, events] = item.split(' ') as [string, string, string];
            addBucket(Number(bucket), compact(parseMicro(quantity)), compact(BigInt(events)));
          }
        } else {
          addType(row.usage_type!, {
            quantity: parseMicro(row.quantity!),
            events: BigInt(row.events!),
            errors: BigInt(row.errors!),
            durationMsSum: BigInt(row.duration_ms_sum!),
          });
        }
      }
    }
    if (users) uniqueUsers = Number((results[sums.length] as { n: string }[])[0]!.n);
    if (extra) alongside = results.at(-1);
  } else if (extra) {
    [alongside] = await queryTogether(pool, [extra]);
  }
  const byBucket = new Map<number, BucketTotals>();
  for (let bucket = 0; bucket < buckets.length; bucket++) {
    if (counted[bucket]) byBucket.set(bucket, { quantity: formatMicro(bucketQuantity[bucket]!), events: Number(bucketEvents[bucket]!) });
  }
  return {
    byBucket,
    byUsageType: new Map([...byUsageType].map(([usageType, c]) => [usageType, asTotals(c)])),
    total: asTotals(total),
    uniqueUsers,
    alongside,
  };
}

/** A row of seriesTotals' sums, as it comes through queryTogether. */
interface SumRow {
  what: number;
  usage_type: string | null;
  quantity: string | null;
  events: string | null;
  errors: string | null;
  duration_ms_sum: string | null;
}

/**
 * Distinct non-null user ids among the raw events of the range, by count(DISTINCT): what
 * analytics.usage answered before user sets. Only the benchmark's and the tests' baseline now:
 * it reads every event of the range, and nothing past raw-event retention.
 */
export async function distinctUsersFromRawEvents(pool: pg.Pool, scope: SeriesScope, range: Span): Promise<number> {
  if (scope.licenses.length === 0) return 0;
  const { rows } = await pool.query<{ n: string }>({
    name: 'analytics.distinct-users',
    text: `SELECT count(DISTINCT user_id)::text AS n FROM usage_events
            WHERE tenant_id = $1 AND license_id = ANY($2::uuid[]) AND ($3::text IS NULL OR usage_type = $3)
              AND occurred_at >= $4 AND occurred_at < $5 AND voided_at IS NULL`,
    values: [scope.tenantId, scope.licenses.map((l) => l.id), scope.usageType ?? null, new Date(range.start), new Date(range.end)],
  });
  return Number(rows[0]!.n);
}
