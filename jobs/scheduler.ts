import cron, { type ScheduledTask } from 'node-cron';
import type pg from 'pg';
import type { Logger } from '../src/lib/logger';
import { dateWindow, hourWindow } from '../src/domain/jobs/catalog';
import { DAY_MS, HOUR_MS } from '../src/lib/time';
import { SCHEDULE, floorTo, lastFiring, type Scheduled } from '../src/domain/jobs/schedule';
import type { JobQueues } from './queues';


/**
 * node-cron fires; BullMQ dedupes. The job id names the window, so any number of scheduler
 * processes firing at once, or one restarting, enqueue each window once.
 */
export class Scheduler {
  private tasks: ScheduledTask[] = [];

  constructor(
    private readonly queues: JobQueues,
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
    private readonly lateWindowDays: number,
  ) {}

  async fire(job: Scheduled, at: Date): Promise<string> {
    const entry = SCHEDULE.find((e) => e.job === job)!;
    const window = entry.windowAt(at);
    const enqueued = await this.queues.enqueue(job, { window });
    return enqueued.id!;
  }

  start(): void {
    for (const entry of SCHEDULE) {
      const task = cron.schedule(
        entry.cron,
        (context) => {
          this.fire(entry.job, context.triggeredAt ?? context.date).catch((err: unknown) =>
            this.logger.error({ err, job: entry.job }, 'could not enqueue scheduled job'),
          );
        },
        { timezone: 'UTC', name: entry.job },
      );
      this.tasks.push(task);
    }
  }

  /**
   * Windows that ended while no scheduler ran: every hour after the last rolled-up one
   * (or just the previous hour on a fresh install) and every daily window after the last
   * done, bounded by the late-event window. Already-done windows are not enqueued again.
   */
  async catchUp(now = new Date()): Promise<string[]> {
    const { rows } = await this.pool.query<{ kind: string; last: Date | null }>(
      `SELECT kind, max(start) AS last FROM rollup_windows GROUP BY kind`,
    );
    const last = new Map(rows.map((r) => [r.kind, r.last]));
    const floor = now.getTime() - this.lateWindowDays * DAY_MS;
    const enqueued: string[] = [];

    const currentHour = floorTo(now, HOUR_MS);
    const lastHour = last.get('hourly');
    let hour = lastHour ? Math.max(lastHour.getTime() + HOUR_MS, floorTo(new Date(floor), HOUR_MS)) : currentHour - HOUR_MS;
    for (; hour < currentHour; hour += HOUR_MS) {
      enqueued.push((await this.queues.enqueue('usage.aggregate.hourly', { window: hourWindow(new Date(hour)) }, { retryFailed: true })).id!);
    }

    // The daily window of date D is enqueued at 02:00 on D + 1.
    const lastDailyDue = floorTo(new Date(now.getTime() - 2 * HOUR_MS), DAY_MS) - DAY_MS;
    const lastDay = last.get('daily');
    let day = lastDay ? Math.max(lastDay.getTime() + DAY_MS, floorTo(new Date(floor), DAY_MS)) : lastDailyDue;
    for (; day <= lastDailyDue; day += DAY_MS) {
      enqueued.push((await this.queues.enqueue('usage.aggregate.daily', { window: dateWindow(new Date(day)) }, { retryFailed: true })).id!);
    }
    if (enqueued.length) this.logger.info({ count: enqueued.length }, 'enqueued windows missed while no scheduler ran');
    return enqueued;
  }

  /**
   * The latest window of every other scheduled job (forecasts, breach alerts, threshold
   * checks, partition maintenance, cleanup) that fired while no scheduler ran and has no
   * completed run: a forecast missed at 03:00 runs at start instead of a day late. Only the
   * latest window, since these jobs act on the state of now; each is idempotent, and the
   * window in the job id keeps two schedulers from running it twice.
   */
  async catchUpLatest(now = new Date()): Promise<string[]> {
    const enqueued: string[] = [];
    for (const entry of SCHEDULE) {
      if (entry.job === 'usage.aggregate.hourly' || entry.job === 'usage.aggregate.daily') continue; // catchUp does every missed window of these
      const window = entry.windowAt(lastFiring(entry.cron, now));
      const done = await this.pool.query(`SELECT 1 FROM job_runs WHERE name = $1 AND "window" = $2 AND status = 'completed' LIMIT 1`, [entry.job, window]);
      if (done.rowCount) continue;
      enqueued.push((await this.queues.enqueue(entry.job, { window }, { retryFailed: true })).id!);
    }
    if (enqueued.length) this.logger.info({ jobs: enqueued }, 'enqueued the latest windows of scheduled jobs that have not run');
    return enqueued;
  }

  async stop(): Promise<void> {
    for (const task of this.tasks) await task.stop();
    this.tasks = [];
  }
}
