import type pg from 'pg';

const DAY_MS = 86_400_000;

/**
 * The operator's view across tenants over the last `days` days. Days are license-local
 * dates: final ones come from daily rollups, the unfinished tail (the last day or two)
 * from hourly rollups and, for hours not rolled up yet, raw events. Hours a late event
 * marked are counted as their hourly row stands until the next hourly run (within the hour).
 */
export async function platformOverview(pool: pg.Pool, args: { days: number; top: number }, now = new Date()) {
  const todayUtc = Math.floor(now.getTime() / DAY_MS) * DAY_MS;
  const firstDate = new Date(todayUtc - (args.days - 1) * DAY_MS).toISOString().slice(0, 10);
  // Local date L is final in every zone once the daily windows of UTC dates L and L + 1 ran.
  const { rows: windowRows } = await pool.query<{ last: Date | null }>(
    `SELECT max(start) AS last FROM rollup_windows WHERE kind = 'daily' AND start > $1::date - 3`,
    [firstDate],
  );
  const lastWindow = windowRows[0]?.last?.getTime();
  const finalThrough = lastWindow === undefined ? null : new Date(lastWindow - DAY_MS).toISOString().slice(0, 10);
  const tailStart = new Date(finalThrough === null ? Date.parse(`${firstDate}T00:00:00Z`) - DAY_MS : Date.parse(`${finalThrough}T00:00:00Z`) - 2 * DAY_MS);

  // The tail is read per license (index range scans), hour by hour: an hour that straddles
  // two local dates (+05:30 zones) or is not rolled up yet is read raw.
  const perDay = `
    WITH last_hour AS (SELECT coalesce(max(start) + interval '1 hour', $3) AS t FROM rollup_windows WHERE kind = 'hourly'),
    days AS (
      SELECT r.tenant_id, r.license_id, r.date, r.event_count, r.error_count
        FROM usage_rollups_daily r
       WHERE r.date >= $1::date AND ($2::date IS NOT NULL AND r.date <= $2::date)
      UNION ALL
      SELECT l.tenant_id, l.id, x.date, x.event_count, x.error_count
        FROM licenses l, last_hour,
             LATERAL (
               SELECT (h.hour AT TIME ZONE l.timezone)::date AS date, h.event_count, h.error_count
                 FROM usage_rollups_hourly h
                WHERE h.tenant_id = l.tenant_id AND h.license_id = l.id AND h.hour >= $3 AND h.hour < last_hour.t
                  AND (h.hour AT TIME ZONE l.timezone)::date = ((h.hour + interval '1 hour' - interval '1 millisecond') AT TIME ZONE l.timezone)::date
               UNION ALL
               SELECT (e.occurred_at AT TIME ZONE l.timezone)::date, 1, CASE WHEN e.status_code >= 400 THEN 1 ELSE 0 END
                 FROM generate_series($3::timestamptz, last_hour.t - interval '1 hour', interval '1 hour') AS s(hour)
                 JOIN usage_events e ON e.tenant_id = l.tenant_id AND e.license_id = l.id
                                    AND e.occurred_at >= s.hour AND e.occurred_at < s.hour + interval '1 hour'
                WHERE (s.hour AT TIME ZONE l.timezone)::date <> ((s.hour + interval '1 hour' - interval '1 millisecond') AT TIME ZONE l.timezone)::date
               UNION ALL
               SELECT (e.occurred_at AT TIME ZONE l.timezone)::date, 1, CASE WHEN e.status_code >= 400 THEN 1 ELSE 0 END
                 FROM usage_events e
                WHERE e.tenant_id = l.tenant_id AND e.license_id = l.id AND e.occurred_at >= greatest(last_hour.t, $3)
             ) x
       WHERE ($2::date IS NULL OR x.date > $2::date) AND x.date >= $1::date
    )`;
  const params = [firstDate, finalThrough, tailStart];
  // One pass over the days (the tail is the costly part); the views are folded from it here.
  const [tenants, licenses, perLicenseDay, orgs, sdks] = await Promise.all([
    pool.query<{ n: string }>('SELECT count(*)::text AS n FROM tenants'),
    pool.query<{ status: string; n: string }>(`SELECT status::text, count(*)::text AS n FROM licenses WHERE deleted_at IS NULL GROUP BY 1`),
    pool.query<{ tenant_id: string; license_id: string; date: string; events: string; errors: string }>(
      `${perDay} SELECT tenant_id, license_id, to_char(date, 'YYYY-MM-DD') AS date,
                        sum(event_count)::text AS events, sum(error_count)::text AS errors
                   FROM days GROUP BY tenant_id, license_id, date`,
      params,
    ),
    // Organizations and SDK versions are what API keys identify themselves with (the seeds' fields).
    pool.query<{ organization: string; keys: string; requests: string }>(
      `SELECT organization, count(*)::text AS keys, sum(request_count)::text AS requests FROM api_keys
        WHERE organization IS NOT NULL AND revoked_at IS NULL GROUP BY organization ORDER BY sum(request_count) DESC, organization LIMIT $1`,
      [args.top],
    ),
    pool.query<{ sdk_version: string | null; keys: string }>(
      `SELECT sdk_version, count(*)::text AS keys FROM api_keys WHERE revoked_at IS NULL AND last_used_at >= $1
        GROUP BY sdk_version ORDER BY count(*) DESC, sdk_version NULLS LAST`,
      [new Date(now.getTime() - 30 * DAY_MS)],
    ),
  ]);

  const perDate = new Map<string, bigint>();
  const perTenant = new Map<string, bigint>();
  const activeLicenses = new Set<string>();
  const activeSince = new Date(todayUtc - 29 * DAY_MS).toISOString().slice(0, 10);
  let events = 0n;
  let errors = 0n;
  for (const r of perLicenseDay.rows) {
    const n = BigInt(r.events);
    events += n;
    errors += BigInt(r.errors);
    perDate.set(r.date, (perDate.get(r.date) ?? 0n) + n);
    perTenant.set(r.tenant_id, (perTenant.get(r.tenant_id) ?? 0n) + n);
    if (r.date >= activeSince) activeLicenses.add(r.license_id);
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
  };
}
