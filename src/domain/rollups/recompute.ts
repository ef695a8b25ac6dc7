import type pg from 'pg';
import { inTransaction } from '../../lib/transaction';
import { DAY_MS, HOUR_MS } from '../../lib/time';

/**
 * Rollups are recomputed per window from the raw events and upserted, never incremented:
 * after any run, every rollup row of the window equals a GROUP BY of its raw events, and
 * rows whose events are gone from the window are removed. Running a window twice is
 * harmless, which is what makes retries, restarts and two schedulers safe.
 *
 * Concurrency: every recompute of an hour takes a transaction-scoped advisory lock on that
 * hour (a recompute of daily rows, one on each local date) before reading. PostgreSQL's READ
 * COMMITTED gives each statement a fresh snapshot, so the recompute that waited sees
 * everything the one before it saw, and a slower, older computation can never overwrite a
 * newer one.
 */

const HOURLY_LOCK = 7_001;
const DAILY_LOCK = 7_002;
const RECOMPUTE_WORK_MEM = '96MB';

export interface RecomputeResult {
  /** Rollup rows written (inserted or updated) plus rows removed. */
  rowsTouched: number;
}

export function hourFloor(date: Date): Date {
  return new Date(Math.floor(date.getTime() / HOUR_MS) * HOUR_MS);
}

export function utcDateFloor(date: Date): Date {
  return new Date(Math.floor(date.getTime() / DAY_MS) * DAY_MS);
}

/** `2026-11-23` for a UTC date (midnight). */
export function isoDate(date: Date): string {
  return date.toISOString().slice(0, 10);
}

const AGGREGATES = `
  sum(e.quantity) AS quantity,
  count(*) AS event_count,
  max(e.quantity) AS max_quantity,
  count(DISTINCT e.user_id) AS distinct_users,
  count(*) FILTER (WHERE e.status_code >= 400) AS error_count,
  coalesce(sum(e.duration_ms), 0) AS duration_ms_sum`;

// A row whose numbers did not change is left alone (no new row version, no index churn).
const UPSERT_SET = `
  quantity = EXCLUDED.quantity, event_count = EXCLUDED.event_count, max_quantity = EXCLUDED.max_quantity,
  distinct_users = EXCLUDED.distinct_users, error_count = EXCLUDED.error_count,
  duration_ms_sum = EXCLUDED.duration_ms_sum, computed_at = now()`;
const CHANGED = `
  (r.quantity, r.event_count, r.max_quantity, r.distinct_users, r.error_count, r.duration_ms_sum)
    IS DISTINCT FROM (EXCLUDED.quantity, EXCLUDED.event_count, EXCLUDED.max_quantity, EXCLUDED.distinct_users,
                      EXCLUDED.error_count, EXCLUDED.duration_ms_sum)`;

/**
 * Hourly rows of [start, end) (whole UTC hours), for every license or only the given ones.
 * One statement computes, upserts and removes stale rows, so it commits all or nothing.
 */
const HOURLY_SQL = `
WITH fresh AS (
  SELECT e.tenant_id, e.license_id, e.usage_type, date_trunc('hour', e.occurred_at) AS hour, ${AGGREGATES}
    FROM usage_events e
   WHERE e.occurred_at >= $1 AND e.occurred_at < $2 AND e.voided_at IS NULL
     AND ($3::uuid[] IS NULL OR e.license_id = ANY($3::uuid[]))
   -- license first: it varies most, so the sort compares (abbreviated) uuids, rarely text
   GROUP BY e.license_id, e.usage_type, 4, e.tenant_id
),
written AS (
  INSERT INTO usage_rollups_hourly AS r (tenant_id, license_id, usage_type, hour, quantity, event_count,
    max_quantity, distinct_users, error_count, duration_ms_sum)
  SELECT * FROM fresh
  ON CONFLICT (tenant_id, license_id, usage_type, hour) DO UPDATE SET ${UPSERT_SET} WHERE ${CHANGED}
  RETURNING 1
),
removed AS (
  DELETE FROM usage_rollups_hourly r
   WHERE r.hour >= $1 AND r.hour < $2
     AND ($3::uuid[] IS NULL OR r.license_id = ANY($3::uuid[]))
     AND (r.tenant_id, r.license_id, r.usage_type, r.hour) NOT IN (SELECT tenant_id, license_id, usage_type, hour FROM fresh)
  RETURNING 1
)
SELECT (SELECT count(*) FROM written) + (SELECT count(*) FROM removed) AS touched`;

/**
 * The same for a window that holds no rollup rows yet (the usual first run, a backfill of
 * new history): a plain insert, without the upsert's per-row conflict check.
 */
const HOURLY_FIRST_SQL = `
INSERT INTO usage_rollups_hourly (tenant_id, license_id, usage_type, hour, quantity, event_count,
  max_quantity, distinct_users, error_count, duration_ms_sum)
SELECT e.tenant_id, e.license_id, e.usage_type, date_trunc('hour', e.occurred_at) AS hour, ${AGGREGATES}
  FROM usage_events e
 WHERE e.occurred_at >= $1 AND e.occurred_at < $2 AND e.voided_at IS NULL
   AND ($3::uuid[] IS NULL OR e.license_id = ANY($3::uuid[]))
 GROUP BY e.license_id, e.usage_type, 4, e.tenant_id`;

/**
 * Daily rows for license-local dates. $1/$2 bound the raw scan (the union of the target
 * days); $3/$4 pair each license with a local date. A day runs from the license's local
 * midnight to the next, converted to instants once per license, so it holds 23, 24 or 25
 * hours, or starts on a half hour; that is why it is never summed from hourly rows.
 */
const DAILY_SQL = `
WITH target AS (
  SELECT l.id AS license_id, l.tenant_id, l.timezone, t.day,
         t.day::timestamp AT TIME ZONE l.timezone AS day_start,
         (t.day + 1)::timestamp AT TIME ZONE l.timezone AS day_end
    FROM unnest($3::uuid[], $4::date[]) AS t(license_id, day)
    JOIN licenses l ON l.id = t.license_id
),
fresh AS (
  SELECT e.tenant_id, e.license_id, e.usage_type, t.day AS date, t.timezone, ${AGGREGATES}
    FROM usage_events e
    JOIN target t ON t.license_id = e.license_id AND t.tenant_id = e.tenant_id
   WHERE e.occurred_at >= $1 AND e.occurred_at < $2 AND e.voided_at IS NULL
     AND e.occurred_at >= t.day_start AND e.occurred_at < t.day_end
   GROUP BY e.license_id, e.usage_type, t.day, e.tenant_id, t.timezone
),
written AS (
  INSERT INTO usage_rollups_daily AS r (tenant_id, license_id, usage_type, date, timezone, quantity, event_count,
    max_quantity, distinct_users, error_count, duration_ms_sum)
  SELECT * FROM fresh
  ON CONFLICT (tenant_id, license_id, usage_type, date) DO UPDATE SET timezone = EXCLUDED.timezone, ${UPSERT_SET}
    WHERE ${CHANGED} OR r.timezone IS DISTINCT FROM EXCLUDED.timezone
  RETURNING 1
),
removed AS (
  DELETE FROM usage_rollups_daily r
   USING target t
   WHERE r.license_id = t.license_id AND r.tenant_id = t.tenant_id AND r.date = t.day
     AND (r.tenant_id, r.license_id, r.usage_type, r.date) NOT IN (SELECT tenant_id, license_id, usage_type, date FROM fresh)
  RETURNING 1
)
SELECT (SELECT count(*) FROM written) + (SELECT count(*) FROM removed) AS touched`;

/**
 * The user sets of the same license-local days as DAILY_SQL ($1..$4 alike): user ids get their
 * tenant's next numbers when new (numbered in user id order, above the tenant's largest; the
 * caller holds the tenant's USER_NUMBER_LOCK, so numbers stay dense and unique), each
 * (license, usage type, day) gets the bitmap of its users' numbers, and sets of days whose
 * users are gone (voided, erased, recalculated away) are removed. Upserted, never merged, so a
 * set always equals its day's raw events.
 */
const USER_SETS_SQL = `
WITH target AS (
  SELECT l.id AS license_id, l.tenant_id, l.timezone, t.day,
         t.day::timestamp AT TIME ZONE l.timezone AS day_start,
         (t.day + 1)::timestamp AT TIME ZONE l.timezone AS day_end
    FROM unnest($3::uuid[], $4::date[]) AS t(license_id, day)
    JOIN licenses l ON l.id = t.license_id
),
seen AS MATERIALIZED (
  SELECT DISTINCT e.tenant_id, e.license_id, e.usage_type, t.day, t.timezone, e.user_id
    FROM usage_events e
    JOIN target t ON t.license_id = e.license_id AND t.tenant_id = e.tenant_id
   WHERE e.occurred_at >= $1 AND e.occurred_at < $2 AND e.voided_at IS NULL AND e.user_id IS NOT NULL
     AND e.occurred_at >= t.day_start AND e.occurred_at < t.day_end
),
known AS MATERIALIZED (
  SELECT s.*, n.user_no FROM seen s LEFT JOIN usage_user_numbers n ON n.tenant_id = s.tenant_id AND n.user_id = s.user_id
),
numbered AS (
  INSERT INTO usage_user_numbers (tenant_id, user_no, user_id)
  SELECT u.tenant_id,
         coalesce((SELECT max(m.user_no) FROM usage_user_numbers m WHERE m.tenant_id = u.tenant_id), -1)
           + row_number() OVER (PARTITION BY u.tenant_id ORDER BY u.user_id),
         u.user_id
    FROM (SELECT DISTINCT tenant_id, user_id FROM known WHERE user_no IS NULL) u
  RETURNING tenant_id, user_id, user_no
),
fresh AS (
  SELECT k.tenant_id, k.license_id, k.usage_type, k.day AS date, k.timezone,
         tally_user_bitmap(array_agg(coalesce(k.user_no, n.user_no))) AS users
    FROM known k LEFT JOIN numbered n ON k.user_no IS NULL AND n.tenant_id = k.tenant_id AND n.user_id = k.user_id
   GROUP BY k.license_id, k.usage_type, k.day, k.tenant_id, k.timezone
),
written AS (
  INSERT INTO daily_user_sets AS r (tenant_id, license_id, usage_type, date, timezone, users)
  SELECT * FROM fresh
  ON CONFLICT (tenant_id, license_id, usage_type, date) DO UPDATE
    SET timezone = EXCLUDED.timezone, users = EXCLUDED.users, computed_at = now()
    WHERE r.users IS DISTINCT FROM EXCLUDED.users OR r.timezone IS DISTINCT FROM EXCLUDED.timezone
  RETURNING 1
),
removed AS (
  DELETE FROM daily_user_sets r
   USING target t
   WHERE r.license_id = t.license_id AND r.tenant_id = t.tenant_id AND r.date = t.day
     AND (r.tenant_id, r.license_id, r.usage_type, r.date) NOT IN (SELECT tenant_id, license_id, usage_type, date FROM fresh)
  RETURNING 1
)
SELECT (SELECT count(*) FROM written) + (SELECT count(*) FROM removed) AS touched`;

/**
 * Taken (transaction-scoped, per tenant) by every writer of a tenant's user numbers and user
 * sets: the daily recompute, and an erasure when it moves the erased user's bits to the
 * pseudonym. So numbers are handed out one writer at a time, and a recompute that read the
 * user's events before the erasure rewrote them has committed before the erasure fixes the sets.
 */
export const USER_NUMBER_LOCK = 7_005;
/**
 * The lock is per slot of tenants (hashtext of the tenant id, 64 slots), not per tenant: the
 * daily job recomputes every license at once, and one advisory lock per tenant would fill
 * PostgreSQL's shared lock table in a deployment of many tenants. Tenants sharing a slot only
 * wait for each other.
 */
export const userNumberLockSlot = (tenantIdSql: string) => `(hashtext(${tenantIdSql}) & 63)`;

/** Sorting a window's events for count(DISTINCT user_id) in memory instead of on disk. */
function recomputeTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(pool, { settings: [`work_mem = '${RECOMPUTE_WORK_MEM}'`] }, work);
}

async function lockHours(client: pg.PoolClient, start: Date, end: Date): Promise<void> {
  const hours: number[] = [];
  for (let t = start.getTime(); t < end.getTime(); t += HOUR_MS) hours.push(t / HOUR_MS);
  // Ascending order: two recomputes with overlapping ranges cannot deadlock.
  await client.query(
    `SELECT pg_advisory_xact_lock(${HOURLY_LOCK}, h) FROM unnest($1::int[]) AS h ORDER BY h`,
    [hours],
  );
}

/**
 * Recomputes the hourly rollups of the UTC hours in [start, end) for all licenses, or only
 * for `licenseIds`, and clears the late-event marks it covered. The license-local days of
 * the cleared marks are recomputed in the same transaction: once a mark is gone, both the
 * hourly and the daily rows it stood for are exact. `start` and `end` are floored to hours.
 */
export async function recomputeHourlyRollups(
  pool: pg.Pool,
  range: { start: Date; end: Date; licenseIds?: string[] },
): Promise<RecomputeResult> {
  const start = hourFloor(range.start);
  const end = hourFloor(range.end);
  if (end <= start) return { rowsTouched: 0 };
  return recomputeTransaction(pool, async (client) => {
    await lockHours(client, start, end);
    // Marks are cleared before reading: an event committed after this point keeps (or
    // re-adds) its mark, so nothing falls between this recompute and the next one.
    // Locked in (tenant, license, hour) order, the order ingestion writes marks in.
    const cleared = await client.query<{ license_id: string; hour: Date }>(
      `WITH doomed AS (
         SELECT tenant_id, license_id, hour FROM rollup_dirty_hours
          WHERE hour >= $1 AND hour < $2 AND ($3::uuid[] IS NULL OR license_id = ANY($3::uuid[]))
          ORDER BY tenant_id, license_id, hour FOR UPDATE
       )
       DELETE FROM rollup_dirty_hours d USING doomed
        WHERE d.tenant_id = doomed.tenant_id AND d.license_id = doomed.license_id AND d.hour = doomed.hour
       RETURNING d.license_id, d.hour`,
      [start, end, range.licenseIds ?? null],
    );
    const params = [start, end, range.licenseIds ?? null];
    const { rows: existing } = await client.query(
      `SELECT 1 FROM usage_rollups_hourly WHERE hour >= $1 AND hour < $2 AND ($3::uuid[] IS NULL OR license_id = ANY($3::uuid[])) LIMIT 1`,
      params,
    );
    let rowsTouched: number;
    if (existing.length === 0) {
      rowsTouched = (await client.query(HOURLY_FIRST_SQL, params)).rowCount ?? 0;
    } else {
      const { rows } = await client.query<{ touched: string }>(HOURLY_SQL, params);
      rowsTouched = Number(rows[0]!.touched);
    }
    if (cleared.rows.length) {
      const days = await localDaysOverlapping(
        client,
        cleared.rows.map((r) => ({ licenseId: r.license_id, hour: r.hour })),
      );
      rowsTouched += await recomputeDays(client, days);
    }
    return { rowsTouched };
  });
}

/** A license-local calendar day. */
export interface LicenseDay {
  licenseId: string;
  /** Local calendar date, `YYYY-MM-DD`. */
  day: string;
}

async function recomputeDays(client: pg.PoolClient, days: LicenseDay[]): Promise<number> {
  if (days.length === 0) return 0;
  const licenseIds = days.map((d) => d.licenseId);
  const dates = days.map((d) => d.day);
  // One lock per local date, ascending: recomputes of different dates run side by side.
  const dayNumbers = [...new Set(dates.map((d) => Date.parse(`${d}T00:00:00Z`) / DAY_MS))].sort((a, b) => a - b);
  await client.query(`SELECT pg_advisory_xact_lock(${DAILY_LOCK}, d) FROM unnest($1::int[]) AS d ORDER BY d`, [dayNumbers]);
  // The raw scan spans from the earliest local midnight to the latest end of the target days.
  const bounds = await client.query<{ scan_start: Date; scan_end: Date }>(
    `SELECT min(t.day::timestamp AT TIME ZONE l.timezone) AS scan_start,
            max((t.day + 1)::timestamp AT TIME ZONE l.timezone) AS scan_end
       FROM unnest($1::uuid[], $2::date[]) AS t(license_id, day) JOIN licenses l ON l.id = t.license_id`,
    [licenseIds, dates],
  );
  const { scan_start: scanStart, scan_end: scanEnd } = bounds.rows[0]!;
  if (!scanStart || !scanEnd) return 0;
  // Tenants in one order (by lock key) for every recompute: two of them cannot deadlock.
  await client.query(
    `SELECT pg_advisory_xact_lock(${USER_NUMBER_LOCK}, k)
       FROM (SELECT DISTINCT ${userNumberLockSlot('tenant_id::text')} AS k FROM licenses WHERE id = ANY($1::uuid[])) t ORDER BY k`,
    [[...new Set(licenseIds)]],
  );
  const params = [scanStart, scanEnd, licenseIds, dates];
  const { rows } = await client.query<{ touched: string }>(DAILY_SQL, params);
  const sets = await client.query<{ touched: string }>(USER_SETS_SQL, params);
  return Number(rows[0]!.touched) + Number(sets.rows[0]!.touched);
}

/**
 * Recomputes the daily rollups of the given license-local dates from the raw events. Days
 * are given per license because each license cuts its days in its own time zone.
 */
export async function recomputeDailyRollups(pool: pg.Pool, days: LicenseDay[]): Promise<RecomputeResult> {
  if (days.length === 0) return { rowsTouched: 0 };
  return recomputeTransaction(pool, async (client) => ({ rowsTouched: await recomputeDays(client, days) }));
}

/**
 * For a daily window (UTC date D), the local dates per license that end within D: each
 * license-local date ends in exactly one UTC date, so running the daily window of every
 * UTC date finalizes every local date once, after it is over. Usually one date per license;
 * two where the zone skipped a date (Pacific/Apia's 2011-12-29 and the skipped 2011-12-30
 * both end at 2011-12-30T10:00Z), none where it repeated one.
 */
export async function localDaysEndingOn(
  db: pg.Pool | pg.PoolClient,
  utcDate: Date,
  licenseIds?: string[],
): Promise<LicenseDay[]> {
  const start = utcDateFloor(utcDate);
  const { rows } = await db.query<{ license_id: string; day: string }>(
    `SELECT l.id AS license_id, to_char(c.day, 'YYYY-MM-DD') AS day
       FROM licenses l
       CROSS JOIN LATERAL generate_series((($1::timestamptz) AT TIME ZONE l.timezone)::date - 2,
                                          (($2::timestamptz) AT TIME ZONE l.timezone)::date, interval '1 day') AS c(day)
      WHERE ($3::uuid[] IS NULL OR l.id = ANY($3::uuid[]))
        AND (c.day::date + 1)::timestamp AT TIME ZONE l.timezone >= $1::timestamptz
        AND (c.day::date + 1)::timestamp AT TIME ZONE l.timezone < $2::timestamptz
      ORDER BY l.id, c.day`,
    [start, new Date(start.getTime() + DAY_MS), licenseIds ?? null],
  );
  return rows.map((r) => ({ licenseId: r.license_id, day: r.day }));
}

/** The license-local dates that overlap the UTC hours [start, end), per license. */
export async function localDaysOverlapping(
  db: pg.Pool | pg.PoolClient,
  pairs: { licenseId: string; hour: Date }[],
): Promise<LicenseDay[]> {
  if (pairs.length === 0) return [];
  const { rows } = await db.query<{ license_id: string; day: string }>(
    `SELECT DISTINCT l.id AS license_id, to_char(d.day, 'YYYY-MM-DD') AS day
       FROM unnest($1::uuid[], $2::timestamptz[]) AS p(license_id, hour)
       JOIN licenses l ON l.id = p.license_id
       CROSS JOIN LATERAL (VALUES ((p.hour AT TIME ZONE l.timezone)::date),
                                  (((p.hour + interval '1 hour' - interval '1 millisecond') AT TIME ZONE l.timezone)::date)) AS d(day)`,
    [pairs.map((p) => p.licenseId), pairs.map((p) => p.hour)],
  );
  return rows.map((r) => ({ licenseId: r.license_id, day: r.day }));
}

export async function recordWindow(db: pg.Pool | pg.PoolClient, kind: 'hourly' | 'daily', start: Date): Promise<void> {
  await db.query(
    `INSERT INTO rollup_windows (kind, start) VALUES ($1, $2) ON CONFLICT (kind, start) DO UPDATE SET computed_at = now()`,
    [kind, start],
  );
}

/**
 * Recomputes every hour that late events marked (before `before`): the hourly rows of the
 * marked licenses and the license-local days those hours fall in.
 */
export async function recomputeMarkedHours(
  pool: pg.Pool,
  before: Date,
): Promise<RecomputeResult & { marks: number; tenantIds: string[] }> {
  const { rows } = await pool.query<{ tenant_id: string; license_id: string; hour: Date }>(
    `SELECT tenant_id, license_id, hour FROM rollup_dirty_hours WHERE hour < $1 ORDER BY hour, license_id`,
    [before],
  );
  const byHour = new Map<number, string[]>();
  for (const r of rows) {
    const list = byHour.get(r.hour.getTime());
    if (list) list.push(r.license_id);
    else byHour.set(r.hour.getTime(), [r.license_id]);
  }
  let rowsTouched = 0;
  for (const [hour, licenseIds] of byHour) {
    const range = { start: new Date(hour), end: new Date(hour + HOUR_MS), licenseIds };
    rowsTouched += (await recomputeHourlyRollups(pool, range)).rowsTouched;
  }
  return { rowsTouched, marks: rows.length, tenantIds: [...new Set(rows.map((r) => r.tenant_id))] };
}
