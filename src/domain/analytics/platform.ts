import type pg from 'pg';
import { inTransaction } from '../../lib/transaction';
import { DAY_MS, HOUR_MS } from '../../lib/time';
import type { Environment } from '../environments/environment';

/** GROUP BY GROUPING SETS ((date), (tenant_id, license_id)): one row per local date, one per license. */
interface FoldedRow {
  by_date: boolean;
  date: string | null;
  tenant_id: string | null;
  license_id: string | null;
  events: string;
  errors: string;
  /** For a license: it has a day on or after the first active date ($1). */
  active: boolean;
}

const FOLDED = `SELECT GROUPING(date) = 0 AS by_date, to_char(date, 'YYYY-MM-DD') AS date, tenant_id, license_id,
       sum(event_count)::text AS events, sum(error_count)::text AS errors, bool_or(date >= $1::date) AS active`;
const BY_DATE_AND_LICENSE = 'GROUP BY GROUPING SETS ((date), (tenant_id, license_id))';

/** The final days, from daily rollups. $1 first active date, $2 first date, $3 last final date, $4 environment. */
const FINAL_DAYS_SQL = `
${FOLDED}
  FROM usage_rollups_daily
 WHERE date >= $2::date AND date <= $3::date
   AND license_id IN (SELECT id FROM licenses WHERE environment = $4::api_key_environment)
 ${BY_DATE_AND_LICENSE}`;

/**
 * The rolled-up tail hours [$3, $4) in each zone licenses use, with the local date an hour
 * falls on there, or NULL when it holds a local midnight (+05:30 zones) and is read raw.
 * Only hours that reach a date after $2 (the last final date, if any) and not before $1.
 */
const ZONE_HOURS_SQL = `
SELECT z.timezone, s.hour,
       CASE WHEN (s.hour AT TIME ZONE z.timezone)::date = e.last_date THEN to_char(e.last_date, 'YYYY-MM-DD') END AS date
  FROM (SELECT DISTINCT timezone FROM licenses) AS z,
       generate_series($3::timestamptz, $4::timestamptz - interval '1 hour', interval '1 hour') AS s(hour),
       LATERAL (SELECT ((s.hour + interval '1 hour' - interval '1 millisecond') AT TIME ZONE z.timezone)::date AS last_date) AS e
 WHERE ($2::date IS NULL OR e.last_date > $2::date) AND e.last_date >= $1::date`;

/**
 * Rolled-up tail hours that fall on one local date: one range scan [$5, $6) of the hourly
 * rollups, hash-joined to (license, hour, date) for the zone hours $2..$4. Those come in as
 * arrays, so the planner sees how few they are; OFFSET 0 keeps the scan a single one. Read
 * with HOURLY_SETTINGS: with the licenses' statistics out of date (a tenant that has just made
 * a thousand licenses: 3 estimated for the environment, 1,002 found) the planner chose a nested
 * loop that ran the hour-range scan once per (license, hour): 880 ms instead of 9 for 20,000
 * hourly rows. Hourly rows start on whole UTC hours.
 */
export const HOURLY_SETTINGS = ['jit = off', 'enable_nestloop = off'];
export const HOURLY_SQL = `
WITH zone_hours AS (
  SELECT * FROM unnest($2::text[], $3::timestamptz[], $4::date[]) AS z(timezone, hour, date)
),
tail AS (
  SELECT h.tenant_id, h.license_id, lh.date, h.event_count, h.error_count
    FROM (SELECT tenant_id, license_id, hour, event_count, error_count FROM usage_rollups_hourly
           WHERE hour >= $5 AND hour < $6 OFFSET 0) AS h
    JOIN (SELECT l.tenant_id, l.id, z.hour, z.date FROM licenses l JOIN zone_hours z ON z.timezone = l.timezone
           WHERE l.environment = $7::api_key_environment OFFSET 0) AS lh
      ON lh.tenant_id = h.tenant_id AND lh.id = h.license_id AND lh.hour = h.hour
)
${FOLDED}
  FROM tail
 ${BY_DATE_AND_LICENSE}`;

/**
 * Raw events of the tail: the straddling hours $4..$5 of the licenses in their zone, and
 * everything from $6 on (not rolled up yet), each read per license by its (tenant_id,
 * license_id, occurred_at) index; OFFSET 0 keeps every read a parameterized index range.
 * $2 first date, $3 last final date or NULL.
 */
const RAW_SQL = `
WITH raw AS (
  SELECT l.tenant_id, l.id AS license_id, (e.occurred_at AT TIME ZONE l.timezone)::date AS date,
         1 AS event_count, CASE WHEN e.status_code >= 400 THEN 1 ELSE 0 END AS error_count
    FROM licenses l
    JOIN unnest($4::text[], $5::timestamptz[]) AS z(timezone, hour) ON z.timezone = l.timezone,
         LATERAL (SELECT e.occurred_at, e.status_code FROM usage_events e
                   WHERE e.tenant_id = l.tenant_id AND e.license_id = l.id AND e.voided_at IS NULL
                     AND e.occurred_at >= z.hour AND e.occurred_at < z.hour + interval '1 hour' OFFSET 0) AS e
   WHERE l.environment = $7::api_key_environment
  UNION ALL
  SELECT l.tenant_id, l.id, (e.occurred_at AT TIME ZONE l.timezone)::date, 1, CASE WHEN e.status_code >= 400 THEN 1 ELSE 0 END
    FROM licenses l,
         LATERAL (SELECT e.occurred_at, e.status_code FROM usage_events e
                   WHERE e.tenant_id = l.tenant_id AND e.license_id = l.id AND e.occurred_at >= $6 AND e.voided_at IS NULL OFFSET 0) AS e
   WHERE l.environment = $7::api_key_environment
)
${FOLDED}
  FROM raw
 WHERE ($3::date IS NULL OR date > $3::date) AND date >= $2::date
 ${BY_DATE_AND_LICENSE}`;

/**
 * Runs one of the reads above with JIT off: their estimated cost grows with licenses and
 * hours and passes jit_above_cost long before they are slow, and compiling them takes
 * longer than running them (1.5 s of JIT for this view once).
 */
async function readWithoutJit(pool: pg.Pool, sql: string, params: unknown[], settings = ['jit = off']): Promise<FoldedRow[]> {
  return inTransaction(pool, { begin: 'BEGIN READ ONLY', settings }, async (client) => (await client.query<FoldedRow>(sql, params)).rows);
}

/**
 * Per license-local date in [$1, $2]: p50/p95/p99 of durationMs over the raw events (exact,
 * percentile_cont: interpolated between the two nearest values, rounded to 3 decimals), with
 * the events that carry a duration. The first read is a day early, for zones ahead of UTC.
 */
const RESPONSE_TIMES_SQL = `
SELECT to_char(d.date, 'YYYY-MM-DD') AS date, count(*)::int AS events,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d.duration_ms)::numeric, 3)::float8 AS p50,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY d.duration_ms)::numeric, 3)::float8 AS p95,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY d.duration_ms)::numeric, 3)::float8 AS p99
  FROM (SELECT (e.occurred_at AT TIME ZONE l.timezone)::date AS date, e.duration_ms
          FROM usage_events e JOIN licenses l ON l.tenant_id = e.tenant_id AND l.id = e.license_id
         WHERE e.occurred_at >= $1::date - 1 AND e.occurred_at < $2::date + 2 AND e.duration_ms IS NOT NULL
           AND l.environment = $3::api_key_environment) AS d
 WHERE d.date >= $1::date AND d.date <= $2::date
 GROUP BY d.date ORDER BY d.date`;

/** Events per country (null: none) over license-local dates [$1, $2], the $3 most frequent. */
const COUNTRIES_SQL = `
SELECT d.country, count(*)::text AS events
  FROM (SELECT e.country, (e.occurred_at AT TIME ZONE l.timezone)::date AS date
          FROM usage_events e JOIN licenses l ON l.tenant_id = e.tenant_id AND l.id = e.license_id
         WHERE e.occurred_at >= $1::date - 1 AND e.occurred_at < $2::date + 2 AND l.environment = $4::api_key_environment) AS d
 WHERE d.date >= $1::date AND d.date <= $2::date
 GROUP BY d.country ORDER BY count(*) DESC, d.country NULLS LAST
 LIMIT $3`;

export interface PlatformSections {
  /** Events per country of the range, from raw events. */
  countries?: boolean;
  /** p50/p95/p99 of durationMs per day, from raw events. */
  percentiles?: boolean;
}

/**
 * The sections of the platform view read from raw events (within USAGE_EVENT_RETENTION_DAYS),
 * asked for by name: unlike the rest of the view, which reads rollups, they read every event of
 * the range, so the default view does not pay for them.
 */
async function rawSections(pool: pg.Pool, environment: Environment, firstDate: string, lastDate: string, top: number, sections: PlatformSections) {
  const read = <R extends pg.QueryResultRow>(sql: string, params: unknown[]) =>
    inTransaction(pool, { begin: 'BEGIN READ ONLY', settings: ['jit = off'] }, async (client) => (await client.query<R>(sql, params)).rows);
  const [countries, responseTimes] = await Promise.all([
    sections.countries ? read<{ country: string | null; events: string }>(COUNTRIES_SQL, [firstDate, lastDate, top, environment]) : null,
    sections.percentiles
      ? read<{ date: string; events: number; p50: number; p95: number; p99: number }>(RESPONSE_TIMES_SQL, [firstDate, lastDate, environment])
      : null,
  ]);
  return {
    ...(countries ? { countries: countries.map((r) => ({ country: r.country, events: Number(r.events) })) } : {}),
    ...(responseTimes ? { responseTimes: responseTimes.map((r) => ({ date: r.date, events: r.events, p50DurationMs: r.p50, p95DurationMs: r.p95, p99DurationMs: r.p99 })) } : {}),
  };
}

/**
 * The operator's view across tenants over the last `days` days. Days are license-local
 * dates: final ones come from daily rollups, the unfinished tail (the last day or two)
 * from hourly rollups and, for hours not rolled up yet, raw events. Hours a late event
 * marked are counted as their hourly row stands until the next hourly run (within the hour).
 * One environment at a time: licenses, events and the keys' organizations and SDK versions of
 * that environment (tenants are counted whole: a tenant has both).
 */
export async function platformOverview(
  pool: pg.Pool,
  environment: Environment,
  args: { days: number; top: number } & PlatformSections,
  now = new Date(),
) {
  const todayUtc = Math.floor(now.getTime() / DAY_MS) * DAY_MS;
  const firstDate = new Date(todayUtc - (args.days - 1) * DAY_MS).toISOString().slice(0, 10);
  const activeSince = new Date(todayUtc - 29 * DAY_MS).toISOString().slice(0, 10);
  // Local date L is final in every zone once the daily windows of UTC dates L and L + 1 ran.
  const { rows: windowRows } = await pool.query<{ last_daily: Date | null; last_hourly: Date | null }>(
    `SELECT (SELECT max(start) FROM rollup_windows WHERE kind = 'daily' AND start > $1::date - 3) AS last_daily,
            (SELECT max(start) FROM rollup_windows WHERE kind = 'hourly') AS last_hourly`,
    [firstDate],
  );
  const lastWindow = windowRows[0]?.last_daily?.getTime();
  const finalThrough = lastWindow === undefined ? null : new Date(lastWindow - DAY_MS).toISOString().slice(0, 10);
  // A generous start: the zone hours keep only the hours that reach a date not final yet.
  const tailStart = new Date(finalThrough === null ? Date.parse(`${firstDate}T00:00:00Z`) - DAY_MS : Date.parse(`${finalThrough}T00:00:00Z`) - 2 * DAY_MS);
  // Hours before this one are rolled up; from it on, events are read raw.
  const lastHourly = windowRows[0]?.last_hourly;
  const rolledUntil = lastHourly ? new Date(lastHourly.getTime() + HOUR_MS) : tailStart;
  const rawFrom = rolledUntil > tailStart ? rolledUntil : tailStart;

  // The hourly rollups of the tail are most of the work: read in two halves side by side,
  // with the final days and the raw events, so that it is spread over two cores.
  const tail = async () => {
    const { rows: zoneHours } = await pool.query<{ timezone: string; hour: Date; date: string | null }>(ZONE_HOURS_SQL, [
      firstDate,
      finalThrough,
      tailStart,
      rolledUntil,
    ]);
    const straddling = zoneHours.filter((z) => z.date === null);
    const rolled = zoneHours.filter((z) => z.date !== null).sort((a, b) => a.hour.getTime() - b.hour.getTime());
    const reads = [
      readWithoutJit(pool, RAW_SQL, [
        activeSince,
        firstDate,
        finalThrough,
        straddling.map((z) => z.timezone),
        straddling.map((z) => z.hour),
        rawFrom,
        environment,
      ]),
    ];
    // Split at the middle hour: every hour holds about as many hourly rows.
    const hours = [...new Set(rolled.map((z) => z.hour.getTime()))];
    if (hours.length) {
      const from = new Date(hours[0]!);
      const middle = new Date(hours[Math.floor(hours.length / 2)]!);
      for (const [start, end] of [[from, middle], [middle, rolledUntil]] as const) {
        const part = rolled.filter((z) => z.hour >= start && z.hour < end);
        if (part.length === 0) continue;
        const params = [activeSince, part.map((z) => z.timezone), part.map((z) => z.hour), part.map((z) => z.date), start, end, environment];
        reads.push(readWithoutJit(pool, HOURLY_SQL, params, HOURLY_SETTINGS));
      }
    }
    return (await Promise.all(reads)).flat();
  };
  const lastDate = new Date(todayUtc).toISOString().slice(0, 10);
  const [tenants, licenses, finalDays, tailDays, orgs, sdks, raw] = await Promise.all([
    pool.query<{ n: string }>('SELECT count(*)::text AS n FROM tenants'),
    pool.query<{ status: string; n: string }>(
      `SELECT status::text, count(*)::text AS n FROM licenses WHERE deleted_at IS NULL AND environment = $1::api_key_environment GROUP BY 1`,
      [environment],
    ),
    finalThrough === null ? [] : readWithoutJit(pool, FINAL_DAYS_SQL, [activeSince, firstDate, finalThrough, environment]),
    tail(),
    // Organizations and SDK versions are what API keys identify themselves with (the seeds' fields).
    pool.query<{ organization: string; keys: string; requests: string }>(
      `SELECT organization, count(*)::text AS keys, sum(request_count)::text AS requests FROM api_keys
        WHERE organization IS NOT NULL AND revoked_at IS NULL AND environment = $2::api_key_environment
        GROUP BY organization ORDER BY sum(request_count) DESC, organization LIMIT $1`,
      [args.top, environment],
    ),
    pool.query<{ sdk_version: string | null; keys: string }>(
      `SELECT sdk_version, count(*)::text AS keys FROM api_keys WHERE revoked_at IS NULL AND last_used_at >= $1 AND environment = $2::api_key_environment
        GROUP BY sdk_version ORDER BY count(*) DESC, sdk_version NULLS LAST`,
      [new Date(now.getTime() - 30 * DAY_MS), environment],
    ),
    rawSections(pool, environment, firstDate, lastDate, args.top, args),
  ]);

  // Every rollup row and event is in exactly one of the reads: their dates and licenses add up.
  const perDate = new Map<string, bigint>();
  const perTenant = new Map<string, bigint>();
  const activeLicenses = new Set<string>();
  let events = 0n;
  let errors = 0n;
  for (const r of [...finalDays, ...tailDays]) {
    const n = BigInt(r.events);
    if (r.by_date) {
      perDate.set(r.date!, (perDate.get(r.date!) ?? 0n) + n);
      continue;
    }
    events += n;
    errors += BigInt(r.errors);
    perTenant.set(r.tenant_id!, (perTenant.get(r.tenant_id!) ?? 0n) + n);
    if (r.active) activeLicenses.add(r.license_id!);
  }
  const top = [...perTenant]
    .sort(([ta, a], [tb, b]) => (a === b ? (ta < tb ? -1 : 1) : a > b ? -1 : 1))
    .slice(0, args.top);
  const names = new Map(
    (await pool.query<{ id: string; name: string }>('SELECT id, name FROM tenants WHERE id = ANY($1::uuid[])', [top.map(([id]) => id)])).rows.map(
      (r) => [r.id, r.name],
    ),
  );
  const eventsPerDay = Array.from({ length: args.days }, (_, i) => {
    const date = new Date(Date.parse(`${firstDate}T00:00:00Z`) + i * DAY_MS).toISOString().slice(0, 10);
    return { date, events: Number(perDate.get(date) ?? 0n) };
  });
  const licenseCounts = Object.fromEntries(licenses.rows.map((r) => [r.status, Number(r.n)]));
  return {
    days: args.days,
    tenants: Number(tenants.rows[0]!.n),
    licenses: {
      total: licenses.rows.reduce((s, r) => s + Number(r.n), 0),
      byStatus: { ACTIVE: 0, SUSPENDED: 0, EXPIRED: 0, REVOKED: 0, ...licenseCounts },
      activeLast30Days: activeLicenses.size,
    },
    events: Number(events),
    errorRate: events === 0n ? 0 : Number(((errors * 1_000_000n) / events).toString()) / 1_000_000,
    eventsPerDay,
    topTenants: top.map(([tenantId, n]) => ({ tenantId, name: names.get(tenantId) ?? '', events: Number(n) })),
    topOrganizations: orgs.rows.map((r) => ({ organization: r.organization, keys: Number(r.keys), requests: Number(r.requests) })),
    sdkVersions: sdks.rows.map((r) => ({ sdkVersion: r.sdk_version, keys: Number(r.keys) })),
    ...raw,
  };
}
