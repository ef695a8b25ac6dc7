import type pg from 'pg';

const HOUR_MS = 3_600_000;

/**
 * Exact usage of one license over [start, end), per usage type: hourly rollups for the
 * whole hours that are rolled up (and not marked by a late event since), raw events for
 * everything else (the hours not rolled up yet, partial hours at the edges of a +05:30
 * day). A new event counts as soon as it is committed.
 */
export async function usageTotals(
  pool: pg.Pool,
  scope: { tenantId: string; licenseId: string; usageType?: string },
  range: { start: Date; end: Date },
): Promise<Map<string, string>> {
  const firstHour = Math.ceil(range.start.getTime() / HOUR_MS) * HOUR_MS;
  const lastHour = Math.floor(range.end.getTime() / HOUR_MS) * HOUR_MS;
  const { rows: rolled } = await pool.query<{ start: Date }>(
    `SELECT w.start FROM rollup_windows w
      WHERE w.kind = 'hourly' AND w.start >= $1 AND w.start < $2
        AND NOT EXISTS (SELECT 1 FROM rollup_dirty_hours d
                         WHERE d.tenant_id = $3 AND d.license_id = $4 AND d.hour = w.start)
      ORDER BY w.start`,
    [new Date(firstHour), new Date(lastHour), scope.tenantId, scope.licenseId],
  );
  // Rolled hours as ranges; the gaps between them are read raw.
  const rolledRanges: [number, number][] = [];
  for (const { start } of rolled) {
    const t = start.getTime();
    const last = rolledRanges.at(-1);
    if (last && last[1] === t) last[1] = t + HOUR_MS;
    else rolledRanges.push([t, t + HOUR_MS]);
  }
  const rawRanges: [number, number][] = [];
  let cursor = range.start.getTime();
  for (const [a, b] of rolledRanges) {
    if (a > cursor) rawRanges.push([cursor, a]);
    cursor = b;
  }
  if (cursor < range.end.getTime()) rawRanges.push([cursor, range.end.getTime()]);

  const { rows } = await pool.query<{ usage_type: string; quantity: string }>(
    `SELECT usage_type, sum(quantity)::text AS quantity FROM (
       SELECT r.usage_type, r.quantity
         FROM usage_rollups_hourly r
         JOIN unnest($4::timestamptz[], $5::timestamptz[]) AS w(a, b) ON r.hour >= w.a AND r.hour < w.b
        WHERE r.tenant_id = $1 AND r.license_id = $2 AND ($3::text IS NULL OR r.usage_type = $3)
       UNION ALL
       SELECT e.usage_type, e.quantity
         FROM usage_events e
         JOIN unnest($6::timestamptz[], $7::timestamptz[]) AS w(a, b) ON e.occurred_at >= w.a AND e.occurred_at < w.b
        WHERE e.tenant_id = $1 AND e.license_id = $2 AND ($3::text IS NULL OR e.usage_type = $3)
     ) x GROUP BY usage_type`,
    [
      scope.tenantId,
      scope.licenseId,
      scope.usageType ?? null,
      rolledRanges.map(([a]) => new Date(a)),
      rolledRanges.map(([, b]) => new Date(b)),
      rawRanges.map(([a]) => new Date(a)),
      rawRanges.map(([, b]) => new Date(b)),
    ],
  );
  return new Map(rows.map((r) => [r.usage_type, r.quantity]));
}
