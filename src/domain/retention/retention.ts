import type pg from 'pg';
import { hourFloor, utcDateFloor } from '../rollups/recompute';
import { DAY_MS } from '../../lib/time';

const BATCH = 10_000;

export interface RetentionPolicy {
  usageEventDays: number;
  idempotencyKeyDays: number;
  auditLogDays: number;
  jobRunDays: number;
}

export interface RetentionOutcome {
  [detail: string]: unknown;
  rowsTouched: number;
  /** Raw events older than this are gone (the rollups of their windows stay). */
  eventCutoff: string;
  /** Set when the cutoff was held back because a window was not final yet. */
  heldBackBy: string | null;
  droppedPartitions: string[];
  deletedEvents: number;
  deletedIdempotencyKeys: number;
  deletedAuditLogs: number;
  deletedJobRuns: number;
}

/**
 * The first instant whose raw events are still needed: the earliest hour before `cutoff`
 * that has events but no hourly rollup, or a pending late-event mark, or whose events'
 * local days are not final: an event of UTC date D lies in a local day that ends on D or
 * D + 1, so the daily windows of both must have run.
 */
async function firstUnfinalized(pool: pg.Pool, cutoff: Date): Promise<Date | null> {
  const { rows } = await pool.query<{ at: Date | null }>(
    `SELECT least(
        (SELECT min(hour) FROM rollup_dirty_hours WHERE hour < $1),
        (SELECT min(h.hour) FROM (SELECT DISTINCT date_trunc('hour', occurred_at) AS hour
                                    FROM usage_events WHERE occurred_at < $1) h
          WHERE NOT EXISTS (SELECT 1 FROM rollup_windows w WHERE w.kind = 'hourly' AND w.start = h.hour)),
        (SELECT min(d.day) FROM (SELECT DISTINCT date_trunc('day', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS day
                                    FROM usage_events WHERE occurred_at < $1) d
          WHERE (SELECT count(*) FROM rollup_windows w
                  WHERE w.kind = 'daily' AND w.start IN (d.day, d.day + interval '1 day')) < 2)
      ) AS at`,
    [cutoff],
  );
  return rows[0]?.at ?? null;
}

async function deleteInBatches(pool: pg.Pool, sql: string, params: unknown[]): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await pool.query(sql, params);
    total += rowCount ?? 0;
    if ((rowCount ?? 0) < BATCH) return total;
  }
}

interface EventPartition {
  name: string;
  /** Still a partition of usage_events (false: detached by a run that stopped before its drop). */
  attached: boolean;
  /** Detached concurrently by a run that stopped between the detach's two transactions. */
  pending: boolean;
}

const MONTHLY_PARTITION = /^usage_events_(\d{4})_(\d{2})$/;

/**
 * The monthly event partitions whose month ends at or before `cutoff`, and the tables an
 * interrupted earlier run detached but did not drop (named like a month's partition, no
 * longer attached: left alone they would keep `tally_ensure_usage_event_partitions` from
 * creating that month's partition again).
 */
async function expiredPartitions(pool: pg.Pool, cutoff: Date): Promise<EventPartition[]> {
  const { rows } = await pool.query<{ name: string; attached: boolean; pending: boolean; upper: string | null }>(
    `SELECT c.relname AS name, i.inhrelid IS NOT NULL AS attached, coalesce(i.inhdetachpending, false) AS pending,
            substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)') AS upper
       FROM pg_class c
       LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = 'usage_events'::regclass
      WHERE c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'usage_events'::regclass) AND c.relkind = 'r'
        AND (i.inhrelid IS NOT NULL OR (NOT c.relispartition AND c.relname ~ '^usage_events_[0-9]{4}_[0-9]{2}$'))`,
  );
  const expired = rows.filter((p) => {
    const month = MONTHLY_PARTITION.exec(p.name);
    const upper = p.upper ? new Date(p.upper) : month ? new Date(Date.UTC(Number(month[1]), Number(month[2]), 1)) : null;
    return upper !== null && !Number.isNaN(upper.getTime()) && upper <= cutoff;
  });
  // A partitioned table takes one concurrent detach at a time: while one is pending, any other
  // is refused (naming the pending one), so a pending detach is finished first.
  return expired.sort((a, b) => Number(b.pending) - Number(a.pending));
}

/**
 * Detaches a partition concurrently, then drops it. A plain `DROP TABLE` of a partition first
 * asks for an ACCESS EXCLUSIVE lock on usage_events; while that waits for a long query holding
 * the table (an export, a year of analytics), every insert and read that comes after queues
 * behind it: ingestion stopped for as long as the longest query ran. `DETACH ... CONCURRENTLY`
 * takes only a SHARE UPDATE EXCLUSIVE lock on usage_events, which inserts and reads do not
 * wait for; it waits for the queries that may still read the partition, and leaves a table no
 * query on usage_events touches, dropped at once. It cannot run inside a transaction: a pool
 * query is its own statement. A detach an earlier run left pending is finished (FINALIZE).
 */
async function dropPartition(pool: pg.Pool, p: EventPartition): Promise<void> {
  const table = `"${p.name.replace(/"/g, '""')}"`;
  if (p.attached) await pool.query(`ALTER TABLE usage_events DETACH PARTITION ${table} ${p.pending ? 'FINALIZE' : 'CONCURRENTLY'}`);
  await pool.query(`DROP TABLE IF EXISTS ${table}`);
}

/**
 * Weekly retention. Raw events older than the policy go by dropping whole monthly
 * partitions where the month is entirely past the cutoff and by batched deletes in the
 * month the cutoff falls in; never the events of a window whose rollups are not final.
 */
export async function applyRetention(pool: pg.Pool, policy: RetentionPolicy, now = new Date()): Promise<RetentionOutcome> {
  const wanted = utcDateFloor(new Date(now.getTime() - policy.usageEventDays * DAY_MS));
  const blocker = await firstUnfinalized(pool, wanted);
  const cutoff = blocker && blocker < wanted ? hourFloor(blocker) : wanted;

  const droppedPartitions: string[] = [];
  for (const p of await expiredPartitions(pool, cutoff)) {
    await dropPartition(pool, p);
    droppedPartitions.push(p.name);
  }
  const deletedEvents = await deleteInBatches(
    pool,
    // ctid is only unique within one partition: match it together with the partition (tableoid).
    `DELETE FROM usage_events WHERE occurred_at < $1
        AND (tableoid, ctid) IN (SELECT tableoid, ctid FROM usage_events WHERE occurred_at < $1 LIMIT ${BATCH})`,
    [cutoff],
  );
  const olderThan = (days: number) => new Date(now.getTime() - days * DAY_MS);
  const deletedIdempotencyKeys = await deleteInBatches(
    pool,
    `DELETE FROM idempotency_keys WHERE (tenant_id, key) IN (SELECT tenant_id, key FROM idempotency_keys WHERE created_at < $1 LIMIT ${BATCH})`,
    [olderThan(policy.idempotencyKeyDays)],
  );
  const deletedAuditLogs = await deleteInBatches(
    pool,
    `DELETE FROM audit_logs WHERE id IN (SELECT id FROM audit_logs WHERE created_at < $1 LIMIT ${BATCH})`,
    [olderThan(policy.auditLogDays)],
  );
  const deletedJobRuns = await deleteInBatches(
    pool,
    `DELETE FROM job_runs WHERE id IN (SELECT id FROM job_runs WHERE started_at < $1 AND status <> 'active' LIMIT ${BATCH})`,
    [olderThan(policy.jobRunDays)],
  );
  return {
    rowsTouched: deletedEvents + deletedIdempotencyKeys + deletedAuditLogs + deletedJobRuns,
    eventCutoff: cutoff.toISOString(),
    heldBackBy: cutoff < wanted ? cutoff.toISOString() : null,
    droppedPartitions,
    deletedEvents,
    deletedIdempotencyKeys,
    deletedAuditLogs,
    deletedJobRuns,
  };
}
