import type { PrismaClient, JobRun, JobRunStatus } from '../../generated/prisma/client';
import { AppError } from '../../lib/errors';
import { decodeCursor, pageOf } from '../../lib/cursor';
import { isUuid } from '../../lib/uuid';

/** Job health: one JobRun row per job id, updated on every attempt. */

export async function recordJobStart(
  prisma: PrismaClient,
  run: { jobId: string; name: string; window: string | null; attempt: number; payload: unknown },
): Promise<void> {
  await prisma.jobRun.upsert({
    where: { jobId: run.jobId },
    create: {
      jobId: run.jobId,
      name: run.name,
      window: run.window,
      status: 'active',
      attempts: run.attempt,
      payload: run.payload as object,
    },
    update: { status: 'active', attempts: run.attempt, startedAt: new Date(), finishedAt: null, error: null },
  });
}

export async function recordJobEnd(
  prisma: PrismaClient,
  jobId: string,
  outcome: { status: Exclude<JobRunStatus, 'active'>; durationMs: number; rowsTouched?: number; error?: string; result?: unknown },
): Promise<void> {
  await prisma.jobRun.update({
    where: { jobId },
    data: {
      status: outcome.status,
      finishedAt: new Date(),
      durationMs: Math.round(outcome.durationMs),
      rowsTouched: BigInt(outcome.rowsTouched ?? 0),
      error: outcome.error ?? null,
      result: outcome.result === undefined ? undefined : (outcome.result as object),
    },
  });
}

export function jobRunView(run: JobRun) {
  return {
    id: run.id,
    jobId: run.jobId,
    name: run.name,
    window: run.window,
    status: run.status,
    attempts: run.attempts,
    startedAt: run.startedAt.toISOString(),
    finishedAt: run.finishedAt?.toISOString() ?? null,
    durationMs: run.durationMs,
    rowsTouched: Number(run.rowsTouched),
    error: run.error,
    result: run.result ?? null,
  };
}

export async function listJobRuns(
  prisma: PrismaClient,
  args: { name?: string; status?: JobRunStatus; limit: number; cursor?: string },
) {
  const after = args.cursor ? decodeCursor(args.cursor, 'jobs.list') : null;
  const rows = await prisma.jobRun.findMany({
    where: {
      name: args.name,
      status: args.status,
      ...(after
        ? { OR: [{ startedAt: { lt: after.createdAt } }, { startedAt: after.createdAt, id: { lt: after.id } }] }
        : {}),
    },
    orderBy: [{ startedAt: 'desc' }, { id: 'desc' }],
    take: args.limit + 1,
  });
  const page = pageOf(
    rows.map((r) => ({ ...r, createdAt: r.startedAt })),
    args.limit,
  );
  return { items: page.items.map(jobRunView), nextCursor: page.nextCursor };
}

export async function getJobRun(prisma: PrismaClient, id: string) {
  const run = await prisma.jobRun.findFirst({ where: { OR: [{ jobId: id }, ...(isUuid(id) ? [{ id }] : [])] } });
  if (!run) throw new AppError('NOT_FOUND', 'job run not found');
  return jobRunView(run);
}

