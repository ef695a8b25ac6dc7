import type pg from 'pg';
import { DAY_MS } from '../../lib/time';

/**
 * For the platform view: tenants created by sign-up, and those of them with at least one usage
 * event (not voided) that occurred in the last 30 days (raw events, kept longer than that: see
 * USAGE_EVENT_RETENTION_DAYS), read per tenant by the events' (tenant_id, …) index.
 */
export async function signupCounts(pool: pg.Pool, now = new Date()): Promise<{ tenants: number; activeLast30Days: number }> {
  const { rows } = await pool.query<{ tenants: string; active: string }>(
    `SELECT count(*)::text AS tenants,
            count(*) FILTER (WHERE EXISTS (SELECT 1 FROM usage_events e WHERE e.tenant_id = r.tenant_id AND e.occurred_at >= $1 AND e.occurred_at <= $2
                                                      AND e.voided_at IS NULL)
            )::text AS active
       FROM registrations r`,
    [new Date(now.getTime() - 30 * DAY_MS), now],
  );
  return { tenants: Number(rows[0]!.tenants), activeLast30Days: Number(rows[0]!.active) };
}
