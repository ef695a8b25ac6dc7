import type pg from 'pg';

/**
 * Row counts (and the latest change where rows are updated in place) of every table a client
 * call can write, read in one statement: what must not move when a call is refused. Audit
 * rows are left out on purpose: refusals are audited.
 */
const SCOREBOARD = `
SELECT json_build_object(
  'tenants', (SELECT count(*) || '/' || coalesce(max(updated_at)::text, '-') FROM tenants),
  'api_keys', (SELECT count(*) || '/' || count(revoked_at) FROM api_keys),
  'licenses', (SELECT count(*) || '/' || count(deleted_at) || '/' || coalesce(max(updated_at)::text, '-') FROM licenses),
  'usage_events', (SELECT count(*)::text FROM usage_events),
  'idempotency_keys', (SELECT count(*)::text FROM idempotency_keys),
  'usage_thresholds', (SELECT count(*) || '/' || coalesce(max(updated_at)::text, '-') FROM usage_thresholds),
  'usage_overages', (SELECT count(*) || '/' || coalesce(max(updated_at)::text, '-') FROM usage_overages),
  'usage_alerts', (SELECT count(*)::text FROM usage_alerts),
  'webhook_endpoints', (SELECT count(*) || '/' || coalesce(max(updated_at)::text, '-') FROM webhook_endpoints),
  'webhook_deliveries', (SELECT count(*)::text FROM webhook_deliveries),
  'usage_forecasts', (SELECT count(*)::text FROM usage_forecasts),
  'job_runs', (SELECT count(*)::text FROM job_runs),
  'registrations', (SELECT count(*)::text FROM registrations)
) AS board`;

export type Scoreboard = Record<string, string>;

export async function readScoreboard(pool: pg.Pool): Promise<Scoreboard> {
  const { rows } = await pool.query<{ board: Scoreboard }>(SCOREBOARD);
  return rows[0]!.board;
}

/** The tables whose entry moved between two readings, as "table: before -> after". */
export function scoreboardChanges(before: Scoreboard, after: Scoreboard): string[] {
  return Object.keys(before)
    .filter((table) => before[table] !== after[table])
    .map((table) => `${table}: ${before[table]} -> ${after[table]}`);
}

/** How many usage events a scoreboard counts. */
export const eventCount = (board: Scoreboard) => Number(board.usage_events);
