import type pg from 'pg';
import { AppError } from '../../lib/errors';
import type { AnalyticsInvalidator } from '../analytics/cache';
import { LATE_MARK_LEAD_SECONDS } from '../usage/ingest';
import { summarizeEventTimeIndex } from '../usage/partitions';
import {
  hourFloor,
  localDaysEndingOn,
  recomputeDailyRollups,
  recomputeHourlyRollups,
  recomputeMarkedHours,
  recordWindow,
  utcDateFloor,
} from './recompute';
import { DAY_MS, HOUR_MS } from '../../lib/time';

/**
 * A window may be rolled up once it is over. Events written in the last LATE_MARK_LEAD_SECONDS
 * of an hour mark it dirty, so an hourly run that starts that close to the end misses nothing.
 */
export function assertWindowEnded(kind: string, end: Date, now: Date): void {
  if (now.getTime() < end.getTime() - LATE_MARK_LEAD_SECONDS * 1000) {
    throw new AppError('BAD_REQUEST', `window: this ${kind} has not ended yet (it ends at ${end.toISOString()})`);
  }
}

/** Rollup jobs write rollups and drop the cached analytics answers their changes make stale. */
export interface RollupDeps {
  pool: pg.Pool;
  analytics: AnalyticsInvalidator;
}

export interface AggregationOutcome {
  rowsTouched: number;
  [detail: string]: unknown;
}

/**
 * The hourly job: recompute one UTC hour for every license, record the window as rolled
 * up, then recompute every earlier hour that late events marked (and their local days).
 */
export async function aggregateHourlyWindow(
  { pool, analytics }: RollupDeps,
  hour: Date,
  now = new Date(),
): Promise<AggregationOutcome & { lateTenantIds: string[] }> {
  const start = hourFloor(hour);
  const end = new Date(start.getTime() + HOUR_MS);
  assertWindowEnded('hour', end, now);
  await summarizeEventTimeIndex(pool);
  const window = await recomputeHourlyRollups(pool, { start, end });
  await recordWindow(pool, 'hourly', start);
  const late = await recomputeMarkedHours(pool, end);
  // Late events changed the rollups of their hours (and local days): cached answers over them are stale.
  await analytics.invalidate(late.tenantIds);
  return { rowsTouched: window.rowsTouched + late.rowsTouched, lateMarks: late.marks, lateTenantIds: late.tenantIds };
}

/**
 * The daily job for UTC date D: every license-local date that ended during D (one per
 * license) is recomputed from the raw events and becomes final.
 */
export async function aggregateDailyWindow(pool: pg.Pool, date: Date, now = new Date()): Promise<AggregationOutcome> {
  const day = utcDateFloor(date);
  assertWindowEnded('UTC date', new Date(day.getTime() + DAY_MS), now);
  await summarizeEventTimeIndex(pool);
  const days = await localDaysEndingOn(pool, day);
  const result = await recomputeDailyRollups(pool, days);
  await recordWindow(pool, 'daily', day);
  return { rowsTouched: result.rowsTouched, licenses: days.length };
}

export interface RecalculationRange {
  tenantId: string | null;
  licenseId: string | null;
  /** Inclusive UTC dates (license-local dates for the daily rows), YYYY-MM-DD. */
  startDate: string;
  endDate: string;
}

/**
 * The admin backfill: recompute the hourly rollups of every UTC hour of the range that has
 * ended and the daily rollups of every license-local date in it, one day per transaction,
 * reporting progress per day. Raw events older than the retention horizon are gone, so
 * days before it are left as they are (their rollups are the record now).
 */
export async function recalculateRange(
  { pool, analytics }: RollupDeps,
  range: RecalculationRange,
  options: {
    retentionDays: number;
    now?: Date;
    concurrency?: number;
    onProgress?: (done: number, total: number) => Promise<void>;
  },
): Promise<AggregationOutcome> {
  const now = options.now ?? new Date();
  const horizon = utcDateFloor(new Date(now.getTime() - options.retentionDays * DAY_MS + DAY_MS));
  const requestedStart = new Date(`${range.startDate}T00:00:00Z`);
  const first = requestedStart < horizon ? horizon : requestedStart;
  const last = new Date(`${range.endDate}T00:00:00Z`);
  const licenseIds = await licensesInScope(pool, range);
  await summarizeEventTimeIndex(pool);
  const total = Math.max(0, Math.round((last.getTime() - first.getTime()) / DAY_MS) + 1);
  const currentHour = hourFloor(now);
  const ids = licenseIds ?? (await pool.query<{ id: string }>('SELECT id FROM licenses')).rows.map((r) => r.id);
  let rowsTouched = 0;
  let done = 0;
  // Two days per step: the daily scan reaches past each end of its days (local midnights run
  // from UTC-12 to UTC+14), and that overhang is paid once per step, not once per day.
  const DAYS_PER_STEP = 2;
  const steps = Math.ceil(total / DAYS_PER_STEP);
  const recomputeStep = async (step: number) => {
    const first_ = step * DAYS_PER_STEP;
    const count = Math.min(DAYS_PER_STEP, total - first_);
    const start = new Date(first.getTime() + first_ * DAY_MS);
    const end = new Date(Math.min(start.getTime() + count * DAY_MS, currentHour.getTime()));
    if (ids.length > 0) {
      const hourly = await recomputeHourlyRollups(pool, { start, end, licenseIds: licenseIds ?? undefined });
      const days = Array.from({ length: count }, (_, k) => new Date(start.getTime() + k * DAY_MS).toISOString().slice(0, 10));
      const daily = await recomputeDailyRollups(pool, days.flatMap((day) => ids.map((licenseId) => ({ licenseId, day }))));
      rowsTouched += hourly.rowsTouched + daily.rowsTouched; // added after both awaits: steps run concurrently
    }
    done += count;
    await options.onProgress?.(done, total);
  };
  // Steps are independent (each locks its own hours and dates): run a few at once.
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency ?? 2, steps) }, async () => {
      while (next < steps) await recomputeStep(next++);
    }),
  );
  // Events that arrived in the range while it was being recomputed marked their hours;
  // handle them now so the range is exact when the job reports completion.
  const late = await recomputeMarkedHours(pool, new Date(Math.min(last.getTime() + DAY_MS, currentHour.getTime())));
  await analytics.invalidate(range.tenantId ? [range.tenantId, ...late.tenantIds] : null);
  return {
    rowsTouched: rowsTouched + late.rowsTouched,
    days: total,
    skippedBefore: requestedStart < horizon ? horizon.toISOString().slice(0, 10) : null,
  };
}

async function licensesInScope(pool: pg.Pool, range: RecalculationRange): Promise<string[] | null> {
  if (range.licenseId) {
    const { rows } = await pool.query<{ id: string }>(
      'SELECT id FROM licenses WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)',
      [range.licenseId, range.tenantId],
    );
    return rows.map((r) => r.id);
  }
  if (range.tenantId) {
    const { rows } = await pool.query<{ id: string }>('SELECT id FROM licenses WHERE tenant_id = $1', [range.tenantId]);
    return rows.map((r) => r.id);
  }
  return null;
}
