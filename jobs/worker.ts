import { Worker, type Job } from 'bullmq';
import type { Redis } from '../src/lib/redis';
import { recordJobEnd, recordJobStart } from '../src/domain/jobs/job-runs';
import { QUEUES, isJobName, jobCatalog, type JobName } from '../src/domain/jobs/catalog';
import { jobHandlers } from './handlers';
import type { JobDeps, JobHandler, JobResult } from './handlers/types';

export interface WorkerOptions {
  connection: Redis;
  prefix: string;
  concurrency: number;
  lockDuration: number;
}

/**
 * Parses the payload against the catalog, records the attempt in JobRun, runs the handler
 * and records how it went. A handler's failure is rethrown so BullMQ retries with backoff.
 */
async function runJob(deps: JobDeps, job: Job): Promise<JobResult> {
  if (!isJobName(job.name)) throw new Error(`unknown job ${job.name}`);
  const name: JobName = job.name;
  const definition = jobCatalog[name];
  const payload = definition.payload.parse(job.data);
  const window = (definition.windowOf as (p: unknown) => string | null)(payload);
  const jobId = job.id ?? `${name}@${Date.now()}`;
  await recordJobStart(deps.prisma, { jobId, name, window, attempt: job.attemptsMade + 1, payload });
  // With several workers, this line (pino adds the pid) says which process took the job.
  deps.logger.info({ job: name, jobId, attempt: job.attemptsMade + 1 }, 'job started');
  const started = performance.now();
  try {
    const handler = jobHandlers[name] as JobHandler<JobName>;
    const result = await handler(deps, payload, {
      jobId,
      attempt: job.attemptsMade + 1,
      maxAttempts: job.opts.attempts ?? 1,
      reportProgress: (done, total) => job.updateProgress({ done, total }),
    });
    const durationMs = performance.now() - started;
    await recordJobEnd(deps.prisma, jobId, { status: 'completed', durationMs, rowsTouched: result.rowsTouched, result });
    deps.metrics.jobDuration.observe({ job: name, status: 'completed' }, durationMs / 1000);
    deps.logger.info({ job: name, jobId, durationMs: Math.round(durationMs), rowsTouched: result.rowsTouched }, 'job completed');
    return result;
  } catch (err) {
    const durationMs = performance.now() - started;
    await recordJobEnd(deps.prisma, jobId, { status: 'failed', durationMs, error: (err as Error).message }).catch(() => undefined);
    deps.metrics.jobDuration.observe({ job: name, status: 'failed' }, durationMs / 1000);
    deps.metrics.jobFailures.inc({ job: name });
    deps.logger.error({ err, job: name, jobId, attempt: job.attemptsMade + 1 }, 'job failed');
    throw err;
  }
}

/** One BullMQ worker per queue of the catalog. */
export function startWorkers(deps: JobDeps, options: WorkerOptions): Worker[] {
  return QUEUES.map((queue) => {
    const worker = new Worker(queue, (job) => runJob(deps, job), {
      connection: options.connection,
      prefix: options.prefix,
      concurrency: options.concurrency,
      lockDuration: options.lockDuration,
      stalledInterval: Math.max(1000, Math.floor(options.lockDuration / 2)),
      maxStalledCount: 3,
    });
    worker.on('error', (err) => deps.logger.error({ err, queue }, 'worker error'));
    return worker;
  });
}

/** Stops taking jobs and waits for the ones running to finish. */
export async function closeWorkers(workers: Worker[]): Promise<void> {
  await Promise.all(workers.map((w) => w.close()));
}
