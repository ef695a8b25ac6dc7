import { DAY_MS, HOUR_MS } from '../../lib/time';
import { dateWindow, hourWindow, type JobName } from './catalog';

/**
 * When each scheduled job fires and which window a firing covers (DESIGN §6). A description
 * the domain may read (manual triggers pick the same windows); node-cron and BullMQ, which act
 * on it, live in jobs/.
 */


export type Scheduled = Extract<
  JobName,
  | 'usage.aggregate.hourly'
  | 'usage.aggregate.daily'
  | 'usage.cleanup.weekly'
  | 'usage.partitions.maintain'
  | 'usage.thresholds.check'
  | 'usage.forecast.daily'
  | 'usage.forecast.alerts'
  | 'billing.reconcile'
>;

export interface ScheduleEntry {
  job: Scheduled;
  /** node-cron expression, evaluated in UTC. */
  cron: string;
  /** The window a firing at `at` covers. */
  windowAt(at: Date): string;
}

/** DESIGN §6, in UTC. Each firing enqueues the job of the window that just ended. */
export const SCHEDULE: readonly ScheduleEntry[] = [
  { job: 'usage.aggregate.hourly', cron: '0 * * * *', windowAt: (at) => hourWindow(new Date(floorTo(at, HOUR_MS) - HOUR_MS)) },
  { job: 'usage.aggregate.daily', cron: '0 2 * * *', windowAt: (at) => dateWindow(new Date(floorTo(at, DAY_MS) - DAY_MS)) },
  { job: 'usage.cleanup.weekly', cron: '0 4 * * 0', windowAt: (at) => dateWindow(at) },
  { job: 'usage.partitions.maintain', cron: '30 0 * * *', windowAt: (at) => dateWindow(at) },
  // Threshold checks run at :30 and cover the hour they run in.
  { job: 'usage.thresholds.check', cron: '30 * * * *', windowAt: (at) => hourWindow(new Date(floorTo(at, HOUR_MS))) },
  // Forecasts run after the daily rollups (02:00) and cover the UTC date they run on; breach
  // alerts follow later in the morning, from those forecasts.
  { job: 'usage.forecast.daily', cron: '0 3 * * *', windowAt: (at) => dateWindow(at) },
  { job: 'usage.forecast.alerts', cron: '0 9 * * *', windowAt: (at) => dateWindow(at) },
  // Reconciliation checks the UTC date before, once its last hour was rolled up and reported.
  { job: 'billing.reconcile', cron: '0 5 * * *', windowAt: (at) => dateWindow(new Date(floorTo(at, DAY_MS) - DAY_MS)) },
];

export function floorTo(date: Date, unit: number): number {
  return Math.floor(date.getTime() / unit) * unit;
}

/**
 * The last minute at or before `now` (UTC) that a five-field cron expression fires at. Only
 * numbers and `*` are understood, which is all SCHEDULE uses (a unit test holds it to that).
 */
export function lastFiring(expression: string, now: Date): Date {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5 || fields.some((f) => f !== '*' && !/^\d+$/.test(f))) throw new Error(`unsupported cron expression: ${expression}`);
  const [minute, hour, dayOfMonth, month, dayOfWeek] = fields as [string, string, string, string, string];
  const matches = (field: string, value: number) => field === '*' || Number(field) === value;
  for (let t = floorTo(now, 60_000), steps = 0; steps <= 8 * 24 * 60; t -= 60_000, steps++) {
    const at = new Date(t);
    if (
      matches(minute, at.getUTCMinutes()) &&
      matches(hour, at.getUTCHours()) &&
      matches(dayOfMonth, at.getUTCDate()) &&
      matches(month, at.getUTCMonth() + 1) &&
      matches(dayOfWeek, at.getUTCDay())
    ) {
      return at;
    }
  }
  throw new Error(`cron expression ${expression} does not fire within 8 days`);
}

