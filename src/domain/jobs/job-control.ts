import { randomUUID } from 'node:crypto';
import type { PrismaClient } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { assertWindowEnded } from '../rollups/aggregate';
import { getJobRun } from './job-runs';
import { DAY_MS, HOUR_MS } from '../../lib/time';
import { jobCatalog, parseDateWindow, parseHourWindow } from './catalog';
import type { JobPort } from './port';
import { SCHEDULE } from './schedule';
import type { Environment } from '../environments/environment';
export const MAX_RECALCULATION_DAYS = 400;

export type TriggerableJob = (typeof SCHEDULE)[number]['job'];
export const TRIGGERABLE_JOBS = SCHEDULE.map((e) => e.job) as [TriggerableJob, ...TriggerableJob[]];

/**
 * Runs a scheduled catalog job now, for the given window or the one its schedule would
 * pick now. A manual run gets its own job id, so it runs even if the window already ran.
 */
export async function triggerJob(jobs: Pick<JobPort, 'enqueue'>, args: { name: TriggerableJob; window?: string }, now = new Date()) {
  const entry = SCHEDULE.find((e) => e.job === args.name)!;
  const window = args.window ?? entry.windowAt(now);
  const payload = jobCatalog[args.name].payload.safeParse({ window });
  if (!payload.success) {
    throw new AppError('BAD_REQUEST', `window: ${payload.error.issues[0]?.message ?? 'invalid window'}`);
  }
  if (args.name === 'usage.aggregate.hourly') {
    assertWindowEnded('hour', new Date(parseHourWindow(window).getTime() + HOUR_MS), now);
  } else if (args.name === 'usage.aggregate.daily') {
    assertWindowEnded('UTC date', new Date(parseDateWindow(window).getTime() + DAY_MS), now);
  } else if ((args.name === 'usage.forecast.daily' || args.name === 'usage.forecast.alerts') && parseDateWindow(window) > now) {
    throw new AppError('BAD_REQUEST', 'window: a forecast cannot be made as of a date that has not begun');
  }
  const job = await jobs.enqueue(args.name, { window }, { rerunTag: `manual-${randomUUID().slice(0, 8)}` });
  return { jobId: job.id!, name: args.name, window };
}

/**
 * Queues the admin backfill of [startDate, endDate] (inclusive, at most 400 days), for one
 * license, a tenant's licenses, or every license.
 */
export async function requestRecalculation(
  deps: { jobs: Pick<JobPort, 'enqueue'>; prisma: PrismaClient },
  tenantId: string | null,
  environment: Environment,
  args: { licenseId?: string; startDate: string; endDate: string },
  now = new Date(),
) {
  const start = Date.parse(`${args.startDate}T00:00:00Z`);
  const end = Date.parse(`${args.endDate}T00:00:00Z`);
  if (end < start) throw new AppError('BAD_REQUEST', 'endDate: must not be before startDate');
  const days = (end - start) / DAY_MS + 1;
  if (days > MAX_RECALCULATION_DAYS) {
    throw new AppError('BAD_REQUEST', `endDate: a recalculation covers at most ${MAX_RECALCULATION_DAYS} days (this range has ${days})`);
  }
  if (start > now.getTime()) throw new AppError('BAD_REQUEST', 'startDate: must not be in the future');
  if (args.licenseId) {
    const license = await deps.prisma.license.findFirst({
      where: { id: args.licenseId, environment, ...(tenantId ? { tenantId } : {}) },
      select: { id: true },
    });
    if (!license) throw new AppError('NOT_FOUND', 'license not found');
  }
  const job = await deps.jobs.enqueue(
    'usage.recalculate',
    { tenantId, licenseId: args.licenseId ?? null, startDate: args.startDate, endDate: args.endDate },
    { rerunTag: randomUUID() },
  );
  return { jobId: job.id! };
}

/** Where a queued job is: BullMQ while it remembers the job, JobRun after that. */
export async function jobStatus(deps: { jobs: Pick<JobPort, 'find'>; prisma: PrismaClient }, jobId: string) {
  const job = await deps.jobs.find(jobId);
  if (job) {
    return { jobId, name: job.name, status: job.state, progress: job.progress, attempts: job.attempts, ...(job.error ? { error: job.error } : {}) };
  }
  const run = await getJobRun(deps.prisma, jobId);
  return {
    jobId,
    name: run.name,
    status: run.status,
    progress: { done: 0, total: 0 },
    attempts: run.attempts,
    ...(run.error ? { error: run.error } : {}),
  };
}
