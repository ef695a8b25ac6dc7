import type pg from 'pg';
import { DAY_MS } from '../../lib/time';

/** Months of usage_events partitions kept ready after the current one. */
export const PARTITION_MONTHS_AHEAD = 3;

/**
 * Creates the monthly partitions of usage_events needed to accept events from `oldest`
 * (the late-event bound) through PARTITION_MONTHS_AHEAD months after `now`.
 */
export async function ensureUsageEventPartitions(pool: pg.Pool, now: Date, oldest?: Date): Promise<number> {
  const from = oldest ?? new Date(now.getTime() - 62 * DAY_MS);
  const firstMonth = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), 1);
  const months =
    (now.getUTCFullYear() - from.getUTCFullYear()) * 12 + (now.getUTCMonth() - from.getUTCMonth()) + 1 + PARTITION_MONTHS_AHEAD;
  const { rows } = await pool.query<{ created: number }>(
    'SELECT tally_ensure_usage_event_partitions($1::date, $2::int) AS created',
    [new Date(firstMonth).toISOString().slice(0, 10), months],
  );
  return rows[0]?.created ?? 0;
}

/**
 * Summarizes the page ranges of the events' BRIN index on occurred_at that were filled since
 * the last summary (autovacuum does it too, but later), so a rollup job that reads an hour or
 * a day finds just its pages. Already summarized ranges cost nothing.
 */
export async function summarizeEventTimeIndex(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ summarized: string | null }>(
    `SELECT sum(brin_summarize_new_values(i.inhrelid::regclass))::text AS summarized
       FROM pg_inherits i WHERE i.inhparent = 'usage_events_occurred_at_idx'::regclass`,
  );
  return Number(rows[0]?.summarized ?? 0);
}
