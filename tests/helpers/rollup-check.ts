import type pg from 'pg';

/**
 * Differences between the rollups of the given licenses and a from-scratch GROUP BY of
 * their raw events: hourly rows for hours before `hoursBefore`, daily rows for the
 * license-local dates that ended before `daysEndedBefore`. Empty when rollups are exact.
 * Voided events count nowhere, so they are left out of the GROUP BY.
 */
export async function rollupDifferences(
  pool: pg.Pool,
  licenseIds: string[],
  bounds: { hoursBefore: Date; daysEndedBefore: Date },
): Promise<{ hourly: unknown[]; daily: unknown[] }> {
  const hourly = await pool.query(
    `WITH raw AS (
       SELECT tenant_id, license_id, usage_type, date_trunc('hour', occurred_at) AS hour,
              sum(quantity) AS quantity, count(*) AS event_count, max(quantity) AS max_quantity,
              count(DISTINCT user_id) AS distinct_users, count(*) FILTER (WHERE status_code >= 400) AS error_count,
              coalesce(sum(duration_ms), 0) AS duration_ms_sum
         FROM usage_events WHERE license_id = ANY($1) AND occurred_at < $2 AND voided_at IS NULL GROUP BY 1, 2, 3, 4),
     r AS (SELECT * FROM usage_rollups_hourly WHERE license_id = ANY($1) AND hour < $2)
     SELECT coalesce(raw.license_id, r.license_id) AS license_id, coalesce(raw.usage_type, r.usage_type) AS usage_type,
            coalesce(raw.hour, r.hour) AS hour, raw.quantity::text AS raw_quantity, r.quantity::text AS rollup_quantity,
            raw.event_count AS raw_events, r.event_count AS rollup_events
       FROM raw FULL OUTER JOIN r
         ON r.tenant_id = raw.tenant_id AND r.license_id = raw.license_id AND r.usage_type = raw.usage_type AND r.hour = raw.hour
      WHERE raw.quantity IS DISTINCT FROM r.quantity OR raw.event_count IS DISTINCT FROM r.event_count
         OR raw.max_quantity IS DISTINCT FROM r.max_quantity OR raw.distinct_users IS DISTINCT FROM r.distinct_users
         OR raw.error_count IS DISTINCT FROM r.error_count OR raw.duration_ms_sum IS DISTINCT FROM r.duration_ms_sum`,
    [licenseIds, bounds.hoursBefore],
  );
  const daily = await pool.query(
    `WITH raw AS (
       SELECT e.tenant_id, e.license_id, e.usage_type, (e.occurred_at AT TIME ZONE l.timezone)::date AS date,
              sum(e.quantity) AS quantity, count(*) AS event_count, max(e.quantity) AS max_quantity,
              count(DISTINCT e.user_id) AS distinct_users, count(*) FILTER (WHERE e.status_code >= 400) AS error_count,
              coalesce(sum(e.duration_ms), 0) AS duration_ms_sum
         FROM usage_events e JOIN licenses l ON l.id = e.license_id
        WHERE e.license_id = ANY($1) AND e.voided_at IS NULL GROUP BY 1, 2, 3, 4),
     ended AS (SELECT raw.* FROM raw JOIN licenses l ON l.id = raw.license_id
                WHERE ((raw.date + 1)::timestamp AT TIME ZONE l.timezone) <= $2),
     r AS (SELECT d.* FROM usage_rollups_daily d JOIN licenses l ON l.id = d.license_id
            WHERE d.license_id = ANY($1) AND ((d.date + 1)::timestamp AT TIME ZONE l.timezone) <= $2)
     SELECT coalesce(ended.license_id, r.license_id) AS license_id, coalesce(ended.usage_type, r.usage_type) AS usage_type,
            to_char(coalesce(ended.date, r.date), 'YYYY-MM-DD') AS date,
            ended.quantity::text AS raw_quantity, r.quantity::text AS rollup_quantity
       FROM ended FULL OUTER JOIN r
         ON r.tenant_id = ended.tenant_id AND r.license_id = ended.license_id AND r.usage_type = ended.usage_type AND r.date = ended.date
      WHERE ended.quantity IS DISTINCT FROM r.quantity OR ended.event_count IS DISTINCT FROM r.event_count
         OR ended.max_quantity IS DISTINCT FROM r.max_quantity OR ended.distinct_users IS DISTINCT FROM r.distinct_users
         OR ended.error_count IS DISTINCT FROM r.error_count OR ended.duration_ms_sum IS DISTINCT FROM r.duration_ms_sum`,
    [licenseIds, bounds.daysEndedBefore],
  );
  return { hourly: hourly.rows, daily: daily.rows };
}
